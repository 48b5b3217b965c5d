"""Exported models whose evidence lies where the test says: the pain logit is computed from the
top-left quarter of the input only (its mean, or its mean square: any departure from the cfg's
mean colour), so an occlusion heatmap must light that quarter and nothing else."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from neopain.export.metadata import ExportedCfg
from neopain.export.onnx import export_model
from neopain.models import PainModel, model_cfg


class TopLeft(PainModel):
    """Pain logit = mean (or mean square) of the top-left quarter of the input."""

    def __init__(self, *, squared: bool = False) -> None:
        super().__init__()
        self.squared = squared
        self.head = nn.Identity()

    def forward_features(self, x):
        half = x.shape[2] // 2, x.shape[3] // 2
        quarter = x[:, :, :half[0], :half[1]]
        return (quarter * quarter if self.squared else quarter).mean(dim=(1, 2, 3))[:, None]

    def forward_head(self, features):
        return torch.cat([torch.zeros_like(features), features], dim=1)

    def block_modules(self):
        return {}


def top_left_model(folder: Path, *, squared: bool = False) -> Path:
    """The model exported to ``folder``: N-CNN's cfg (120×120, mean = std = 0.5), face-box crop."""
    model = TopLeft(squared=squared)
    model.cfg = model_cfg("ncnn")
    name = "topleft-squared.onnx" if squared else "topleft.onnx"
    return export_model(model, folder / name, exported=ExportedCfg(cfg=model.cfg))
