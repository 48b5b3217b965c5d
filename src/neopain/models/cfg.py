"""``ModelCfg``: the preprocessing and output convention a model was trained with.

The cfg travels with the weights (checkpoints, ONNX metadata), so that every runtime feeds the
network exactly as training did: resize to ``input_size``, put the channels in
``channel_order``, scale pixels to 0–1, subtract ``mean`` and divide by ``std``
(the ``FaceDataset`` convention).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from numbers import Integral, Real
from typing import Any

from neopain.errors import NeopainError

CHANNEL_ORDERS = ("RGB", "BGR")


@dataclass(frozen=True)
class ModelCfg:
    """Input size, normalization, channel order, class labels and CAM layer of a model.

    Attributes:
        name: the registry name, e.g. ``"ncnn"``.
        input_size: (height, width) in pixels.
        mean, std: per channel, in ``channel_order``, on the 0–1 scale; a network fed raw 0–255
            values minus a mean ``m`` has ``mean = m / 255`` and ``std = 1 / 255``.
        channel_order: ``"RGB"`` or ``"BGR"``.
        labels: class names in output index order (``FaceDataset.LABEL_INDEX``).
        cam_layer: dotted module path of the layer Grad-CAM targets (usually the last
            convolution; N-CNN's is finer, docs/explain.md).
        threshold: P(pain) at or above which the prediction is ``pain``.

    Raises:
        NeopainError: a field out of range (the message names it, its value and what is valid).
    """

    name: str
    input_size: tuple[int, int]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    channel_order: str = "RGB"
    labels: tuple[str, ...] = ("nopain", "pain")
    cam_layer: str = ""
    threshold: float = 0.5

    def __post_init__(self) -> None:
        # lists from JSON/YAML become tuples, so that equal cfgs compare and hash equal
        for key in ("input_size", "mean", "std", "labels"):
            value = getattr(self, key)
            if isinstance(value, (list, tuple)):
                object.__setattr__(self, key, tuple(value))
        if not isinstance(self.name, str) or not self.name:
            raise NeopainError(f"model cfg: name={self.name!r} must be a non-empty string")
        size = self.input_size
        if (not isinstance(size, tuple) or len(size) != 2
                or not all(isinstance(v, Integral) and not isinstance(v, bool) and v > 0
                           for v in size)):
            raise NeopainError(f"model cfg {self.name!r}: input_size={size!r} must be "
                               "(height, width), two positive integers")
        object.__setattr__(self, "input_size", (int(size[0]), int(size[1])))
        for key in ("mean", "std"):
            value = getattr(self, key)
            if (not isinstance(value, tuple) or len(value) != 3
                    or not all(isinstance(v, Real) and not isinstance(v, bool) for v in value)):
                raise NeopainError(f"model cfg {self.name!r}: {key}={value!r} must be three "
                                   "numbers, one per channel")
            object.__setattr__(self, key, tuple(float(v) for v in value))
        if not all(v > 0 for v in self.std):
            raise NeopainError(f"model cfg {self.name!r}: std={self.std!r} must be positive")
        if self.channel_order not in CHANNEL_ORDERS:
            raise NeopainError(f"model cfg {self.name!r}: channel_order={self.channel_order!r}; "
                               f"valid: {', '.join(CHANNEL_ORDERS)}")
        if (len(self.labels) < 2 or len(set(self.labels)) != len(self.labels)
                or not all(isinstance(v, str) and v for v in self.labels)):
            raise NeopainError(f"model cfg {self.name!r}: labels={self.labels!r} must be two or "
                               "more distinct names")
        if not isinstance(self.cam_layer, str):
            raise NeopainError(f"model cfg {self.name!r}: cam_layer={self.cam_layer!r} must be "
                               "a dotted module path")
        if (not isinstance(self.threshold, Real) or isinstance(self.threshold, bool)
                or not 0.0 < self.threshold < 1.0):
            raise NeopainError(f"model cfg {self.name!r}: threshold={self.threshold!r} must be "
                               "between 0 and 1 (exclusive)")
        object.__setattr__(self, "threshold", float(self.threshold))

    def to_dict(self) -> dict[str, Any]:
        """The cfg as plain JSON/YAML values (tuples become lists)."""
        return {key: list(value) if isinstance(value, tuple) else value
                for key, value in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelCfg:
        """Rebuild a cfg written by ``to_dict``.

        Raises:
            NeopainError: ``data`` is not a mapping, lacks a required field or has an unknown one.
        """
        if not isinstance(data, dict):
            raise NeopainError(f"model cfg must be a mapping, got {type(data).__name__}")
        known = {field.name for field in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise NeopainError(f"model cfg: unknown field(s) {', '.join(unknown)}; "
                               f"valid: {', '.join(sorted(known))}")
        missing = [key for key in ("name", "input_size", "mean", "std") if key not in data]
        if missing:
            raise NeopainError(f"model cfg: missing field(s) {', '.join(missing)}")
        return cls(**data)
