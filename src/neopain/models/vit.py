"""ViT-B/32 (Dosovitskiy et al. 2021) in torchvision's layout: the seed repository's model.

The seed repository (darkrubiks/AI-Assessment-of-Pain-in-Newborns, ``models/ViT.py``) takes
torchvision's ``vit_b_32`` pretrained on ImageNet, freezes every backbone parameter and replaces
the head by FC 768 → 1 (one sigmoid logit). ``vit_b32_nb`` is the same network written in plain
torch with torchvision's module and parameter names (``conv_proj``, ``class_token``,
``encoder.pos_embedding``, ``encoder.layers.encoder_layer_{i}.ln_1 / self_attention / ln_2 /
mlp.0 / mlp.3``, ``encoder.ln``, ``heads.head``), so that torchvision and seed state dicts load
by a key map (``load_vit_weights``). The head is FC 768 → 2; the seed's logit ``z`` is imported
as the logits ``(0, z)``, whose softmax gives P(pain) = sigmoid(z) exactly.

Parameters: 87,456,770 (torchvision's 88,224,232 less its 769,000-parameter ImageNet head, plus
1,538 for FC 768 → 2). Preprocessing: 224×224 RGB with ImageNet mean and std. The seed resizes
each face crop straight to 224×224 (``dataloaders/presets.py``), which is what the cfg says;
torchvision's ImageNet transform (resize 256, centre crop 224) is not used on faces.

Attention is computed by ``nn.MultiheadAttention`` with ``need_weights=False``: the graph
exports to ONNX, and attention rollout (``neopain.explain.attention_rollout``) recomputes the
weights from each layer's input only while it explains. Measured on 32 crops with random weights:
the exported graph gives P(pain) within 1.3e-7 of torch, and ONNX Runtime's dynamic int8
quantization cuts the file from 350 to 95 MB, all 32 labels kept.
Grad-CAM targets ``encoder.cam_grid``:
the 7×7 patch tokens entering the last encoder layer, as an (N, 768, 7, 7) map (the class token
reads them in that layer's attention; the last layer's own patch outputs reach no logit).
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from neopain.errors import NeopainError
from neopain.models.base import PainModel
from neopain.models.cfg import ModelCfg
from neopain.models.mobile import IMAGENET_MEAN, IMAGENET_STD
from neopain.models.registry import register_model
from neopain.models.weight_files import WeightsError

if TYPE_CHECKING:
    from neopain.models.weights import LoadReport

SEED_PREFIX = "ViT."
"""The prefix of every key in the seed repository's state dict (its module is ``self.ViT``)."""

HEAD_KEYS = ("heads.head.weight", "heads.head.bias")


class EncoderBlock(nn.Module):
    """Pre-norm transformer layer: x + attention(ln_1(x)), then + MLP(ln_2(x))."""

    def __init__(self, *, hidden: int, heads: int, mlp: int, dropout: float,
                 attention_dropout: float) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(hidden, eps=1e-6)
        self.self_attention = nn.MultiheadAttention(hidden, heads, dropout=attention_dropout,
                                                    batch_first=True)
        self.dropout = nn.Dropout(dropout)
        self.ln_2 = nn.LayerNorm(hidden, eps=1e-6)
        # indices 0 and 3 hold the linear layers, as in torchvision's MLPBlock
        self.mlp = nn.Sequential(nn.Linear(hidden, mlp), nn.GELU(), nn.Dropout(dropout),
                                 nn.Linear(mlp, hidden), nn.Dropout(dropout))
        for layer in (self.mlp[0], self.mlp[3]):
            nn.init.xavier_uniform_(layer.weight)
            nn.init.normal_(layer.bias, std=1e-6)

    def forward(self, x: Tensor) -> Tensor:
        y = self.ln_1(x)
        # three tensor objects (views, no copies) take torch's unpacked q, k, v projections: the
        # packed path's unflatten exports as a Reshape that ONNX Runtime's shape inference,
        # run before int8 quantization, cannot follow
        y, _ = self.self_attention(y, y.view_as(y), y.view_as(y), need_weights=False)
        x = x + self.dropout(y)
        return x + self.mlp(self.ln_2(x))


class TokenGrid(nn.Module):
    """Patch tokens (N, 1 + h·w, C) → the (N, C, h, w) map Grad-CAM reads; the class token is
    left out."""

    def __init__(self, *, grid: tuple[int, int]) -> None:
        super().__init__()
        self.grid = grid

    def forward(self, tokens: Tensor) -> Tensor:
        # reshape to explicit sizes, not unflatten: the ONNX graph's Reshape then has a shape of
        # known length, which ONNX Runtime's shape inference (int8 quantization) needs
        patches = tokens[:, 1:].transpose(1, 2)
        return patches.reshape(patches.shape[0], patches.shape[1], *self.grid)


class Encoder(nn.Module):
    """Position embedding, the encoder layers and the final layer norm."""

    def __init__(self, *, tokens: int, grid: tuple[int, int], layers: int, hidden: int,
                 heads: int, mlp: int, dropout: float, attention_dropout: float) -> None:
        super().__init__()
        self.pos_embedding = nn.Parameter(torch.empty(1, tokens, hidden).normal_(std=0.02))
        self.dropout = nn.Dropout(dropout)
        self.layers = nn.Sequential(OrderedDict(
            (f"encoder_layer_{i}", EncoderBlock(hidden=hidden, heads=heads, mlp=mlp,
                                                dropout=dropout,
                                                attention_dropout=attention_dropout))
            for i in range(layers)))
        self.cam_grid = TokenGrid(grid=grid)
        self.ln = nn.LayerNorm(hidden, eps=1e-6)

    def forward(self, tokens: Tensor) -> Tensor:
        x = self.dropout(tokens + self.pos_embedding)
        *earlier, last = self.layers
        for layer in earlier:
            x = layer(x)
        # the patch tokens pass through cam_grid's map and back unchanged (module docstring)
        grid = self.cam_grid(x)
        patches = grid.reshape(grid.shape[0], grid.shape[1], -1).transpose(1, 2)
        x = torch.cat([x[:, :1], patches], dim=1)
        return self.ln(last(x))


class ParameterGroup(nn.Module):
    """Loose parameters as one freezable module, without registering them again: the model's
    state dict keeps torchvision's names (``class_token``, ``encoder.pos_embedding``)."""

    def __init__(self, parameters: list[nn.Parameter]) -> None:
        super().__init__()
        self._members = tuple(parameters)  # a tuple is not registered as parameters

    def parameters(self, recurse: bool = True) -> Iterator[nn.Parameter]:
        return iter(self._members)


class VisionTransformer(PainModel):
    """ViT with a class token, torchvision's names; head: FC hidden → 2.

    Args:
        image_size: the square input side; a multiple of ``patch``.
        patch: the patch side (32 for ViT-B/32).
        layers, heads, hidden, mlp: the encoder's depth, attention heads, width and MLP width.
        dropout, attention_dropout: drop rates (0 in torchvision's ViT-B/32).

    Raises:
        NeopainError: ``image_size`` not a multiple of ``patch``, or ``hidden`` of ``heads``.
    """

    def __init__(self, *, image_size: int = 224, patch: int = 32, layers: int = 12,
                 heads: int = 12, hidden: int = 768, mlp: int = 3072, dropout: float = 0.0,
                 attention_dropout: float = 0.0) -> None:
        super().__init__()
        if image_size % patch:
            raise NeopainError(f"vit: image_size={image_size} is not valid for patch={patch}; "
                               "valid: a multiple of the patch side")
        if hidden % heads:
            raise NeopainError(f"vit: hidden={hidden} is not valid for heads={heads}; valid: a "
                               "multiple of the number of heads")
        side = image_size // patch
        self.conv_proj = nn.Conv2d(3, hidden, kernel_size=patch, stride=patch)
        nn.init.trunc_normal_(self.conv_proj.weight, std=math.sqrt(1 / (3 * patch * patch)))
        nn.init.zeros_(self.conv_proj.bias)
        self.class_token = nn.Parameter(torch.zeros(1, 1, hidden))
        self.encoder = Encoder(tokens=side * side + 1, grid=(side, side), layers=layers,
                               hidden=hidden, heads=heads, mlp=mlp, dropout=dropout,
                               attention_dropout=attention_dropout)
        self.heads = nn.Sequential(OrderedDict(head=nn.Linear(hidden, 2)))

    @property
    def head(self) -> nn.Module:
        """``heads`` (torchvision's name), under the name ``PainModel`` reads."""
        return self.heads

    def forward_features(self, x: Tensor) -> Tensor:
        """(N, 768) the class token after the encoder's final layer norm."""
        maps = self.conv_proj(x)  # (N, hidden, rows, columns); reshaped as TokenGrid says why
        patches = maps.reshape(maps.shape[0], maps.shape[1], -1).transpose(1, 2)
        tokens = torch.cat([self.class_token.expand(x.shape[0], -1, -1), patches], dim=1)
        return self.encoder(tokens)[:, 0]

    def forward_head(self, features: Tensor) -> Tensor:
        """Logits (N, 2)."""
        return self.heads(features)

    def block_modules(self) -> dict[str, list[nn.Module]]:
        """``embedding`` (conv_proj, class token, position embedding), ``encoder_layer_0`` …
        ``encoder_layer_11`` and ``ln`` (the final layer norm)."""
        embedding = ParameterGroup([self.class_token, self.encoder.pos_embedding])
        return {"embedding": [self.conv_proj, embedding],
                **{name: [layer] for name, layer in self.encoder.layers.named_children()},
                "ln": [self.encoder.ln]}

    def load_pretrained(self, path: str | os.PathLike[str]) -> LoadReport:
        """A seed-repository or torchvision ViT state dict (``load_vit_weights``)."""
        return load_vit_weights(self, path)


VIT_CFG = ModelCfg(name="vit_b32_nb", input_size=(224, 224), mean=IMAGENET_MEAN,
                   std=IMAGENET_STD, channel_order="RGB", cam_layer="encoder.cam_grid")


@register_model(
    "vit_b32_nb",
    cfg=VIT_CFG,
    summary="ViT-B/32 (torchvision layout) + FC 768 → 2, 224×224 RGB: the seed repository's ViT",
    published_params=88_224_232,
    published_note="torchvision's vit_b_32 with its 1000-class ImageNet head",
)
def vit_b32_nb() -> VisionTransformer:
    """ViT-B/32 (torchvision layout) + FC 768 → 2, 224×224 RGB: the seed repository's ViT."""
    return VisionTransformer()


def vit_key_map(key: str) -> str | None:
    """A seed or torchvision ViT state-dict key → the model's key; None for the head.

    Drops the seed's ``ViT.`` prefix and renames the MLP's ``linear_1`` / ``linear_2`` of
    torchvision's older files to ``0`` / ``3``. The head never fits FC 768 → 2 as it is
    (``load_vit_weights`` converts the seed's, skips ImageNet's).
    """
    key = key.removeprefix(SEED_PREFIX)
    if key in HEAD_KEYS:
        return None
    return key.replace(".mlp.linear_1.", ".mlp.0.").replace(".mlp.linear_2.", ".mlp.3.")


def load_vit_weights(model: VisionTransformer, path: str | os.PathLike[str], *,
                     strict: bool = False) -> LoadReport:
    """Load a seed-repository or torchvision ViT state dict into ``model`` in place.

    The backbone loads by ``vit_key_map``. The head: the seed's FC 768 → 1 (logit ``z``) becomes
    FC 768 → 2 with logits ``(0, z)``, so P(pain) = softmax(0, z)[1] = sigmoid(z); a 2-logit
    head loads as it is; another head (torchvision's 1000-class ImageNet one) is skipped with a
    note, and the model keeps its own, to be trained.

    Args:
        model: a ``vit_b32_nb`` model.
        path: a torch file holding the state dict (``torch.save(model.state_dict())``).
        strict: raise if a model key is left unset (the head counts when it loads) or a file
            key has no place in the model.

    Returns:
        The ``LoadReport``; the head's keys count as loaded, skipped or missing.

    Raises:
        WeightsError: not a ViT model, an unreadable file, or a tensor (head included) of a
            shape that does not fit. The model is unchanged when this is raised.

    Example:
        >>> model = create_model("vit_b32_nb")
        >>> report = load_vit_weights(model, "seed_vit_fold0.pt")  # the seed's torch.save
    """
    # imported here: building a model by name needs none of the weight-file readers
    from neopain.models.weights import load_tensors, read_weights_file

    if not isinstance(model, VisionTransformer):
        raise WeightsError(f"load_vit_weights loads a ViT (vit_b32_nb); got "
                           f"{type(model).__name__}; use neopain.models.weights.load_weights")
    # read once, here: the head is converted from its values (load_weights maps keys, not
    # values), checked before any change
    path, fmt, tensors = read_weights_file(path, format="state-dict")
    head = {key: tensor.value for key, tensor in tensors.items()
            if key.removeprefix(SEED_PREFIX) in HEAD_KEYS}
    by_name = {key.removeprefix(SEED_PREFIX): value for key, value in head.items()}
    convert = _head_conversion(model, path, [by_name[key] for key in HEAD_KEYS
                                             if key in by_name])
    if strict:
        _check_strict(model, path, list(tensors), head_loads=isinstance(convert, tuple))
    report = load_tensors(model, tensors, path=path, fmt=fmt, key_map=vit_key_map)
    if convert is None:
        return report  # no head in the file, or half of one: reported as load_weights found it
    skipped = {key: why for key, why in report.skipped.items() if key not in head}
    if isinstance(convert, str):
        skipped.update(dict.fromkeys(head, convert))
        return dataclasses.replace(report, skipped=skipped,
                                   notes=(*report.notes, f"heads.head: {convert}"))
    weight, bias = convert
    linear = model.heads.head
    with torch.no_grad():
        linear.weight.copy_(weight)
        linear.bias.copy_(bias)
    notes = report.notes
    if len(by_name["heads.head.weight"]) == 1:
        notes = (*notes, "heads.head: the seed's one sigmoid logit z became the logits (0, z), "
                         "so P(pain) = sigmoid(z)")
    return dataclasses.replace(
        report, loaded=(*report.loaded, *HEAD_KEYS),
        missing=tuple(key for key in report.missing if key not in HEAD_KEYS),
        skipped=skipped, notes=notes)


def _check_strict(model: VisionTransformer, path: Path, keys: list[str], *,
                  head_loads: bool) -> None:
    """Raise a WeightsError naming the model keys the file leaves unset and the file keys with
    no place in the model (the head counts as set when it loads)."""
    state = model.state_dict()
    targets = {vit_key_map(key) for key in keys} | (set(HEAD_KEYS) if head_loads else set())
    missing = [key for key in state if key not in targets]
    unexpected = [key for key in keys if key.removeprefix(SEED_PREFIX) not in HEAD_KEYS
                  and vit_key_map(key) not in state]
    if missing or unexpected:
        raise WeightsError(f"{path}: strict=True but the file leaves {len(missing)} model "
                           f"key(s) unset ({', '.join(missing[:4]) or 'none'}) and has "
                           f"{len(unexpected)} key(s) the model lacks "
                           f"({', '.join(unexpected[:4]) or 'none'}); valid: a seed or "
                           "torchvision ViT-B/32 state dict")


def _head_conversion(model: VisionTransformer, path: Path, head: list[Tensor]
                     ) -> tuple[Tensor, Tensor] | str | None:
    """The (weight, bias) of FC 768 → 2 from a file's head, or why it is skipped; None when
    the file has no head.

    Raises:
        WeightsError: a head that is neither 1, 2 nor many logits of the model's width.
    """
    if len(head) != len(HEAD_KEYS):
        return None
    weight, bias = head
    width = model.heads.head.in_features
    if weight.ndim != 2 or weight.shape[1] != width or tuple(bias.shape) != weight.shape[:1]:
        raise WeightsError(f"{path}: 'heads.head' has shapes {tuple(weight.shape)} and "
                           f"{tuple(bias.shape)}; valid: ((K, {width}), (K,)) with K = 1 (the "
                           "seed's sigmoid logit), 2, or another class count (skipped)")
    if len(weight) == 1:  # logits (0, z): softmax gives (1 - sigmoid(z), sigmoid(z))
        return torch.cat([torch.zeros_like(weight), weight]), torch.cat([torch.zeros_like(bias),
                                                                          bias])
    if len(weight) == 2:
        return weight, bias
    return (f"a {len(weight)}-class head (ImageNet's when 1000) does not fit FC {width} → 2; "
            "the model keeps its own, to be trained")
