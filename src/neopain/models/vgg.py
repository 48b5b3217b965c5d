"""VGG-16 backbones with the heads of the published neonatal pain models.

The convolutions carry VGG-Face's names (``features.conv1_1`` … ``features.conv5_3``, with
``relu1_1`` …, ``pool1`` … ``pool5``) so that VGG-Face weights from Keras h5 files and
MatConvNet-converted state dicts map onto them one to one. Input as VGG-Face was trained:
224×224, BGR, raw 0–255 values minus the VGG-Face channel means (93.5940, 104.7624, 129.1863
in B, G, R order), i.e. ``mean = m / 255`` and ``std = 1 / 255`` on the 0–1 scale.

- ``vgg16_nb``: flatten 7×7×512 → FC 512 → FC 512 → FC 2, ReLU and dropout 0.5 between
  (27,823,938 parameters).
- ``vgg16_avg``: global average pooling → FC 2048 → FC 1024 → FC 2, ReLU and dropout 0.5
  between (17,865,538 parameters; 10,230,274 trainable with only ``block5`` unfrozen).
"""

from __future__ import annotations

import re
from collections import OrderedDict

from torch import Tensor, nn

from neopain.errors import NeopainError
from neopain.models.base import PainModel
from neopain.models.cfg import ModelCfg
from neopain.models.registry import register_model

VGG_FACE_MEAN_BGR = (93.5940, 104.7624, 129.1863)
"""VGG-Face channel means in 0–255 units, B, G, R."""

VGG16_LAYOUT = ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512))
"""Output channels of each convolution, block by block."""


def vgg_cfg(name: str) -> ModelCfg:
    """The VGG-Face preprocessing under a registry name."""
    return ModelCfg(
        name=name,
        input_size=(224, 224),
        mean=tuple(m / 255 for m in VGG_FACE_MEAN_BGR),
        std=(1 / 255, 1 / 255, 1 / 255),
        channel_order="BGR",
        cam_layer="features.conv5_3",
    )


def vgg16_features() -> nn.Sequential:
    """The 13 convolutions and 5 max-pools of VGG-16, named as in VGG-Face."""
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    channels = 3
    for block, widths in enumerate(VGG16_LAYOUT, start=1):
        for index, width in enumerate(widths, start=1):
            layers[f"conv{block}_{index}"] = nn.Conv2d(channels, width, 3, padding=1)
            layers[f"relu{block}_{index}"] = nn.ReLU()
            channels = width
        layers[f"pool{block}"] = nn.MaxPool2d(2, 2)
    return nn.Sequential(layers)


def _mlp(widths: tuple[int, ...], *, dropout: float) -> nn.Sequential:
    """FC layers ``fc1 … fcK`` of ``widths``, ReLU + dropout between, logits last."""
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    for index, (inputs, outputs) in enumerate(zip(widths[:-1], widths[1:]), start=1):
        layers[f"fc{index}"] = nn.Linear(inputs, outputs)
        if index < len(widths) - 1:
            layers[f"relu{index}"] = nn.ReLU()
            layers[f"drop{index}"] = nn.Dropout(dropout)
    return nn.Sequential(layers)


class VGG16(PainModel):
    """VGG-16 convolutions and a fully connected head.

    Args:
        head: ``"flatten"`` (7×7×512 → 512 → 512 → 2) or ``"avg"`` (global average pooling →
            2048 → 1024 → 2).
        dropout: drop rate between the FC layers.
    """

    HEADS = {"flatten": (512 * 7 * 7, 512, 512, 2), "avg": (512, 2048, 1024, 2)}

    def __init__(self, *, head: str = "flatten", dropout: float = 0.5) -> None:
        super().__init__()
        if head not in self.HEADS:
            raise NeopainError(f"vgg16: head={head!r}; valid: {', '.join(self.HEADS)}")
        if not 0.0 <= dropout < 1.0:
            raise NeopainError(f"vgg16: dropout={dropout!r} must be in [0, 1)")
        self.head_kind = head
        self.dropout = dropout
        self.features = vgg16_features()
        pool = nn.AdaptiveAvgPool2d(1) if head == "avg" else nn.Identity()
        self.pool = nn.Sequential(pool, nn.Flatten())
        self.head = _mlp(self.HEADS[head], dropout=dropout)

    def forward_features(self, x: Tensor) -> Tensor:
        """(N, 25088) flattened conv5 maps, or (N, 512) averaged, for 224×224 input."""
        return self.pool(self.features(x))

    def forward_head(self, features: Tensor) -> Tensor:
        """Logits (N, 2)."""
        return self.head(features)

    def block_modules(self) -> dict[str, list[nn.Module]]:
        """``block1`` … ``block5``: each block's convolutions, ReLUs and max-pool."""
        blocks: dict[str, list[nn.Module]] = {}
        for name, module in self.features.named_children():
            block_number = re.search(r"\d+", name).group()  # conv3_2, relu3_2, pool3 -> 3
            blocks.setdefault(f"block{block_number}", []).append(module)
        return blocks


@register_model(
    "vgg16_nb",
    cfg=vgg_cfg("vgg16_nb"),
    summary="VGG-16 + flatten → 512 → 512 → 2 (VGG-Face preprocessing)",
    published_params=27_823_938,
    published_note="the published VGG-16 table",
)
def vgg16_nb(*, dropout: float = 0.5) -> VGG16:
    """VGG-16 + flatten → 512 → 512 → 2 (VGG-Face preprocessing)."""
    return VGG16(head="flatten", dropout=dropout)


@register_model(
    "vgg16_avg",
    cfg=vgg_cfg("vgg16_avg"),
    summary="VGG-16 + global average pooling → 2048 → 1024 → 2 (VGG-Face preprocessing)",
    published_params=17_865_538,
    published_note="thesis; 10,230,274 trainable with only block5 unfrozen",
)
def vgg16_avg(*, dropout: float = 0.5) -> VGG16:
    """VGG-16 + global average pooling → 2048 → 1024 → 2 (VGG-Face preprocessing)."""
    return VGG16(head="avg", dropout=dropout)
