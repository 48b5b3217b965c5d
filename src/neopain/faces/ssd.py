"""``opencv-ssd``: OpenCV's ResNet-10 SSD face detector from the user's files, run with
``cv2.dnn`` on the CPU.

Two published forms of the same network are read (OpenCV's ``samples/dnn/face_detector``; the
weights are listed in its ``weights.meta4`` and ``download_weights.py``):

- Caffe: ``model=res10_300x300_ssd_iter_140000.caffemodel`` (or its ``_fp16`` copy) with
  ``config=deploy.prototxt``;
- TensorFlow: ``model=opencv_face_detector_uint8.pb`` with ``config=opencv_face_detector.pbtxt``;

both read by ``cv2.dnn.readNet``.

The form is told by the model's suffix (``.caffemodel`` or ``.pb``). Without ``config=``, the
usual file name next to the model is used (``deploy.prototxt``, ``opencv_face_detector.pbtxt``),
else the model's own name with ``.prototxt`` or ``.pbtxt``.

Both take the whole image resized to 300×300 (aspect not kept), BGR minus the mean (104, 177,
123), not scaled (the mean OpenCV's own C++ and Python samples for this net subtract, so the
thesis's comparison most likely did too; SSD's training recipe subtracts (104, 117, 123): pass
``mean=(104, 117, 123)`` for that), and end in a ``DetectionOutput`` layer (which does the
decoding and non-maximum suppression): output 1×1×N×7, rows [image, class, score, x1, y1, x2,
y2] with the corners as shares (0–1) of the image's width and height; class 1 is a face, rows
of class 0 are empty. A net whose last layer is not a ``DetectionOutput`` is refused. There are
no keypoints. The default threshold, 0.5, is the one OpenCV's samples use.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from neopain.data.files import model_file_problem
from neopain.faces.base import DetectorError, Face, FaceDetector, register_detector

INPUT_SIZE = (300, 300)
MEAN = (104.0, 177.0, 123.0)
FACE_CLASS = 1
FORMATS = {
    ".caffemodel": ("caffe", "Caffe", ".prototxt", "deploy.prototxt"),
    ".pb": ("tensorflow", "TensorFlow", ".pbtxt", "opencv_face_detector.pbtxt"),
}
"""Model suffix → (``cv2.dnn.readNet``'s framework, its name, config suffix, usual config
name)."""
_EXPECTED = ("OpenCV's SSD face detector: model=res10_300x300_ssd_iter_140000.caffemodel with "
             "config=deploy.prototxt, or model=opencv_face_detector_uint8.pb with "
             "config=opencv_face_detector.pbtxt")


def _opencv_reason(error: cv2.error) -> str:
    """The useful part of an OpenCV error: what failed, without the source file and function."""
    text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    text = re.sub(r"^.*?error: \(-?\d+:[^)]*\)\s*", "", text)
    return re.sub(r" in function '.*'$", "", text)[:200]


def faces_from_detections(detections: np.ndarray, *, width: int, height: int) -> list[Face]:
    """The faces in a ``DetectionOutput`` result (1×1×N×7, corners in 0–1), in pixels of a
    ``width``×``height`` image, clipped to it; empty, non-face and NaN rows are left out."""
    rows = np.asarray(detections, dtype=np.float64).reshape(-1, 7)
    scale = np.array([width, height, width, height], np.float64)
    boxes = np.clip(rows[:, 3:7] * scale, 0, scale)
    # all rows at once: the net gives up to keep_top_k of them (200, most of them weak, in
    # OpenCV's deploy.prototxt) every frame; a NaN label, score or corner fails these tests
    keep = ((np.trunc(rows[:, 1]) == FACE_CLASS) & np.isfinite(rows[:, 2])
            & (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1]))
    return [Face(box=(float(x1), float(y1), float(x2), float(y2)), score=float(score))
            for (x1, y1, x2, y2), score in zip(boxes[keep].tolist(), rows[keep, 2].tolist())]


@register_detector("opencv-ssd")
class OpenCvSsd(FaceDetector):
    """OpenCV's ResNet-10 SSD face detector (files and format in the module docstring).

    Args:
        model: the weights, a ``.caffemodel`` or a ``.pb`` file.
        config: the network description (``.prototxt`` or ``.pbtxt``); None looks for the usual
            name next to the model.
        mean: the B, G, R values subtracted from each 0–255 pixel.
        threshold: lowest score reported (default 0.5).
        max_side: longer image side used for detection.

    Raises:
        DetectorError: no model given, an unknown suffix, a missing, empty or unreadable
            file, or a net that does not end in a ``DetectionOutput`` layer.
    """

    default_threshold = 0.5
    has_keypoints = False
    needs_model = True

    def __init__(
        self,
        *,
        model: str | os.PathLike[str] | None = None,
        config: str | os.PathLike[str] | None = None,
        mean: tuple[float, float, float] = MEAN,
        threshold: float | None = None,
        max_side: int = 1280,
    ) -> None:
        super().__init__(threshold=threshold, max_side=max_side)
        self.model = model
        self.config = config
        self.mean = mean
        if (not isinstance(mean, (tuple, list)) or len(mean) != 3
                or not all(isinstance(v, (int, float)) and 0 <= v <= 255 for v in mean)):
            raise DetectorError(f"mean={mean!r} is not valid; valid: three numbers from 0 to "
                                "255 (B, G, R), e.g. (104, 177, 123)")
        if model is None:
            raise DetectorError(f"detector 'opencv-ssd' needs model=PATH: {_EXPECTED}")
        path = Path(model)
        if path.suffix.lower() not in FORMATS:
            raise DetectorError(f"{path}: model= must be a .caffemodel or .pb file (the "
                                f"weights); expected {_EXPECTED}")
        framework = FORMATS[path.suffix.lower()][1]
        if (problem := model_file_problem(path, what=f"a {framework} weights file")) is not None:
            raise DetectorError(f"{path}: {problem}; expected {_EXPECTED}")
        self.config_ = self._config(path) if config is None else Path(config)
        self._net: Any = self._read(path, self.config_)

    @classmethod
    def files_read(cls, options: Mapping[str, object]) -> dict[str, Path]:
        """The model and config files, the config found next to the model included."""
        files = super().files_read(options)
        model = options.get("model")
        if "config" not in files and isinstance(model, (str, os.PathLike)) \
                and Path(model).suffix.lower() in FORMATS:
            try:
                files["config"] = cls._config(Path(model))
            except DetectorError:
                pass  # no network file: building the detector says so
        return files

    @staticmethod
    def _config(model: Path) -> Path:
        _key, _name, suffix, usual = FORMATS[model.suffix.lower()]
        for candidate in (model.with_name(usual), model.with_suffix(suffix)):
            if candidate.is_file():
                return candidate
        raise DetectorError(f"{model}: no config=PATH given and neither {usual} nor "
                            f"{model.with_suffix(suffix).name} is next to it; pass the {suffix} "
                            f"file as config= (--config on the command line); expected "
                            f"{_EXPECTED}")

    @staticmethod
    def _read(model: Path, config: Path) -> Any:
        key, framework, suffix, _usual = FORMATS[model.suffix.lower()]
        for path, what in ((model, f"a {framework} weights file"),
                           (config, f"a {framework} {suffix} network description")):
            if (problem := model_file_problem(path, what=what)) is not None:
                raise DetectorError(f"{path}: {problem}; expected {_EXPECTED}")
        try:
            net = cv2.dnn.readNet(str(model), str(config), key)
        except cv2.error as error:
            raise DetectorError(f"{model} with {config}: not a {framework} net OpenCV can read "
                                f"({_opencv_reason(error)}); expected {_EXPECTED}") from None
        outputs = list(net.getUnconnectedOutLayersNames()) if not net.empty() else []
        types = [net.getLayer(name).type for name in outputs]
        if types != ["DetectionOutput"]:
            found = ", ".join(f"{name!r} ({kind})" for name, kind in zip(outputs, types)) \
                or "none"
            raise DetectorError(f"{model} with {config}: the net's last layers are {found}, "
                                f"not one DetectionOutput; expected {_EXPECTED}")
        return net

    def _detect(self, image: np.ndarray, *, prior: Face | None) -> list[Face]:
        if self._net is None:
            raise DetectorError("detector 'opencv-ssd' is closed; create a new one")
        height, width = image.shape[:2]
        resized = cv2.resize(image, INPUT_SIZE, interpolation=cv2.INTER_AREA
                             if max(height, width) > max(INPUT_SIZE) else cv2.INTER_LINEAR)
        self._net.setInput(cv2.dnn.blobFromImage(resized, 1.0, INPUT_SIZE, tuple(self.mean),
                                                  swapRB=False))
        try:
            detections = self._net.forward()
        except cv2.error as error:
            raise DetectorError(f"{self.model}: the net failed on a 300×300 input: "
                                f"{_opencv_reason(error)}") from None
        return faces_from_detections(detections, width=width, height=height)

    def close(self) -> None:
        """Drop the net. Safe to call twice."""
        self._net = None
