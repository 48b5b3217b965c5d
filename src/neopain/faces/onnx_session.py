"""Opening and running a detector's ONNX file on onnxruntime's CPU, with errors a user can act on.

Every ONNX face detector (YuNet, CenterFace, RetinaFace, YOLO-face) loads its file here: the
path is checked first (missing, not a regular file, empty), a file onnxruntime cannot parse is
refused with the first line of its reason, and the graph's inputs and outputs
are checked against what the detector decodes before any image is seen.

``OnnxFileDetector`` is the base of the families that run the user's own ONNX file: their
options, the graph check hook, fitting an image on a fixed or free input, non-maximum
suppression and release.
"""

from __future__ import annotations

import os
from abc import abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import cv2
import numpy as np

from neopain.data.files import model_file_problem
from neopain.faces.base import DetectorError, FaceDetector


def _first_line(error: Exception) -> str:
    text = str(error).strip()
    return text.splitlines()[0][:200] if text else type(error).__name__


def open_onnx_session(model: str | os.PathLike[str] | bytes, *, expected: str,
                      label: str | None = None) -> Any:
    """An onnxruntime CPU session for ``model`` (a path, or the serialized graph as bytes).

    Args:
        model: the .onnx file, or its bytes (a graph rewritten in memory).
        expected: what a valid file is, for the error message (e.g. "a RetinaFace ONNX model
            with outputs loc, conf, landms").
        label: how to name the model in messages when ``model`` is bytes.

    Raises:
        DetectorError: the file is missing, not a regular file, empty, or not a model
            onnxruntime can load; the message names the file and ``expected``.
    """
    if isinstance(model, bytes):
        name = label or "the ONNX model"
    else:
        path = Path(model)
        name = str(path)
        if (problem := model_file_problem(path, what="an ONNX model file")) is not None:
            raise DetectorError(f"{path}: {problem}; valid: {expected}")
        model = str(path)
    import onnxruntime  # imported here: only the ONNX detectors need it

    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3  # errors only: the library does not write to the terminal
    try:
        return onnxruntime.InferenceSession(model, sess_options=options,
                                            providers=["CPUExecutionProvider"])
    except Exception as error:  # onnxruntime raises its own exception types per failure
        raise DetectorError(f"{name}: not a usable ONNX model ({_first_line(error)}); "
                            f"expected {expected}") from None


def run_onnx_session(session: Any, *, outputs: Sequence[str] | None,
                     feeds: dict[str, np.ndarray], name: str) -> list[np.ndarray]:
    """``session.run`` with a failure turned into a ``DetectorError`` naming the model and the
    input shape (a graph that only takes some input sizes fails here, not with a traceback)."""
    try:
        return session.run(None if outputs is None else list(outputs), feeds)
    except Exception as error:  # onnxruntime raises its own exception types per failure
        shapes = ", ".join(f"{key} {tuple(value.shape)}" for key, value in feeds.items())
        raise DetectorError(f"{name}: the model failed on input {shapes}: "
                            f"{_first_line(error)}") from None


class OnnxFileDetector(FaceDetector):
    """Base of the detectors that run the user's ONNX file (YuNet, RetinaFace, YOLO-face):
    the file opened and its graph checked at construction, non-maximum suppression, release.

    A family sets ``expected`` (what a valid file is, for messages) and
    ``default_nms_threshold``, implements ``_check_graph`` (the layout name, or a
    ``DetectorError``) and ``_detect`` (which gets the open session from ``_live_session``).

    Args:
        model: path of the .onnx file.
        threshold: lowest score reported (None: the family's default).
        max_side: longer image side used for detection.
        nms_threshold: IoU above which the lower-scoring of two boxes is dropped (None: the
            family's default).
        top_k: at most this many of the highest-scoring boxes go into non-maximum suppression.

    Raises:
        DetectorError: no model given, bad options, or a file that is missing, not ONNX, or
            not in a layout the family decodes.
    """

    needs_model = True
    expected: ClassVar[str] = ""
    default_nms_threshold: ClassVar[float] = 0.3

    def __init__(
        self,
        *,
        model: str | os.PathLike[str] | None = None,
        threshold: float | None = None,
        max_side: int = 1280,
        nms_threshold: float | None = None,
        top_k: int = 5000,
    ) -> None:
        super().__init__(threshold=threshold, max_side=max_side)
        self.model = model
        self.nms_threshold = nms_threshold
        self.top_k = top_k
        if model is None:
            raise DetectorError(f"detector {self.name!r} needs model=PATH: {self.expected}")
        if nms_threshold is not None and not 0.0 < nms_threshold <= 1.0:
            raise DetectorError(f"nms_threshold={nms_threshold} must lie in (0, 1]")
        if top_k < 1:
            raise DetectorError(f"top_k={top_k} must be at least 1")
        path = Path(model)
        self._session: Any = open_onnx_session(path, expected=self.expected)
        self.layout_ = self._check_graph(self._session.get_inputs(),
                                         self._session.get_outputs(), path=path)
        dims = self._session.get_inputs()[0].shape[2:]
        # fixed H, W when the model says so; None where the dimension is free (symbolic)
        self.input_size_ = tuple(d if isinstance(d, int) and d > 0 else None for d in dims)

    @staticmethod
    def _image_input_problems(inputs: list[Any]) -> list[str]:
        """What is wrong with a graph's inputs for one 1×3×H×W image (empty: nothing)."""
        if len(inputs) == 1 and len(inputs[0].shape) == 4:
            return []
        found = ", ".join(f"{i.name!r} {i.shape}" for i in inputs) or "none"
        return [f"inputs are {found}"]

    @property
    def nms_threshold_(self) -> float:
        """The non-maximum suppression IoU in use."""
        return self.default_nms_threshold if self.nms_threshold is None else self.nms_threshold

    @abstractmethod
    def _check_graph(self, inputs: list[Any], outputs: list[Any], *, path: Path) -> str:
        """The layout the graph's inputs and outputs are in.

        Raises:
            DetectorError: neither layout; the message names ``path`` and ``expected``.
        """

    def _fit_canvas(self, image: np.ndarray, *, divisor: int) -> tuple[np.ndarray, np.ndarray]:
        """The image on the model's input canvas (H×W×3, zeros right and below) and the (x, y)
        factors its pixels were scaled by: resized to fit a fixed input size, aspect kept, or
        as it is and padded to multiples of ``divisor`` for a free one."""
        height, width = image.shape[:2]
        fixed_h, fixed_w = self.input_size_
        if fixed_h is not None and fixed_w is not None:
            ratio = min(fixed_h / height, fixed_w / width)
            size = (max(1, round(width * ratio)), max(1, round(height * ratio)))
            image = cv2.resize(image, size, interpolation=cv2.INTER_AREA if ratio < 1
                               else cv2.INTER_LINEAR)
            pad_h, pad_w = fixed_h, fixed_w
        else:
            pad_h, pad_w = -(-height // divisor) * divisor, -(-width // divisor) * divisor
        canvas = np.zeros((pad_h, pad_w, 3), image.dtype)
        canvas[: image.shape[0], : image.shape[1]] = image
        return canvas, np.array([image.shape[1] / width, image.shape[0] / height])

    def _live_session(self) -> Any:
        if self._session is None:
            raise DetectorError(f"detector {self.name!r} is closed; create a new one")
        return self._session

    def _run(self, blob: np.ndarray, outputs: Sequence[str] | None = None) -> list[np.ndarray]:
        """The graph's outputs for a 1×3×H×W input blob."""
        session = self._live_session()
        return run_onnx_session(session, outputs=outputs,
                                feeds={session.get_inputs()[0].name: blob}, name=str(self.model))

    def _suppress(self, xywh: np.ndarray, scores: np.ndarray) -> np.ndarray:
        """Indices of the boxes (x, y, w, h) kept by non-maximum suppression, best first."""
        kept = cv2.dnn.NMSBoxes(np.asarray(xywh, np.float64).tolist(),
                                np.asarray(scores, np.float64).tolist(), self.threshold_,
                                self.nms_threshold_, top_k=self.top_k)
        return np.ravel(kept).astype(int)

    def close(self) -> None:
        """Release the onnxruntime session. Safe to call twice."""
        self._session = None
