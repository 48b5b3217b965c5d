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
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from neopain.faces.base import DetectorError, Face, image_left_first, register_detector
from neopain.faces.onnx_session import OnnxFileDetector

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
class YoloFaceOnnx(OnnxFileDetector):
    """A YOLOv5-face or YOLOv8-face ONNX file (layouts in the module docstring), on
    onnxruntime's CPU.

    Options as ``OnnxFileDetector``'s: ``model`` (the .onnx file), ``threshold`` (default
    0.6), ``max_side``, ``nms_threshold`` (default 0.5) and ``top_k``.

    Raises:
        DetectorError: no model given, a file that is missing, not ONNX, or in neither layout.
    """

    default_threshold = 0.6
    default_nms_threshold = 0.5
    has_keypoints = True
    expected = _EXPECTED

    def _check_graph(self, inputs: list[Any], outputs: list[Any], *, path: Path) -> str:
        problems = self._image_input_problems(inputs)
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
        height, width = self.input_size_
        free = height is None or width is None
        if free:
            height, width = (-(-side // FREE_SIZE_DIVISOR) * FREE_SIZE_DIVISOR
                             for side in image.shape[:2])
        canvas, (left, top), (scale_x, scale_y) = letterbox(image, height=height, width=width,
                                                            enlarge=not free)
        (output,) = self._run(self._blob(canvas))
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
        offset, factor = np.array([left, top], np.float64), np.array([scale_x, scale_y])
        faces = []
        for i in self._suppress(xywh, scores):
            x1, y1 = (xywh[i, :2] - offset) / factor
            x2, y2 = (xywh[i, :2] + xywh[i, 2:] - offset) / factor
            keypoints = (points[keep[i]] - offset) / factor
            faces.append(Face(box=(float(x1), float(y1), float(x2), float(y2)),
                              score=float(scores[i]),
                              keypoints=image_left_first(keypoints)))
        return faces
