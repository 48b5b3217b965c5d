"""``PainModel``: the interface every architecture shares.

A model is a backbone, split into named blocks that can be frozen and unfrozen (input →
output), and a head that turns the backbone's features into logits. One hook,
``block_modules``, tells the base class which modules make up each block.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from torch import Tensor, nn

from neopain.errors import NeopainError
from neopain.models.cfg import ModelCfg

if TYPE_CHECKING:
    from neopain.models.weights import LoadReport


class PainModel(nn.Module, ABC):
    """Backbone blocks + head; ``forward(x) == forward_head(forward_features(x))``.

    Subclasses build their layers, assign ``self.head`` (the module whose parameters are the
    head's) and implement ``forward_features``, ``forward_head`` and ``block_modules``. The
    factory that builds a model sets ``cfg`` and ``build_args`` (the keyword arguments it was
    built with, which model.pt records so that a load builds the same network).

    Frozen blocks have ``requires_grad=False`` and stay in eval mode even after ``train()``
    (batch-norm statistics and dropout fixed, as Keras does with ``trainable=False``), so a
    frozen backbone gives the same features in training and evaluation: what the embedding
    cache relies on.
    """

    cfg: ModelCfg
    head: nn.Module

    def __init__(self) -> None:
        super().__init__()
        self._frozen: set[str] = set()
        self.build_args: dict[str, Any] = {}

    @abstractmethod
    def forward_features(self, x: Tensor) -> Tensor:
        """The backbone's output for a normalized batch ``x`` (N, 3, H, W)."""

    @abstractmethod
    def forward_head(self, features: Tensor) -> Tensor:
        """Logits (N, 2) from ``forward_features`` output."""

    @abstractmethod
    def block_modules(self) -> dict[str, list[nn.Module]]:
        """The backbone's freezable blocks, input → output: name → the modules in it."""

    def forward(self, x: Tensor) -> Tensor:
        """Logits (N, 2); ``softmax(logits)[:, 1]`` is P(pain)."""
        return self.forward_head(self.forward_features(x))

    def blocks(self) -> list[str]:
        """Names of the freezable backbone blocks, input → output."""
        return list(self.block_modules())

    def _resolve(self, blocks: Iterable[str] | None) -> list[str]:
        valid = self.blocks()
        if blocks is None:
            return valid
        if isinstance(blocks, str):  # a bare name would otherwise be read letter by letter
            blocks = [blocks]
        names = list(blocks)
        unknown = [name for name in names if name not in valid]
        if unknown:
            raise NeopainError(f"model {self._name()!r}: unknown block(s) "
                               f"{', '.join(map(repr, unknown))}; valid: {', '.join(valid)}")
        return names

    def freeze(self, blocks: Iterable[str] | None = None) -> PainModel:
        """Stop training the named backbone blocks (``None``: the whole backbone).

        Raises:
            NeopainError: a name that is not in ``blocks()``.
        """
        modules = self.block_modules()
        for name in self._resolve(blocks):
            for module in modules[name]:
                module.requires_grad_(False)
                module.eval()
            self._frozen.add(name)
        return self

    def unfreeze(self, blocks: Iterable[str] | None = None) -> PainModel:
        """Train the named backbone blocks again (``None``: the whole backbone).

        Example: ``model.unfreeze(model.blocks()[-1:])`` fine-tunes the last block.

        Raises:
            NeopainError: a name that is not in ``blocks()``.
        """
        modules = self.block_modules()
        for name in self._resolve(blocks):
            for module in modules[name]:
                module.requires_grad_(True)
                module.train(self.training)
            self._frozen.discard(name)
        return self

    def frozen_blocks(self) -> list[str]:
        """The blocks frozen now, input → output."""
        return [name for name in self.blocks() if name in self._frozen]

    def train(self, mode: bool = True) -> PainModel:
        """Set training mode; frozen blocks stay in eval mode."""
        super().train(mode)
        modules = self.block_modules()
        for name in self._frozen:
            for module in modules[name]:
                module.eval()
        return self

    def head_parameters(self) -> Iterator[nn.Parameter]:
        """The head's parameters (what trains while the backbone is frozen)."""
        return self.head.parameters()

    def load_pretrained(self, path: str | os.PathLike[str]) -> LoadReport:
        """Load a pretrained weights file into this model in place (a run config's
        ``weights:``), as ``neopain.models.weights.load_weights`` reads it by default.

        A family whose published files need more than a key map overrides this hook (the
        ViT: the seed's one-logit head becomes two logits).

        Raises:
            WeightsError: the file cannot be read or does not fit; the model is unchanged.
        """
        from neopain.models.weights import load_weights  # the file readers, only when loading

        return load_weights(self, path)

    def count_parameters(self) -> tuple[int, int]:
        """(total, trainable) parameter counts, as torch counts them (no buffers)."""
        total = trainable = 0
        for parameter in self.parameters():
            total += parameter.numel()
            if parameter.requires_grad:
                trainable += parameter.numel()
        return total, trainable

    def count_running_statistics(self) -> int:
        """Values in batch-norm running means and variances (Keras counts them as parameters)."""
        return sum(module.running_mean.numel() + module.running_var.numel()
                   for module in self.modules()
                   if isinstance(module, nn.modules.batchnorm._BatchNorm)
                   and module.running_mean is not None)

    def _name(self) -> str:
        cfg = getattr(self, "cfg", None)
        return cfg.name if cfg is not None else type(self).__name__
