"""Inception-V3 (Szegedy et al. 2016) exactly as Keras builds it, with the thesis's head.

``inception_v3_nb`` is ``keras.applications.InceptionV3(include_top=False)`` followed by
global average pooling (2048 features) and Dense 512 → Dense 512 → Dense 2, ReLU and dropout
between. Every convolution is Keras's ``conv2d_bn``: a bias-free convolution, batch norm
without a scale (beta only, ε 0.001) and ReLU. Stride-2 convolutions and the max-pools use
'valid' padding, the others 'same'; the branch average pools (3×3, stride 1, 'same') average
over the pixels inside the image only, as TensorFlow does.

The blocks are Keras's: ``stem`` (five convolutions and two max-pools) and ``mixed0`` …
``mixed10``. The submodules of each block are created in the order Keras creates its layers,
so the model's convolutions in module order are Keras's ``conv2d_1`` … ``conv2d_94``
(``models.weights`` loads Keras files by that order). ``mixed9`` and ``mixed10`` hold the last
18 convolutions (9 each): unfreezing those two blocks fine-tunes the thesis's "last 18
convolutional layers".

Parameter counts: torch counts 23,081,122 (21,768,352 in the backbone); Keras also counts the
34,432 batch-norm moving means and variances: 23,115,554, the published figure (InceptionV3
without top 21,802,784 + head 1,312,770). Input as Keras's ImageNet weights expect: 299×299
RGB scaled to −1…1 (``x / 127.5 − 1``: mean 0.5, std 0.5 on the 0–1 scale); any size from
75×75 runs.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import Tensor, nn

from neopain.errors import NeopainError
from neopain.models.base import PainModel
from neopain.models.cfg import ModelCfg
from neopain.models.registry import register_model

KERAS_BN_EPSILON = 1e-3
KERAS_BN_MOMENTUM = 0.01
"""Keras's moving-average decay 0.99, as torch's momentum (the weight of the new batch)."""

Kernel = int | tuple[int, int]


class ScalelessBatchNorm2d(nn.BatchNorm2d):
    """Keras ``BatchNormalization(scale=False)``: normalize, then add a learned beta (``bias``).

    torch's affine batch norm also learns a scale (gamma) that Keras's Inception-V3 does not
    have; this one has ``bias``, ``running_mean`` and ``running_var`` only.
    """

    def __init__(self, channels: int) -> None:
        super().__init__(channels, eps=KERAS_BN_EPSILON, momentum=KERAS_BN_MOMENTUM,
                         affine=False)
        # BatchNorm2d.forward passes weight=None and this bias to F.batch_norm
        self.bias = nn.Parameter(torch.zeros(channels))

    def reset_parameters(self) -> None:
        """Running statistics to 0 and 1, beta to 0 (``affine=False`` would skip beta)."""
        super().reset_parameters()
        if self.bias is not None:  # None while BatchNorm2d.__init__ calls this
            nn.init.zeros_(self.bias)

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, scale=False"


class ConvBN(nn.Module):
    """Keras ``conv2d_bn``: bias-free convolution → scaleless batch norm → ReLU.

    Args:
        inputs, outputs: channels.
        kernel: (height, width), or one number for a square kernel.
        stride: 1 or 2.
        padding: ``"same"`` (stride 1 only: the output keeps the input's size) or ``"valid"``.

    Raises:
        ValueError: another padding, or 'same' with a stride (TensorFlow pads those
            asymmetrically; Inception-V3 has none).
    """

    def __init__(self, inputs: int, outputs: int, kernel: Kernel, *, stride: int = 1,
                 padding: str = "same") -> None:
        super().__init__()
        if padding not in ("same", "valid") or (padding == "same" and stride != 1):
            raise ValueError(f"ConvBN: padding={padding!r} with stride={stride}; valid: "
                             "'valid', or 'same' with stride 1")
        height, width = (kernel, kernel) if isinstance(kernel, int) else kernel
        # stride 1 and odd kernels: 'same' pads symmetrically
        pad = (height // 2, width // 2) if padding == "same" else (0, 0)
        self.conv = nn.Conv2d(inputs, outputs, (height, width), stride=stride, padding=pad,
                              bias=False)
        self.bn = ScalelessBatchNorm2d(outputs)
        self.relu = nn.ReLU()

    def forward(self, x: Tensor) -> Tensor:
        return self.relu(self.bn(self.conv(x)))


def _same_average_pool() -> nn.AvgPool2d:
    # TensorFlow's 'same' average pool divides by the pixels inside the image only
    return nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)


class Block35(nn.Module):
    """``mixed0`` … ``mixed2`` (35×35): 1×1 | 1×1 → 5×5 | 1×1 → 3×3 → 3×3 | avg-pool → 1×1."""

    def __init__(self, inputs: int, *, pool_channels: int) -> None:
        super().__init__()
        self.branch1x1 = ConvBN(inputs, 64, 1)
        self.branch5x5_1 = ConvBN(inputs, 48, 1)
        self.branch5x5_2 = ConvBN(48, 64, 5)
        self.branch3x3dbl_1 = ConvBN(inputs, 64, 1)
        self.branch3x3dbl_2 = ConvBN(64, 96, 3)
        self.branch3x3dbl_3 = ConvBN(96, 96, 3)
        self.pool = _same_average_pool()
        self.branch_pool = ConvBN(inputs, pool_channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([
            self.branch1x1(x),
            self.branch5x5_2(self.branch5x5_1(x)),
            self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
            self.branch_pool(self.pool(x)),
        ], dim=1)


class Reduction35(nn.Module):
    """``mixed3`` (35×35 → 17×17): 3×3/2 | 1×1 → 3×3 → 3×3/2 | max-pool 3×3/2."""

    def __init__(self, inputs: int) -> None:
        super().__init__()
        self.branch3x3 = ConvBN(inputs, 384, 3, stride=2, padding="valid")
        self.branch3x3dbl_1 = ConvBN(inputs, 64, 1)
        self.branch3x3dbl_2 = ConvBN(64, 96, 3)
        self.branch3x3dbl_3 = ConvBN(96, 96, 3, stride=2, padding="valid")
        self.pool = nn.MaxPool2d(3, stride=2)

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([
            self.branch3x3(x),
            self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
            self.pool(x),
        ], dim=1)


class Block17(nn.Module):
    """``mixed4`` … ``mixed7`` (17×17): 1×1 | 1×1 → 1×7 → 7×1 | 1×1 → 7×1 → 1×7 → 7×1 → 1×7 |
    avg-pool → 1×1; ``channels`` wide inside the factorized 7×7 branches."""

    def __init__(self, inputs: int, *, channels: int) -> None:
        super().__init__()
        c = channels
        self.branch1x1 = ConvBN(inputs, 192, 1)
        self.branch7x7_1 = ConvBN(inputs, c, 1)
        self.branch7x7_2 = ConvBN(c, c, (1, 7))
        self.branch7x7_3 = ConvBN(c, 192, (7, 1))
        self.branch7x7dbl_1 = ConvBN(inputs, c, 1)
        self.branch7x7dbl_2 = ConvBN(c, c, (7, 1))
        self.branch7x7dbl_3 = ConvBN(c, c, (1, 7))
        self.branch7x7dbl_4 = ConvBN(c, c, (7, 1))
        self.branch7x7dbl_5 = ConvBN(c, 192, (1, 7))
        self.pool = _same_average_pool()
        self.branch_pool = ConvBN(inputs, 192, 1)

    def forward(self, x: Tensor) -> Tensor:
        seven = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        double = self.branch7x7dbl_1(x)
        for layer in (self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4,
                      self.branch7x7dbl_5):
            double = layer(double)
        return torch.cat([self.branch1x1(x), seven, double, self.branch_pool(self.pool(x))],
                         dim=1)


class Reduction17(nn.Module):
    """``mixed8`` (17×17 → 8×8): 1×1 → 3×3/2 | 1×1 → 1×7 → 7×1 → 3×3/2 | max-pool 3×3/2."""

    def __init__(self, inputs: int) -> None:
        super().__init__()
        self.branch3x3_1 = ConvBN(inputs, 192, 1)
        self.branch3x3_2 = ConvBN(192, 320, 3, stride=2, padding="valid")
        self.branch7x7x3_1 = ConvBN(inputs, 192, 1)
        self.branch7x7x3_2 = ConvBN(192, 192, (1, 7))
        self.branch7x7x3_3 = ConvBN(192, 192, (7, 1))
        self.branch7x7x3_4 = ConvBN(192, 192, 3, stride=2, padding="valid")
        self.pool = nn.MaxPool2d(3, stride=2)

    def forward(self, x: Tensor) -> Tensor:
        seven = self.branch7x7x3_1(x)
        for layer in (self.branch7x7x3_2, self.branch7x7x3_3, self.branch7x7x3_4):
            seven = layer(seven)
        return torch.cat([self.branch3x3_2(self.branch3x3_1(x)), seven, self.pool(x)], dim=1)


class Block8(nn.Module):
    """``mixed9``, ``mixed10`` (8×8, 2048 channels): 1×1 | 1×1 → (1×3, 3×1) |
    1×1 → 3×3 → (1×3, 3×1) | avg-pool → 1×1; nine convolutions."""

    def __init__(self, inputs: int) -> None:
        super().__init__()
        self.branch1x1 = ConvBN(inputs, 320, 1)
        self.branch3x3_1 = ConvBN(inputs, 384, 1)
        self.branch3x3_2a = ConvBN(384, 384, (1, 3))
        self.branch3x3_2b = ConvBN(384, 384, (3, 1))
        self.branch3x3dbl_1 = ConvBN(inputs, 448, 1)
        self.branch3x3dbl_2 = ConvBN(448, 384, 3)
        self.branch3x3dbl_3a = ConvBN(384, 384, (1, 3))
        self.branch3x3dbl_3b = ConvBN(384, 384, (3, 1))
        self.pool = _same_average_pool()
        self.branch_pool = ConvBN(inputs, 192, 1)

    def forward(self, x: Tensor) -> Tensor:
        three = self.branch3x3_1(x)
        double = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        return torch.cat([
            self.branch1x1(x),
            self.branch3x3_2a(three), self.branch3x3_2b(three),
            self.branch3x3dbl_3a(double), self.branch3x3dbl_3b(double),
            self.branch_pool(self.pool(x)),
        ], dim=1)


def inception_v3_features() -> nn.Sequential:
    """Keras's InceptionV3 without top: ``stem``, ``mixed0`` … ``mixed10`` (2048 channels)."""
    stem = nn.Sequential(OrderedDict(
        conv1=ConvBN(3, 32, 3, stride=2, padding="valid"),
        conv2=ConvBN(32, 32, 3, padding="valid"),
        conv3=ConvBN(32, 64, 3),
        pool1=nn.MaxPool2d(3, stride=2),
        conv4=ConvBN(64, 80, 1, padding="valid"),
        conv5=ConvBN(80, 192, 3, padding="valid"),
        pool2=nn.MaxPool2d(3, stride=2),
    ))
    return nn.Sequential(OrderedDict(
        stem=stem,
        mixed0=Block35(192, pool_channels=32),
        mixed1=Block35(256, pool_channels=64),
        mixed2=Block35(288, pool_channels=64),
        mixed3=Reduction35(288),
        mixed4=Block17(768, channels=128),
        mixed5=Block17(768, channels=160),
        mixed6=Block17(768, channels=160),
        mixed7=Block17(768, channels=192),
        mixed8=Reduction17(768),
        mixed9=Block8(1280),
        mixed10=Block8(2048),
    ))


class InceptionV3(PainModel):
    """Keras's Inception-V3 backbone + global average pooling → 512 → 512 → 2.

    Args:
        dropout: drop rate after each of the two hidden Dense layers.
    """

    def __init__(self, *, dropout: float = 0.5) -> None:
        super().__init__()
        if not 0.0 <= dropout < 1.0:
            raise NeopainError(f"inception_v3_nb: dropout={dropout!r} is not valid; valid: a "
                               "number from 0 to below 1")
        self.dropout = dropout
        self.features = inception_v3_features()
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Sequential(OrderedDict(
            fc1=nn.Linear(2048, 512),
            relu1=nn.ReLU(),
            drop1=nn.Dropout(dropout),
            fc2=nn.Linear(512, 512),
            relu2=nn.ReLU(),
            drop2=nn.Dropout(dropout),
            fc3=nn.Linear(512, 2),
        ))

    def forward_features(self, x: Tensor) -> Tensor:
        """(N, 2048) average-pooled ``mixed10`` maps."""
        return self.pool(self.features(x))

    def forward_head(self, features: Tensor) -> Tensor:
        """Logits (N, 2)."""
        return self.head(features)

    def block_modules(self) -> dict[str, list[nn.Module]]:
        """``stem`` and ``mixed0`` … ``mixed10``, each one module."""
        return {name: [module] for name, module in self.features.named_children()}


@register_model(
    "inception_v3_nb",
    cfg=ModelCfg(
        name="inception_v3_nb",
        input_size=(299, 299),
        mean=(0.5, 0.5, 0.5),
        std=(0.5, 0.5, 0.5),
        channel_order="RGB",
        cam_layer="features.mixed10",
    ),
    summary="Inception-V3 (Keras layout) + global average pooling → 512 → 512 → 2",
    published_params=23_115_554,
    published_note="Keras count: batch-norm moving means and variances included",
)
def inception_v3_nb(*, dropout: float = 0.5) -> InceptionV3:
    """Inception-V3 (Keras layout) + global average pooling → 512 → 512 → 2."""
    return InceptionV3(dropout=dropout)
