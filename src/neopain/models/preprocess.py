"""A model's preprocessing: a face crop → the float32 input its network was trained on.

Training (``training.dataset.FaceDataset``), the ONNX runtime and the explainers all call
``network_input``, so the bedside feeds a network exactly what it was trained on. It lives with
the model's cfg, not with augmentation: the bedside runtime imports neither.
"""

from __future__ import annotations

import cv2
import numpy as np

from neopain.errors import NeopainError
from neopain.models.cfg import ModelCfg


def resize_sample(image: np.ndarray, points: np.ndarray | None = None, *,
                  size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray | None]:
    """Resize to ``size`` (height, width) and map (x, y) points exactly onto the new pixels.

    Written here instead of using ``A.Resize``: albumentations scales keypoints as ``x * s``,
    which for pixel-centre coordinates is off by ``(s - 1) / 2`` px (1.4 px when 60 px become
    224); cv2 maps pixel centres as ``(x + 0.5) * s - 0.5``.
    """
    height, width = image.shape[:2]
    if (height, width) == tuple(size):
        return image, points
    shrink = size[0] * size[1] < height * width
    resized = cv2.resize(image, (size[1], size[0]),
                         interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
    resized = resized.reshape(*size, *image.shape[2:])  # cv2 drops a single channel axis
    if points is None:
        return resized, None
    scale = np.array([size[1] / width, size[0] / height])
    return resized, (np.asarray(points, dtype=float) + 0.5) * scale - 0.5


def network_input(image: np.ndarray, *, size: tuple[int, int], mean, std) -> np.ndarray:
    """An H×W×3 uint8 image, already in the model's channel order → the float32 3×H×W input:
    ``resize_sample`` to ``size``, then ``(pixel / 255 − mean) / std`` per channel. Training
    (``FaceDataset``), the ONNX runtime and the explainers all call this one function, so the
    bedside feeds a network exactly what it was trained on."""
    image, _ = resize_sample(image, None, size=size)
    pixels = ((image.astype(np.float32) / 255.0 - np.asarray(mean, dtype=np.float32))
              / np.asarray(std, dtype=np.float32))
    return np.ascontiguousarray(pixels.transpose(2, 0, 1))


def preprocess_crop(crop: np.ndarray, cfg: ModelCfg) -> np.ndarray:
    """One BGR uint8 face crop → the float32 3×H×W input of a model with ``cfg``.

    Raises:
        NeopainError: a crop that is not an H×W×3 uint8 array.
    """
    if not isinstance(crop, np.ndarray) or crop.ndim != 3 or crop.shape[2] != 3 \
            or crop.dtype != np.uint8 or crop.size == 0:
        what = f"{crop.dtype} {crop.shape}" if isinstance(crop, np.ndarray) else \
            type(crop).__name__
        raise NeopainError(f"a face crop must be a BGR uint8 H×W×3 array; got {what}")
    image = np.ascontiguousarray(crop[:, :, ::-1]) if cfg.channel_order == "RGB" else crop
    return network_input(image, size=cfg.input_size, mean=cfg.mean, std=cfg.std)
