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

from pathlib import Path
from typing import Any

import numpy as np

from neopain.faces.base import DetectorError, Face, image_left_first, register_detector
from neopain.faces.onnx_session import OnnxFileDetector

STRIDES = (8, 16, 32)
INPUT_NAME = "input"
OUTPUT_NAMES = tuple(f"{kind}_{stride}" for kind in ("cls", "obj", "bbox", "kps")
                     for stride in STRIDES)
_DIVISOR = 32
_EXPECTED = (f"a YuNet ONNX model (e.g. OpenCV Zoo's face_detection_yunet_2023mar.onnx) with "
             f"input {INPUT_NAME!r} (1×3×H×W) and outputs {', '.join(OUTPUT_NAMES)}")


@register_detector("onnx")
class YuNetOnnx(OnnxFileDetector):
    """A YuNet ONNX detector file (format in the module docstring), on onnxruntime's CPU.

    Options as ``OnnxFileDetector``'s: ``model`` (the .onnx file), ``threshold`` (default
    0.6), ``max_side``, ``nms_threshold`` (default 0.3) and ``top_k``.

    Raises:
        DetectorError: no model given, a file that is missing, not ONNX, or lacks YuNet's
            input and outputs.
    """

    default_threshold = 0.6
    default_nms_threshold = 0.3
    has_keypoints = True
    expected = _EXPECTED

    def _check_graph(self, inputs: list[Any], outputs: list[Any], *, path: Path) -> str:
        names = {output.name for output in outputs}
        problems = []
        if [i.name for i in inputs] != [INPUT_NAME] or len(inputs[0].shape) != 4:
            found = ", ".join(f"{i.name!r} {i.shape}" for i in inputs) or "none"
            problems.append(f"inputs are {found}")
        missing = [name for name in OUTPUT_NAMES if name not in names]
        if missing:
            problems.append(f"outputs {', '.join(missing)} are missing")
        if problems:
            raise DetectorError(f"{path}: {'; '.join(problems)}; expected {_EXPECTED}")
        return "yunet"

    def _detect(self, image: np.ndarray, *, prior: Face | None) -> list[Face]:
        canvas, factors = self._fit_canvas(image, divisor=_DIVISOR)
        blob = np.ascontiguousarray(canvas.transpose(2, 0, 1)[None], dtype=np.float32)
        outputs = dict(zip(OUTPUT_NAMES, self._run(blob, OUTPUT_NAMES)))
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
        faces = []
        for i in self._suppress(box_array, score_array):
            x, y = box_array[i, :2] / factors
            w, h = box_array[i, 2:] / factors
            faces.append(Face(box=(float(x), float(y), float(x + w), float(y + h)),
                              score=float(score_array[i]),
                              keypoints=image_left_first(point_array[i] / factors)))
        return faces
