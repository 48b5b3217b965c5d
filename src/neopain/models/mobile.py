"""MobileNetV2 (Sandler et al. 2018) for the bedside: small, fast on a CPU.

``mobilenet_nb`` is MobileNetV2 at width 0.5 on 128×128 RGB faces with ImageNet
normalization, chosen by measurement (``benchmarks/bench_bedside_models.py``, torch on 2 CPU
threads, one face): 690,242 parameters (2.8 MB fp32) and about 5 ms per face, faster than
N-CNN at 120×120 (about 11 ms: its full-resolution 5×5 convolutions). Width 1.0 triples the
parameters for about 60 % more time; 160×160 input costs about 20 % more time at inference
and 1.56× the pixels in every training epoch; at 96 the time falls less than 20 % (fixed
per-call overhead) while the brows, eyes and mouth lose pixels.
"""

from __future__ import annotations

from collections import OrderedDict

from torch import Tensor, nn

from neopain.errors import NeopainError
from neopain.models.base import PainModel
from neopain.models.cfg import ModelCfg
from neopain.models.registry import register_model

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

INVERTED_RESIDUAL_STAGES = (
    # expansion, output channels, repeats, first stride
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)
"""MobileNetV2's stages at width 1.0."""

LAST_CHANNELS = 1280


def _divisible(value: float, divisor: int = 8) -> int:
    """Round channels to a multiple of 8, never below 90 % of ``value`` (MobileNetV2's rule)."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


def _conv_bn_relu(inputs: int, outputs: int, kernel: int, *, stride: int = 1,
                  groups: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(inputs, outputs, kernel, stride=stride, padding=kernel // 2, groups=groups,
                  bias=False),
        nn.BatchNorm2d(outputs),
        nn.ReLU6(),
    )


class InvertedResidual(nn.Module):
    """1×1 expand → 3×3 depthwise (stride) → 1×1 linear projection; residual when shapes match."""

    def __init__(self, inputs: int, outputs: int, *, stride: int, expansion: int) -> None:
        super().__init__()
        hidden = inputs * expansion
        layers: list[nn.Module] = []
        if expansion != 1:
            layers.append(_conv_bn_relu(inputs, hidden, 1))
        layers += [
            _conv_bn_relu(hidden, hidden, 3, stride=stride, groups=hidden),
            nn.Conv2d(hidden, outputs, 1, bias=False),
            nn.BatchNorm2d(outputs),
        ]
        self.block = nn.Sequential(*layers)
        self.residual = stride == 1 and inputs == outputs

    def forward(self, x: Tensor) -> Tensor:
        out = self.block(x)
        return x + out if self.residual else out


class MobileNetV2(PainModel):
    """MobileNetV2 with a width multiplier; head: dropout → FC 2.

    Args:
        width: channel multiplier (0.35, 0.5, 0.75, 1.0 are the usual ones).
        dropout: drop rate before the FC layer.
    """

    def __init__(self, *, width: float = 0.5, dropout: float = 0.2) -> None:
        super().__init__()
        if not 0.0 < width <= 2.0:
            raise NeopainError(f"mobilenet: width={width!r} must be in (0, 2]")
        if not 0.0 <= dropout < 1.0:
            raise NeopainError(f"mobilenet: dropout={dropout!r} must be in [0, 1)")
        self.width = width
        self.dropout = dropout
        channels = _divisible(32 * width)
        layers: OrderedDict[str, nn.Module] = OrderedDict(
            stem=_conv_bn_relu(3, channels, 3, stride=2))
        for index, (expansion, outputs, repeats, stride) in enumerate(
                INVERTED_RESIDUAL_STAGES, start=1):
            outputs = _divisible(outputs * width)
            stage = []
            for repeat in range(repeats):
                stage.append(InvertedResidual(channels, outputs, stride=stride if repeat == 0
                                              else 1, expansion=expansion))
                channels = outputs
            layers[f"stage{index}"] = nn.Sequential(*stage)
        last = _divisible(LAST_CHANNELS * max(1.0, width))
        layers["last"] = _conv_bn_relu(channels, last, 1)
        self.features = nn.Sequential(layers)
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Sequential(OrderedDict(drop=nn.Dropout(dropout), fc=nn.Linear(last, 2)))

    def forward_features(self, x: Tensor) -> Tensor:
        """(N, 1280) average-pooled last feature maps."""
        return self.pool(self.features(x))

    def forward_head(self, features: Tensor) -> Tensor:
        """Logits (N, 2)."""
        return self.head(features)

    def block_modules(self) -> dict[str, list[nn.Module]]:
        """``stem``, ``stage1`` … ``stage7`` and ``last`` (the 1×1 convolution to 1280)."""
        return {name: [module] for name, module in self.features.named_children()}


def mobilenet_cfg(name: str, *, input_size: int) -> ModelCfg:
    """ImageNet normalization, RGB, square ``input_size``."""
    return ModelCfg(name=name, input_size=(input_size, input_size), mean=IMAGENET_MEAN,
                    std=IMAGENET_STD, channel_order="RGB", cam_layer="features.last")


MOBILENET_CFG = mobilenet_cfg("mobilenet_nb", input_size=128)


@register_model("mobilenet_nb", cfg=MOBILENET_CFG,
                summary="MobileNetV2 width 0.5, 128×128 RGB: the bedside model")
def mobilenet_nb(*, dropout: float = 0.2) -> MobileNetV2:
    """MobileNetV2 width 0.5, 128×128 RGB: the bedside model."""
    return MobileNetV2(width=0.5, dropout=dropout)
