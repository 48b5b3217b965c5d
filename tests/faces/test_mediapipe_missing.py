"""A machine without mediapipe (a bed device that runs an ONNX model with the Haar detector):
the face detector and the face mesh say what needs mediapipe and the ways out, never a
traceback."""

from __future__ import annotations

import numpy as np
import pytest

from neopain.errors import NeopainError
from neopain.faces import mediapipe as module
from neopain.faces.base import create_detector
from neopain.faces.landmarks import FaceMesh


@pytest.fixture()
def no_mediapipe(monkeypatch):
    def missing(name):
        raise ModuleNotFoundError("No module named 'mediapipe'")

    monkeypatch.setattr(module.importlib, "import_module", missing)


def test_the_detector_and_the_mesh_name_what_to_install_or_use(no_mediapipe):
    with pytest.raises(NeopainError, match=r"mediapipe-short detector needs mediapipe.*"
                                           r"0\.10\.18 on a 64-bit ARM.*opencv-haar"):
        create_detector("mediapipe-short")
    with pytest.raises(NeopainError, match=r"face mesh .* needs mediapipe.*REDETECT_EVERY=0"):
        FaceMesh(refine=True).landmarks(np.zeros((64, 64, 3), np.uint8))
