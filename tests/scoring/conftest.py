"""A real face for the NFCS tests: the astronaut photograph's face region enlarged ×2 (a face
about 200 px wide, as a bedside camera sees an infant), its face mesh, and the landmark-driven
warps of ``face_warps`` with the mesh re-run on each warped image."""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np
import pytest
import skimage.data

import face_warps
from neopain.faces.landmarks import FaceMesh


@pytest.fixture(scope="session")
def face() -> np.ndarray:
    photo = cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2BGR)
    return cv2.resize(photo[20:260, 110:350], None, fx=2, fy=2, interpolation=cv2.INTER_CUBIC)


@pytest.fixture(scope="session")
def mesh():
    with FaceMesh(refine=True) as graph:
        yield graph


@pytest.fixture(scope="session")
def face_points(face: np.ndarray, mesh: FaceMesh) -> np.ndarray:
    points = mesh.landmarks(face)
    assert points is not None, "the face mesh must find the astronaut's face"
    return points


@pytest.fixture(scope="session")
def warped(face: np.ndarray, face_points: np.ndarray, mesh: FaceMesh
           ) -> Callable[[str], tuple[np.ndarray, np.ndarray]]:
    """``warped(name)``: the face warped by ``face_warps.<name>`` and the mesh found on it."""
    cache: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    def get(name: str) -> tuple[np.ndarray, np.ndarray]:
        if name not in cache:
            image = getattr(face_warps, name)(face, face_points)
            points = mesh.landmarks(image)
            assert points is not None, f"the face mesh lost the face after {name}"
            cache[name] = (image, points)
        return cache[name]

    return get
