"""Attention rollout (Abnar & Zuidema, ACL 2020) of a vision transformer, hand-written.

Hand-written because captum has no attention rollout; it follows the seed repository's
``XAI/attention_rollout.py`` (after jacobgil's vit-explain) with one fix, named below.

Each layer's attention (N, heads, T, T) is fused over heads (``mean``, ``max`` or ``min``); per
image, the lowest ``discard_ratio`` share of the fused entries is set to 0 (the class token's
attention to itself is kept); the residual connection is accounted for as ``(A + I) / 2``; each
row is renormalized to sum 1; and the layers are multiplied, input → output. The class token's
row of the product, over the patch tokens, is the map: how much of what the class token holds at
the end came from each patch. It is laid out on the patch grid and upsampled bilinearly to the
input size.

The fix: the seed divides by ``a.sum(dim=-1)`` without ``keepdim``, which broadcasts over the
last axis and divides column j by row j's sum; here each row is divided by its own sum.

Attention rollout reads the attention, not the classifier: the map is the same for ``nopain``
and ``pain`` (the target is accepted and ignored). The attention weights are recomputed, while
the explainer is open, from each ``nn.MultiheadAttention``'s inputs by forward pre-hooks (the
model itself computes none: ``need_weights=False`` keeps its ONNX graph free of them).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle

from neopain.errors import NeopainError
from neopain.explain.base import Explainer, Model, upsample

HEAD_FUSIONS = ("mean", "max", "min")


def attention_layers(model: nn.Module) -> list[nn.MultiheadAttention]:
    """The model's ``nn.MultiheadAttention`` layers, input → output (empty for a CNN)."""
    return [module for module in model.modules() if isinstance(module, nn.MultiheadAttention)]


def attention_weights(layer: nn.MultiheadAttention, query: Tensor, key: Tensor) -> Tensor:
    """softmax(q kᵀ / √d) per head, (N, heads, T, S), from the layer's query and key inputs.

    Raises:
        NeopainError: a layer whose query, key and value projections are not packed in one
            ``in_proj_weight`` (``kdim``/``vdim`` differ from ``embed_dim``).
    """
    if layer.in_proj_weight is None:
        raise NeopainError("attention rollout: an nn.MultiheadAttention with kdim or vdim other "
                           f"than embed_dim={layer.embed_dim} is not supported; valid: "
                           "self-attention with one packed in_proj_weight")
    if not layer.batch_first:
        query, key = query.transpose(0, 1), key.transpose(0, 1)
    w_q, w_k, _ = layer.in_proj_weight.chunk(3)
    b_q, b_k, _ = (layer.in_proj_bias.chunk(3) if layer.in_proj_bias is not None
                   else (None, None, None))
    heads, depth = layer.num_heads, layer.head_dim
    q = nn.functional.linear(query, w_q, b_q).unflatten(-1, (heads, depth)).transpose(1, 2)
    k = nn.functional.linear(key, w_k, b_k).unflatten(-1, (heads, depth)).transpose(1, 2)
    return torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(depth), dim=-1)


def rollout(attentions: Sequence[Tensor], *, discard_ratio: float = 0.9,
            head_fusion: str = "mean") -> Tensor:
    """The rolled-out attention (N, T, T) of layers' attention (N, heads, T, T), input → output.

    Row ``i`` of the result is how token ``i`` at the output draws on each input token.

    Raises:
        NeopainError: no layers, a bad ``head_fusion`` or ``discard_ratio``.
    """
    check_options(discard_ratio=discard_ratio, head_fusion=head_fusion)
    if not attentions:
        raise NeopainError("attention rollout: no attention layers ran")
    result = None
    for attention in attentions:
        fused = {"mean": attention.mean(dim=1), "max": attention.amax(dim=1),
                 "min": attention.amin(dim=1)}[head_fusion].double()
        n, tokens, _ = fused.shape
        flat = fused.reshape(n, -1)
        lowest = flat.topk(int(flat.shape[1] * discard_ratio), dim=1, largest=False).indices
        drop = torch.zeros_like(flat, dtype=torch.bool).scatter_(1, lowest, True)
        drop[:, 0] = False  # the class token's attention to itself
        kept = flat.masked_fill(drop, 0.0).view(n, tokens, tokens)
        mixed = (kept + torch.eye(tokens, dtype=kept.dtype, device=kept.device)) / 2
        mixed = mixed / mixed.sum(dim=-1, keepdim=True)
        result = mixed if result is None else mixed @ result
    return result


def check_options(*, discard_ratio: float, head_fusion: str) -> None:
    """Raise a NeopainError naming a bad ``discard_ratio`` or ``head_fusion``."""
    if (isinstance(discard_ratio, bool) or not isinstance(discard_ratio, (int, float))
            or not 0.0 <= discard_ratio < 1.0):
        raise NeopainError(f"discard_ratio={discard_ratio!r} is not valid; valid: a share in "
                           "[0, 1)")
    if head_fusion not in HEAD_FUSIONS:
        raise NeopainError(f"head_fusion={head_fusion!r} is not valid; valid: "
                           f"{', '.join(HEAD_FUSIONS)}")


def patch_grid(patches: int, size: tuple[int, int]) -> tuple[int, int]:
    """(rows, columns) of ``patches`` tokens laid out with the image's aspect ratio.

    Raises:
        NeopainError: the count does not fill such a grid.
    """
    rows = max(1, round(math.sqrt(patches * size[0] / size[1])))
    if rows * (patches // rows) != patches:
        raise NeopainError(f"attention rollout: {patches} patch tokens do not fill a grid of "
                           f"the input's {size[0]}×{size[1]} aspect; valid: a transformer with a "
                           "class token first, then one token per patch, row by row")
    return rows, patches // rows


class AttentionRollout(Explainer):
    """Attention rollout of a torch model with ``nn.MultiheadAttention`` layers (a ViT).

    Args:
        model: a transformer whose token 0 is the class token, followed by the patch tokens
            row by row (``vit_b32_nb``).
        discard_ratio: share of each layer's fused attention set to 0, lowest first (the seed's
            default 0.9).
        head_fusion: how heads are fused: ``mean``, ``max`` or ``min``.
        batch_size: images per pass.

    Raises:
        NeopainError: a model function (no layers to read), a model without attention layers
            (the methods that explain it are named), or a bad option.
    """

    name = "rollout"
    needs_gradients = False

    def __init__(self, model: Model, *, discard_ratio: float = 0.9, head_fusion: str = "mean",
                 batch_size: int = 16) -> None:
        self.discard_ratio = discard_ratio
        self.head_fusion = head_fusion
        check_options(discard_ratio=discard_ratio, head_fusion=head_fusion)
        if not isinstance(model, nn.Module):
            raise NeopainError("rollout needs the torch model (it reads its attention layers); "
                               "an .onnx model can use: occlusion, rise, lime")
        self.layers_ = attention_layers(model)
        if not self.layers_:
            from neopain.explain.methods import ATTENTION_METHODS, METHOD_NAMES  # it imports this

            name = getattr(getattr(model, "cfg", None), "name", type(model).__name__)
            others = [method for method in METHOD_NAMES if method not in ATTENTION_METHODS]
            raise NeopainError(f"rollout needs a transformer: model {name!r} has no attention "
                               "layers (nn.MultiheadAttention); explain it with "
                               f"{', '.join(others)}")
        super().__init__(model, batch_size=batch_size)  # after the checks: it sets eval mode
        self._attentions: list[Tensor] = []
        self._handles: list[RemovableHandle] = [
            layer.register_forward_pre_hook(self._record, with_kwargs=True)
            for layer in self.layers_]

    def _record(self, layer: nn.MultiheadAttention, args: tuple, kwargs: dict) -> None:
        query = args[0] if args else kwargs["query"]
        key = args[1] if len(args) > 1 else kwargs.get("key", query)
        with torch.no_grad():
            self._attentions.append(attention_weights(layer, query, key))

    def _attribute(self, images: Tensor, target: Tensor) -> Tensor:
        self._attentions = []
        try:
            with torch.no_grad():
                self.model(images)
            rolled = rollout(self._attentions, discard_ratio=self.discard_ratio,
                             head_fusion=self.head_fusion)
        finally:
            self._attentions = []
        patches = rolled[:, 0, 1:]
        rows, columns = patch_grid(patches.shape[1], tuple(images.shape[-2:]))
        return upsample(patches.float().view(-1, rows, columns), tuple(images.shape[-2:]))

    def _release(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []
