"""N-CNN, the Neonatal Convolutional Neural Network (Zamzmi et al., IJCNN 2019).

Three branches over a 120×120 face, concatenated into 131 channels at 12×12:

- left: max-pool 10 (the image itself, downsampled: 3 channels);
- centre: conv 5×5 (64) → LeakyReLU → max-pool 3 → conv 2×2 (64) → LeakyReLU → max-pool 3
  → dropout;
- right: conv 5×5 (64, padding 2) → LeakyReLU → max-pool 10 → dropout;

then ``merge``: conv 2×2 (64) → ReLU → max-pool 2 → flatten (1600) is the backbone's output;
the head is FC 8 → ReLU → FC 2 (72,602 parameters; 72,593 with one sigmoid output).
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import Tensor, nn

from neopain.errors import NeopainError
from neopain.models.base import PainModel
from neopain.models.cfg import ModelCfg
from neopain.models.registry import register_model

NCNN_CFG = ModelCfg(
    name="ncnn",
    input_size=(120, 120),
    mean=(0.5, 0.5, 0.5),  # pixels scaled to [-1, 1]
    std=(0.5, 0.5, 0.5),
    channel_order="RGB",
    cam_layer="centre.conv2",  # finer than merge.conv (11×11): docs/explain.md
)


class NCNN(PainModel):
    """N-CNN; see the module docstring for the layers.

    Args:
        dropout: drop rate after the centre and right branches.
        single_output: one logit (sigmoid P(pain)), the variant the five-CNN comparison counts,
            instead of two (softmax).
    """

    def __init__(self, *, dropout: float = 0.1, single_output: bool = False) -> None:
        super().__init__()
        if not 0.0 <= dropout < 1.0:
            raise NeopainError(f"ncnn: dropout={dropout!r} must be in [0, 1)")
        self.dropout = dropout
        self.single_output = single_output
        self.left = nn.MaxPool2d(10)
        # Each activation runs after its max-pool, not before as the paper draws it: both are
        # monotonic, so pool(act(x)) == act(pool(x)) exactly, and activating the pooled map does
        # 9-100x less element-wise work (a training step took a third of the CPU time with bf16).
        self.centre = nn.Sequential(OrderedDict(
            conv1=nn.Conv2d(3, 64, 5),
            pool1=nn.MaxPool2d(3),
            act1=nn.LeakyReLU(),
            conv2=nn.Conv2d(64, 64, 2),
            pool2=nn.MaxPool2d(3),
            act2=nn.LeakyReLU(),
            drop=nn.Dropout(dropout),
        ))
        self.right = nn.Sequential(OrderedDict(
            conv=nn.Conv2d(3, 64, 5, padding=2),
            pool=nn.MaxPool2d(10),
            act=nn.LeakyReLU(),
            drop=nn.Dropout(dropout),
        ))
        self.merge = nn.Sequential(OrderedDict(
            conv=nn.Conv2d(3 + 64 + 64, 64, 2),
            pool=nn.MaxPool2d(2),
            act=nn.ReLU(),
            flatten=nn.Flatten(),
        ))
        self.head = nn.Sequential(OrderedDict(
            fc1=nn.Linear(64 * 5 * 5, 8),
            act=nn.ReLU(),
            fc2=nn.Linear(8, 1 if single_output else 2),
        ))

    def forward_features(self, x: Tensor) -> Tensor:
        """(N, 1600) features of (N, 3, 120, 120) faces."""
        branches = torch.cat([self.left(x), self.centre(x), self.right(x)], dim=1)
        return self.merge(branches)

    def forward_head(self, features: Tensor) -> Tensor:
        """Logits (N, 2), or (N, 1) with ``single_output``."""
        return self.head(features)

    def block_modules(self) -> dict[str, list[nn.Module]]:
        """``centre``, ``right`` and ``merge`` (the left branch has no parameters)."""
        return {"centre": [self.centre], "right": [self.right], "merge": [self.merge]}


@register_model(
    "ncnn",
    cfg=NCNN_CFG,
    summary="N-CNN (Zamzmi et al. 2019): three branches, 120×120 RGB",
    published_params=72_593,
    published_note="with a single sigmoid output, as the five-CNN comparison counts it; "
                   "72,602 with two outputs",
)
def ncnn(*, dropout: float = 0.1, single_output: bool = False) -> NCNN:
    """N-CNN (Zamzmi et al. 2019): three branches, 120×120 RGB."""
    return NCNN(dropout=dropout, single_output=single_output)
