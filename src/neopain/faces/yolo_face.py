"""``yolo-face``: a user-supplied YOLOv5-face or YOLOv8-face ONNX file, run with onnxruntime on
the CPU.

Both layouts take one input, float32 1×3×H×W, RGB, pixel / 255, the image letterboxed into it
as their ``letterbox`` does: resized by r = min(H/h, W/w) to round(w·r)×round(h·r) and padded
evenly on both sides with grey (114, 114, 114), left = round(pad_w/2 − 0.1), top =
round(pad_h/2 − 0.1). A model with free H and W gets the image unscaled (r = 1) and padded to
the next multiple of 64 (the largest stride of the P6 models). Boxes and keypoints come out in
input pixels and are mapped back exactly: x = (x_input − left)·w/round(w·r), likewise y.
Which layout a file has is told from its one output's shape:

- **yolov5-face**, ``export.py`` of deepcam-cn/yolov5-face (``export_cat``, ``models/yolo.py``
  ``Detect.forward``): 1×N×16, each row cx, cy, w, h, obj, then 5 keypoints x, y, then cls;
  obj and cls are already sigmoids and the score is obj·cls (``non_max_suppression_face``);
- **yolov8-face**, an Ultralytics pose model of faces with 5 keypoints (``kpt_shape: [5, 3]``,
  as in derronqi/yolov8-face's ``widerface.yaml``) exported by Ultralytics' own ONNX export
  (``Pose.forward`` with ``export=True``): 1×20×N, each column cx, cy, w, h, the face score (a
  sigmoid), then 5 keypoints x, y, visibility (the visibility is not used). derronqi/yolov8-face's
  modified export (one raw output per stride, for ncnn) and face models without keypoints
  (1×5×N) are refused.

Overlapping boxes are merged by non-maximum suppression at IoU 0.5 (``cv2.dnn.NMSBoxes``); the
default threshold, 0.6, and the IoU are yolov5-face's ``detect_face.py``. Keypoints come in the
WIDER FACE order (eyes, nose, mouth corners) and are re-ordered image-left first
(``KEYPOINT_NAMES``). No model ships with neopain; pass ``model=PATH``.
"""

from __future__ import annotations

import math
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

PAD_GREY = 114
FREE_SIZE_DIVISOR = 64
YOLOV5_WIDTH = 16
YOLOV8_WIDTH = 20
_EXPECTED = ("a YOLO face ONNX model in one of these layouts: 'yolov5-face' (deepcam-cn/"
             "yolov5-face's export.py: one input 1×3×H×W, one output 1×N×16) or 'yolov8-face' "
             "(an Ultralytics pose export with 5 keypoints: one input 1×3×H×W, one output "
             "1×20×N)")


def _layout(shape: list[Any]) -> str | None:
    """'yolov5-face', 'yolov8-face', or None when the output's shape matches neither."""
    if len(shape) != 3:
        return None
    if shape[2] == YOLOV5_WIDTH and shape[1] != YOLOV8_WIDTH:
        return "yolov5-face"
    if shape[1] == YOLOV8_WIDTH and shape[2] != YOLOV5_WIDTH:
        return "yolov8-face"
    return None


def letterbox(image: np.ndarray, *, height: int, width: int,
              enlarge: bool = True) -> tuple[np.ndarray, tuple[int, int], tuple[float, float]]:
    """``image`` resized to fit H×W (aspect kept; never enlarged when ``enlarge`` is False) and
    padded evenly with grey.

    Returns:
        the H×W×3 image, its (left, top) offset, and the (x, y) factors input pixels were
        scaled by (round(w·r)/w, round(h·r)/h).
    """
    rows, cols = image.shape[:2]
    ratio = min(height / rows, width / cols, math.inf if enlarge else 1.0)
    new_w, new_h = max(1, round(cols * ratio)), max(1, round(rows * ratio))
    if (new_w, new_h) != (cols, rows):
        image = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    left, top = round((width - new_w) / 2 - 0.1), round((height - new_h) / 2 - 0.1)
    canvas = np.full((height, width, 3), PAD_GREY, np.uint8)
    canvas[top: top + new_h, left: left + new_w] = image
    return canvas, (left, top), (new_w / cols, new_h / rows)


@register_detector("yolo-face")
class YoloFaceOnnx(FaceDetector):
    """A YOLOv5-face or YOLOv8-face ONNX file (layouts in the module docstring), on
    onnxruntime's CPU.

    Args:
        model: path of the .onnx file.
        threshold: lowest score reported (default 0.6).
        max_side: longer image side used for detection.
        nms_threshold: IoU above which the lower-scoring of two boxes is dropped.
        top_k: most boxes kept by non-maximum suppression.

    Raises:
        DetectorError: no model given, a file that is missing, not ONNX, or in neither layout.
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
        nms_threshold: float = 0.5,
        top_k: int = 5000,
    ) -> None:
        super().__init__(threshold=threshold, max_side=max_side)
        self.model = model
        self.nms_threshold = nms_threshold
        self.top_k = top_k
        if model is None:
            raise DetectorError(f"detector 'yolo-face' needs model=PATH: {_EXPECTED}")
        if not 0.0 < nms_threshold <= 1.0:
            raise DetectorError(f"nms_threshold={nms_threshold} must lie in (0, 1]")
        if top_k < 1:
            raise DetectorError(f"top_k={top_k} must be at least 1")
        self._session: Any = open_onnx_session(Path(model), expected=_EXPECTED)
        self.layout_ = self._check(self._session, Path(model))
        dims = self._session.get_inputs()[0].shape[2:]
        # fixed H, W when the model says so; None where the dimension is free (symbolic)
        self.input_size_ = tuple(d if isinstance(d, int) and d > 0 else None for d in dims)

    @staticmethod
    def _check(session: Any, path: Path) -> str:
        inputs, outputs = session.get_inputs(), session.get_outputs()
        problems = []
        if len(inputs) != 1 or len(inputs[0].shape) != 4:
            found = ", ".join(f"{i.name!r} {i.shape}" for i in inputs) or "none"
            problems.append(f"inputs are {found}")
        layout = _layout(outputs[0].shape) if len(outputs) == 1 else None
        if layout is None:
            found = ", ".join(f"{o.name!r} {o.shape}" for o in outputs) or "none"
            problems.append(f"outputs are {found}")
            if len(outputs) == 1 and len(outputs[0].shape) == 3 and outputs[0].shape[1] == 5:
                problems.append("this looks like a YOLOv8 face model without keypoints (use one "
                                "trained with 5 keypoints)")
        if problems:
            raise DetectorError(f"{path}: {'; '.join(problems)}; expected {_EXPECTED}")
        return layout

    @staticmethod
    def _blob(canvas: np.ndarray) -> np.ndarray:
        """The 1×3×H×W float32 RGB blob, pixel / 255, of a BGR image."""
        return np.ascontiguousarray(canvas[..., ::-1].transpose(2, 0, 1)[None],
                                    dtype=np.float32) / 255.0

    def _detect(self, image: np.ndarray, *, prior: Face | None) -> list[Face]:
        if self._session is None:
            raise DetectorError("detector 'yolo-face' is closed; create a new one")
        height, width = self.input_size_
        free = height is None or width is None
        if free:
            height, width = (-(-side // FREE_SIZE_DIVISOR) * FREE_SIZE_DIVISOR
                             for side in image.shape[:2])
        canvas, (left, top), (scale_x, scale_y) = letterbox(image, height=height, width=width,
                                                            enlarge=not free)
        (output,) = run_onnx_session(self._session, None,
                                     {self._session.get_inputs()[0].name: self._blob(canvas)},
                                     name=str(self.model))
        rows = np.asarray(output, dtype=np.float64)
        axis, values = (2, YOLOV5_WIDTH) if self.layout_ == "yolov5-face" else (1, YOLOV8_WIDTH)
        if rows.ndim != 3 or rows.shape[axis] != values:
            raise DetectorError(f"{self.model}: the output has shape {rows.shape}; expected "
                                f"{_EXPECTED}")
        if self.layout_ == "yolov5-face":
            rows = rows[0]
            scores = rows[:, 4] * rows[:, 15]
            points = rows[:, 5:15].reshape(-1, 5, 2)
        else:
            rows = rows[0].T
            scores = rows[:, 4]
            points = rows[:, 5:20].reshape(-1, 5, 3)[:, :, :2]
        keep = np.flatnonzero(scores >= self.threshold_)
        if not len(keep):
            return []
        centre, size, scores = rows[keep, 0:2], rows[keep, 2:4], scores[keep]
        xywh = np.hstack([centre - size / 2, size])
        kept = cv2.dnn.NMSBoxes(xywh.tolist(), scores.tolist(), self.threshold_,
                                self.nms_threshold, top_k=self.top_k)
        offset, factor = np.array([left, top], np.float64), np.array([scale_x, scale_y])
        faces = []
        for i in np.ravel(kept):
            x1, y1 = (xywh[i, :2] - offset) / factor
            x2, y2 = (xywh[i, :2] + xywh[i, 2:] - offset) / factor
            keypoints = (points[keep[i]] - offset) / factor
            faces.append(Face(box=(float(x1), float(y1), float(x2), float(y2)),
                              score=float(scores[i]),
                              keypoints=image_left_first(keypoints)))
        return faces

    def close(self) -> None:
        """Release the onnxruntime session. Safe to call twice."""
        self._session = None
