"""The model architectures, built by name from one registry; each carries its preprocessing.

Example:
    >>> from neopain.models import create_model
    >>> model = create_model("ncnn")
    >>> logits = model(torch.zeros(1, 3, *model.cfg.input_size))   # (1, 2)

The names below load on first use (PEP 562): a model's cfg and preprocessing
(``models.cfg``, ``models.preprocess``), which the ONNX runtime and augmentation need, do not
load torch.
"""

from __future__ import annotations

from neopain.lazy import lazy_exports

_EXPORTS = {
    "neopain.models.base": ("PainModel",),
    "neopain.models.cfg": ("ModelCfg",),
    "neopain.models.registry": ("ModelInfo", "create_model", "list_models", "model_cfg",
                                "model_info", "register_model"),
}
__getattr__, __all__ = lazy_exports(__name__, _EXPORTS)
