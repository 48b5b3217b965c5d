"""Opening and running a detector's ONNX file on onnxruntime's CPU, with errors a user can act on.

Every ONNX face detector (YuNet, CenterFace, RetinaFace, YOLO-face) loads its file here: the
path is checked first (missing, a folder, empty), a file onnxruntime cannot parse is refused
with the first line of its reason, and the graph's inputs and outputs are checked against what
the detector decodes before any image is seen.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from neopain.data.files import regular_file_problem
from neopain.faces.base import DetectorError


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
        if (problem := regular_file_problem(path, what="an ONNX model file")) is not None:
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


def run_onnx_session(session: Any, outputs: Sequence[str] | None,
                     feeds: dict[str, np.ndarray], *, name: str) -> list[np.ndarray]:
    """``session.run`` with a failure turned into a ``DetectorError`` naming the model and the
    input shape (a graph that only takes some input sizes fails here, not with a traceback)."""
    try:
        return session.run(None if outputs is None else list(outputs), feeds)
    except Exception as error:  # onnxruntime raises its own exception types per failure
        shapes = ", ".join(f"{key} {tuple(value.shape)}" for key, value in feeds.items())
        raise DetectorError(f"{name}: the model failed on input {shapes}: "
                            f"{_first_line(error)}") from None
