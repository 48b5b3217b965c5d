"""ResNet-50 and SE-ResNet-50 in the VGGFace2 layout, each with an FC 1000 → FC 2 head.

VGGFace2 layout (Cao et al. 2018, the Caffe models that keras-vggface converts): bias-free
convolutions, each followed by batch norm; the stride of a down-sampling bottleneck sits on
its first 1×1 convolution; the stem's 3×3 max-pool rounds up (Caffe). SE-ResNet-50 adds a
squeeze-and-excitation gate (reduction 16, 1×1 convolutions with biases) to each bottleneck
before the residual sum. The backbone ends in 7×7 average pooling (2048 features); the head is
FC 1000 → ReLU → dropout → FC 2.

Parameter counts: torch counts 25,559,034 (ResNet-50) and 28,090,026 (SE-ResNet-50); Keras
also counts the 53,120 batch-norm running means and variances: 25,612,154 and 28,143,146,
the published figures. Input as VGGFace2 was trained: 224×224, BGR, raw 0–255 values minus
the VGGFace2 means (91.4953, 103.8827, 131.0912 in B, G, R order).
"""

from __future__ import annotations

from collections import OrderedDict

from torch import Tensor, nn

from neopain.errors import NeopainError
from neopain.models.base import PainModel
from neopain.models.cfg import ModelCfg
from neopain.models.registry import register_model

VGGFACE2_MEAN_BGR = (91.4953, 103.8827, 131.0912)
"""VGGFace2 channel means in 0–255 units, B, G, R (keras-vggface ``version=2``)."""

STAGES = (3, 4, 6, 3)
"""Bottlenecks per stage of ResNet-50."""


def resnet_cfg(name: str) -> ModelCfg:
    """The VGGFace2 preprocessing under a registry name."""
    return ModelCfg(
        name=name,
        input_size=(224, 224),
        mean=tuple(m / 255 for m in VGGFACE2_MEAN_BGR),
        std=(1 / 255, 1 / 255, 1 / 255),
        channel_order="BGR",
        cam_layer="layer4",
    )


def _conv_bn(inputs: int, outputs: int, kernel: int, *, stride: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(inputs, outputs, kernel, stride=stride, padding=kernel // 2, bias=False),
            nn.BatchNorm2d(outputs)]


class SqueezeExcitation(nn.Module):
    """Channel gate: average pool → 1×1 conv (C/r) → ReLU → 1×1 conv (C) → sigmoid → scale."""

    def __init__(self, channels: int, *, reduction: int = 16) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.down = nn.Conv2d(channels, channels // reduction, 1)
        self.relu = nn.ReLU()
        self.up = nn.Conv2d(channels // reduction, channels, 1)
        self.gate = nn.Sigmoid()

    def forward(self, x: Tensor) -> Tensor:
        return x * self.gate(self.up(self.relu(self.down(self.pool(x)))))


class Bottleneck(nn.Module):
    """1×1 (stride) → 3×3 → 1×1 (×4 channels), batch norm after each, optional SE gate."""

    expansion = 4

    def __init__(self, inputs: int, width: int, *, stride: int = 1, se: bool = False) -> None:
        super().__init__()
        outputs = width * self.expansion
        self.conv1, self.bn1 = _conv_bn(inputs, width, 1, stride=stride)
        self.conv2, self.bn2 = _conv_bn(width, width, 3)
        self.conv3, self.bn3 = _conv_bn(width, outputs, 1)
        self.relu = nn.ReLU()
        self.se = SqueezeExcitation(outputs) if se else nn.Identity()
        self.downsample = (nn.Sequential(*_conv_bn(inputs, outputs, 1, stride=stride))
                           if stride != 1 or inputs != outputs else nn.Identity())

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.se(self.bn3(self.conv3(out)))
        return self.relu(out + self.downsample(x))


class ResNet50(PainModel):
    """ResNet-50 (``se=False``) or SE-ResNet-50 (``se=True``) + FC 1000 → FC 2.

    Args:
        se: add squeeze-and-excitation gates.
        dropout: drop rate between the two FC layers.
    """

    def __init__(self, *, se: bool = False, dropout: float = 0.5) -> None:
        super().__init__()
        if not 0.0 <= dropout < 1.0:
            raise NeopainError(f"resnet50: dropout={dropout!r} must be in [0, 1)")
        self.se = se
        self.dropout = dropout
        self.conv1, self.bn1 = _conv_bn(3, 64, 7, stride=2)
        self.relu = nn.ReLU()
        self.maxpool = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        channels = 64
        for index, (count, width) in enumerate(zip(STAGES, (64, 128, 256, 512)), start=1):
            layers = []
            for block in range(count):
                stride = 2 if block == 0 and index > 1 else 1
                layers.append(Bottleneck(channels, width, stride=stride, se=se))
                channels = width * Bottleneck.expansion
            setattr(self, f"layer{index}", nn.Sequential(*layers))
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Sequential(OrderedDict(
            fc1=nn.Linear(channels, 1000),
            relu1=nn.ReLU(),
            drop1=nn.Dropout(dropout),
            fc2=nn.Linear(1000, 2),
        ))

    def forward_features(self, x: Tensor) -> Tensor:
        """(N, 2048) average-pooled ``layer4`` maps."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.pool(x)

    def forward_head(self, features: Tensor) -> Tensor:
        """Logits (N, 2)."""
        return self.head(features)

    def block_modules(self) -> dict[str, list[nn.Module]]:
        """``stem`` (conv1, bn1) and the four stages ``layer1`` … ``layer4``."""
        return {"stem": [self.conv1, self.bn1], "layer1": [self.layer1],
                "layer2": [self.layer2], "layer3": [self.layer3], "layer4": [self.layer4]}


@register_model(
    "resnet50_nb",
    cfg=resnet_cfg("resnet50_nb"),
    summary="ResNet-50, VGGFace2 layout, + FC 1000 → 2 (VGGFace2 preprocessing)",
    published_params=25_612_154,
    published_note="Keras count: batch-norm running statistics included",
)
def resnet50_nb(*, dropout: float = 0.5) -> ResNet50:
    """ResNet-50, VGGFace2 layout, + FC 1000 → 2 (VGGFace2 preprocessing)."""
    return ResNet50(se=False, dropout=dropout)


@register_model(
    "senet50_nb",
    cfg=resnet_cfg("senet50_nb"),
    summary="SE-ResNet-50, VGGFace2 layout, + FC 1000 → 2 (VGGFace2 preprocessing)",
    published_params=28_143_146,
    published_note="Keras count: batch-norm running statistics included",
)
def senet50_nb(*, dropout: float = 0.5) -> ResNet50:
    """SE-ResNet-50, VGGFace2 layout, + FC 1000 → 2 (VGGFace2 preprocessing)."""
    return ResNet50(se=True, dropout=dropout)
