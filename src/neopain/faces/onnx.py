"""``onnx``: a user-supplied YuNet face detector file, run with onnxruntime on the CPU.

The format is YuNet's as published in the OpenCV Zoo (``face_detection_yunet_2023mar.onnx``)
and decoded as OpenCV's ``FaceDetectorYN`` does (modules/objdetect/src/face_detect.cpp):

- one input ``input``: float32 1×3×H×W, BGR, pixel values 0–255 unscaled, no mean. A model with
  a fixed H×W gets the image resized to fit (aspect kept) and padded right and below with
  zeros; a model with free H and W gets the image padded to multiples of 32;
- twelve outputs ``cls_S``, ``obj_S``, ``bbox_S``, ``kps_S`` for strides S = 8, 16, 32, one
  row per grid cell (row-major, (H/S)·(W/S) cells): score = sqrt(cls · obj) (each clipped to
  [0, 1]); box centre = (cell + bbox[0:2]) · S, size = exp(bbox[2:4]) · S; keypoint k =
  (cell + kps[2k:2k+2]) · S, in the order right eye, left eye, nose tip, right mouth corner,
  left mouth corner;
- overlapping boxes are merged by non-maximum suppression (``cv2.dnn.NMSBoxes``).

Eyes and mouth corners are re-ordered image-left first (``KEYPOINT_NAMES``). The default
threshold, 0.6, is the OpenCV Zoo demo's; NMS IoU 0.3 and top-k 5000 are OpenCV's.
No model ships with neopain; pass ``model=PATH``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from neopain.faces.base import (
    DetectorError,
    Face,
    FaceDetector,
    image_left_first,
    register_detector,
)
from neopain.faces.onnx_session import open_onnx_session, run_onnx_session

STRIDES = (8, 16, 32)
INPUT_NAME = "input"
OUTPUT_NAMES = tuple(f"{kind}_{stride}" for kind in ("cls", "obj", "bbox", "kps")
                     for stride in STRIDES)
_DIVISOR = 32
_EXPECTED = (f"a YuNet ONNX model (e.g. OpenCV Zoo's face_detection_yunet_2023mar.onnx) with "
             f"input {INPUT_NAME!r} (1×3×H×W) and outputs {', '.join(OUTPUT_NAMES)}")


@register_detector("onnx")
class YuNetOnnx(FaceDetector):
    """A YuNet ONNX detector file (format in the module docstring), on onnxruntime's CPU.

    Args:
        model: path of the .onnx file.
        threshold: lowest score reported (default 0.6).
        max_side: longer image side used for detection.
        nms_threshold: IoU above which the lower-scoring of two boxes is dropped.
        top_k: most boxes kept by non-maximum suppression.

    Raises:
        DetectorError: no model given, a file that is missing, not ONNX, or lacks YuNet's
            input and outputs.
    """

    default_threshold = 0.6
    has_keypoints = True
    needs_model = True

    def __init__(
        self,
        *,
        model: str | os.PathLike[str] | None = None,
        threshold: float | None = None,
        max_side: int = 1280,
        nms_threshold: float = 0.3,
        top_k: int = 5000,
    ) -> None:
        super().__init__(threshold=threshold, max_side=max_side)
        self.model = model
        self.nms_threshold = nms_threshold
        self.top_k = top_k
        if model is None:
            raise DetectorError(f"detector 'onnx' needs model=PATH: {_EXPECTED}")
        if not 0.0 < nms_threshold <= 1.0:
            raise DetectorError(f"nms_threshold={nms_threshold} must lie in (0, 1]")
        if top_k < 1:
            raise DetectorError(f"top_k={top_k} must be at least 1")
        self._session: Any = self._load(Path(model))
        dims = self._session.get_inputs()[0].shape[2:]
        # fixed H, W when the model says so; None where the dimension is free (symbolic)
        self.input_size_ = tuple(d if isinstance(d, int) and d > 0 else None for d in dims)

    @staticmethod
    def _load(path: Path) -> Any:
        session = open_onnx_session(path, expected=_EXPECTED)
        inputs = session.get_inputs()
        outputs = {output.name for output in session.get_outputs()}
        problems = []
        if [i.name for i in inputs] != [INPUT_NAME] or len(inputs[0].shape) != 4:
            found = ", ".join(f"{i.name!r} {i.shape}" for i in inputs) or "none"
            problems.append(f"inputs are {found}")
        missing = [name for name in OUTPUT_NAMES if name not in outputs]
        if missing:
            problems.append(f"outputs {', '.join(missing)} are missing")
        if problems:
            raise DetectorError(f"{path}: {'; '.join(problems)}; expected {_EXPECTED}")
        return session

    def _input(self, image: np.ndarray) -> tuple[np.ndarray, float]:
        """The padded 1×3×H×W BGR float blob and the factor image pixels were scaled by."""
        height, width = image.shape[:2]
        fixed_h, fixed_w = self.input_size_
        if fixed_h is not None and fixed_w is not None:
            scale = min(fixed_h / height, fixed_w / width)
            size = (max(1, round(width * scale)), max(1, round(height * scale)))
            image = cv2.resize(image, size, interpolation=cv2.INTER_AREA if scale < 1
                               else cv2.INTER_LINEAR)
            pad_h, pad_w = fixed_h, fixed_w
        else:
            scale = 1.0
            pad_h = -(-height // _DIVISOR) * _DIVISOR
            pad_w = -(-width // _DIVISOR) * _DIVISOR
        blob = np.zeros((1, 3, pad_h, pad_w), np.float32)
        blob[0, :, : image.shape[0], : image.shape[1]] = image.transpose(2, 0, 1)
        return blob, scale

    def _detect(self, image: np.ndarray, *, prior: Face | None) -> list[Face]:
        if self._session is None:
            raise DetectorError("detector 'onnx' is closed; create a new one")
        blob, scale = self._input(image)
        values = run_onnx_session(self._session, OUTPUT_NAMES, {INPUT_NAME: blob},
                                  name=str(self.model))
        outputs = dict(zip(OUTPUT_NAMES, values))
        boxes, scores, points = [], [], []
        for stride in STRIDES:
            rows, cols = blob.shape[2] // stride, blob.shape[3] // stride
            cells = rows * cols
            parts = {}
            for kind, width in (("cls", 1), ("obj", 1), ("bbox", 4), ("kps", 10)):
                name = f"{kind}_{stride}"
                part = np.asarray(outputs[name], dtype=np.float64)
                if part.size != cells * width:
                    raise DetectorError(
                        f"{self.model}: output {name!r} has {part.size} values; a "
                        f"{blob.shape[3]}×{blob.shape[2]} input needs {cells}×{width}")
                parts[kind] = part.reshape(cells, width)
            score = np.sqrt(np.clip(parts["cls"][:, 0], 0, 1) * np.clip(parts["obj"][:, 0], 0, 1))
            keep = np.flatnonzero(score >= self.threshold_)
            cell_xy = np.stack([keep % cols, keep // cols], axis=1).astype(np.float64)
            bbox = parts["bbox"][keep]
            centre = (cell_xy + bbox[:, :2]) * stride
            size = np.exp(bbox[:, 2:4]) * stride
            boxes.append(np.hstack([centre - size / 2, size]))
            scores.append(score[keep])
            points.append((parts["kps"][keep].reshape(-1, 5, 2) + cell_xy[:, None, :]) * stride)
        box_array, score_array = np.vstack(boxes), np.concatenate(scores)
        point_array = np.concatenate(points)
        if not len(score_array):
            return []
        kept = cv2.dnn.NMSBoxes(box_array.tolist(), score_array.tolist(), self.threshold_,
                                self.nms_threshold, top_k=self.top_k)
        faces = []
        for i in np.ravel(kept):
            x, y, w, h = (float(v) for v in box_array[i] / scale)
            keypoints = image_left_first(point_array[i] / scale)
            faces.append(Face(box=(x, y, x + w, y + h), score=float(score_array[i]),
                              keypoints=keypoints))
        return faces

    def close(self) -> None:
        """Release the onnxruntime session. Safe to call twice."""
        self._session = None
