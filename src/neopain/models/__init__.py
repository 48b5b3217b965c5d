"""The model architectures, built by name from one registry; each carries its preprocessing.

Example:
    >>> from neopain.models import create_model
    >>> model = create_model("ncnn")
    >>> logits = model(torch.zeros(1, 3, *model.cfg.input_size))   # (1, 2)
"""

from neopain.models.base import PainModel
from neopain.models.cfg import ModelCfg
from neopain.models.registry import (
    ModelInfo,
    create_model,
    list_models,
    model_cfg,
    model_info,
    register_model,
)

__all__ = [
    "ModelCfg",
    "ModelInfo",
    "PainModel",
    "create_model",
    "list_models",
    "model_cfg",
    "model_info",
    "register_model",
]
