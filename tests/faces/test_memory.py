"""The memory promise: a bedside monitor runs detection and landmarks for hours, so 1,000
detections + landmark calls must grow resident memory by less than 50 MB, and detectors and
meshes created and closed in a loop must give their native memory back (an unclosed MediaPipe
graph keeps about 18 MB)."""

from __future__ import annotations

import gc
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest
import skimage.data

from neopain.faces.base import create_detector, detector_class, list_detectors
from neopain.faces.landmarks import FaceMesh

MB = 1 << 20
PROMISE_MB = 50


def resident_bytes() -> int:
    """This process's resident set size, from /proc/self/statm (pages)."""
    with open("/proc/self/statm") as file:
        return int(file.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def make_frames() -> list[np.ndarray]:
    """Astronaut frames 640×360, each shifted a little, so that no call sees a cached input.

    The photo's head and shoulders fill the frame's height: the whole photo scaled to 360 px
    leaves a face too small for the short-range detector (it is made for a bedside camera).
    """
    photo = cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2BGR)
    face = cv2.resize(photo[0:300, 75:375], (360, 360), interpolation=cv2.INTER_AREA)
    out = []
    for i in range(8):
        frame = np.zeros((360, 640, 3), np.uint8)
        frame[:, 120 + 6 * i:480 + 6 * i] = face
        out.append(cv2.GaussianBlur(frame, (3, 3), 0.3 + 0.1 * i))
    return out


def grown_mb(run, *, warmup: int, repeats: int) -> float:
    for i in range(warmup):
        run(i)
    gc.collect()
    before = resident_bytes()
    for i in range(repeats):
        run(i)
    gc.collect()
    return (resident_bytes() - before) / MB


def measure(kind: str, name: str) -> float:
    """MB grown by one loop: ``calls`` (1,000 detections + meshes), ``mesh`` (``name`` image or
    video: 50 meshes created and closed), ``nfcs`` (20 NFCS predictors created, used and
    closed) or ``detector`` (``DETECTOR_CYCLES`` of detector ``name`` created, finding the face in a
    240×135 frame, and closed)."""
    frames = make_frames()
    if kind == "calls":
        with create_detector("mediapipe-short") as detector, FaceMesh() as mesh:
            def detect_and_mesh(i: int) -> None:
                frame = frames[i % len(frames)]
                if not detector.detect(frame) or mesh.landmarks(frame) is None:
                    raise AssertionError("the loop must really detect and mesh the face")

            return grown_mb(detect_and_mesh, warmup=50, repeats=1000)
    if kind == "mesh":
        def mesh_once(i: int) -> None:
            with FaceMesh(video=name == "video") as mesh:
                if mesh.landmarks(frames[i % len(frames)]) is None:
                    raise AssertionError("the mesh must really find the face")

        return grown_mb(mesh_once, warmup=3, repeats=50)

    if kind == "nfcs":
        from neopain.scoring import NfcsPredictor

        def predict_once(i: int) -> None:
            shift = 6 * (i % len(frames))  # where make_frames put the face
            face = frames[i % len(frames)][:, 120 + shift:480 + shift]
            with NfcsPredictor() as predictor:
                if predictor.predict_crops([face])[0].details["assessable"] != 1:
                    raise AssertionError("the NFCS mesh must really read the face")

        return grown_mb(predict_once, warmup=3, repeats=20)

    # a small frame: the loop is about opening and closing (200 detections at 640×360 by mtcnn
    # or dlib-hog take 20 s)
    small = [cv2.resize(frame, (240, 135), interpolation=cv2.INTER_AREA) for frame in frames]

    def detect_once(i: int) -> None:
        with create_detector(name) as detector:
            if not detector.detect(small[i % len(small)]):
                raise AssertionError(f"{name} must really find the face")

    return grown_mb(detect_once, warmup=3, repeats=DETECTOR_CYCLES)


DETECTOR_CYCLES = 200
"""Detectors opened, used and closed per loop: a leak of 0.25 MB a cycle shows."""


PROBE = """
import importlib.util, sys
spec = importlib.util.spec_from_file_location("memory_probe", sys.argv[1])
probe = importlib.util.module_from_spec(spec)
spec.loader.exec_module(probe)
print(probe.measure(sys.argv[2], sys.argv[3]))
"""


def grown_in_fresh_process(kind: str, name: str = "") -> float:
    """``measure`` in a new interpreter: a test worker's resident memory also holds whatever
    earlier tests left (allocator arenas, thread pools), which the promise is not about."""
    done = subprocess.run([sys.executable, "-c", PROBE, __file__, kind, name],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    return float(done.stdout.split()[-1])


@pytest.mark.slow
def test_thousand_detections_and_landmark_calls_stay_under_50_mb():
    grown = grown_in_fresh_process("calls")
    assert grown < PROMISE_MB, f"resident memory grew {grown:.1f} MB over 1,000 calls"


@pytest.mark.parametrize("video", ["image", "video"])
def test_meshes_created_and_closed_in_a_loop_free_their_graphs(video):
    grown = grown_in_fresh_process("mesh", video)
    assert grown < PROMISE_MB, f"50 meshes created and closed grew memory by {grown:.1f} MB"


# the ones that run a model file of the user's are left out: tests/faces/test_file_detectors.py
# loops them on the tiny models it builds; manifest holds nothing native
LOOPED = [n for n in list_detectors()
          if not detector_class(n).needs_model and detector_class(n).reads_pixels]


@pytest.mark.parametrize("name", LOOPED)
def test_detectors_created_and_closed_in_a_loop_free_their_memory(name):
    grown = grown_in_fresh_process("detector", name)
    assert grown < PROMISE_MB, (f"{DETECTOR_CYCLES} {name} detectors created and closed grew "
                                f"{grown:.1f} MB")


def test_nfcs_predictors_created_and_closed_in_a_loop_free_their_mesh():
    """A monitor may build a predictor per stream; an unclosed MediaPipe graph keeps ~20 MB."""
    assert grown_in_fresh_process("nfcs") < 50
