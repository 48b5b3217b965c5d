"""Track, don't re-detect (issue 21, point 5): the pipeline's frames/s following the face with
the face mesh against detecting it in every frame, on a moving-face clip, with ``nfcs``.

The clip (``MovingFaceClip``) is made in memory from real faces, scikit-image's astronaut and
matplotlib's Grace Hopper, each moved across a 640×480 frame along a smooth path and scaled up
and down, in stretches warped into a pain face (``tests/face_warps.py``) so that the state
changes; between the two the face slides out of the frame and the frame stays empty a while.
Each frame's true face box is the detector's box on the still photograph moved with it.

``tracking_figures`` renders each frame once (outside the timing: decode excluded) and gives it
to two ``Assessor``s, one tracking (``redetect_every``) and one detecting in every frame,
alternating which goes first, so machine load hits both alike; OpenCV runs 2 threads. It
returns frames/s of each, their ratio, the share of frames whose held state differs, and the
mean IoU of each one's box with the true box (a frame with a true face and no box counts 0).

Usage: .venv/bin/python benchmarks/agent_tracking.py [--frames 600] [--seconds S] [--json]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import face_warps  # noqa: E402  (test helper: the landmark-driven pain face)

from neopain.faces.base import create_detector, iou  # noqa: E402
from neopain.faces.landmarks import FaceMesh  # noqa: E402
from neopain.monitor.pipeline import Assessor  # noqa: E402
from neopain.scoring import NfcsPredictor  # noqa: E402

GOAL_FPS = 150.0
REDETECT_EVERY = 10
FPS = 30.0
FRAME_SHAPE = (480, 640)
PAIN_STRETCH = 45
"""Frames per stretch: neutral and pain faces alternate every this many frames."""


def photographs() -> list[np.ndarray]:
    """The two real faces (BGR): the astronaut and Grace Hopper."""
    import matplotlib.cbook
    import skimage.data

    with matplotlib.cbook.get_sample_data("grace_hopper.jpg") as file:
        hopper = cv2.imdecode(np.frombuffer(file.read(), np.uint8), cv2.IMREAD_COLOR)
    return [cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2BGR), hopper]


class MovingFaceClip:
    """``frames`` frames of real faces moving in a 640×480 frame (module docstring).

    ``frame(i)`` returns ``(image, true_box)``, the box None while no face is in the frame.
    The clip is split in two halves, one per face; each half ends with ``gap`` frames in which
    the face slides out of the frame to the right and stays out.

    Args:
        frames: the clip's length.
        gap: frames at the end of each half without the face (the first half of them sliding
            out).
        face_side: the face box's mean side in the frame, pixels.
    """

    def __init__(self, frames: int = 600, *, gap: int = 20, face_side: float = 120.0) -> None:
        self.frames = frames
        self.gap = gap
        self.face_side = face_side
        self.photos_, self.pained_, self.boxes_ = [], [], []
        with create_detector("mediapipe-short") as detector, FaceMesh(refine=True) as mesh:
            for photo in photographs():
                self.photos_.append(photo)
                self.pained_.append(face_warps.pain_face(photo, mesh.landmarks(photo)))
                self.boxes_.append(np.array(detector.detect(photo)[0].box))

    def __len__(self) -> int:
        return self.frames

    def pain(self, i: int) -> bool:
        """Whether frame ``i`` shows the pain face."""
        return (i // PAIN_STRETCH) % 2 == 1

    def frame(self, i: int) -> tuple[np.ndarray, tuple[float, float, float, float] | None]:
        """Frame ``i`` (BGR uint8 480×640×3) and its true face box (None: no face)."""
        half = max(1, self.frames // 2)
        which, j = min(i // half, 1), i - min(i // half, 1) * half
        photo = (self.pained_ if self.pain(i) else self.photos_)[which]
        box = self.boxes_[which]
        height, width = FRAME_SHAPE
        scale = self.face_side / (box[2] - box[0]) * (1 + 0.25 * math.sin(2 * math.pi * j / 97))
        centre = np.array([width / 2 + 150 * math.sin(2 * math.pi * j / 131),
                           height / 2 + 70 * math.sin(2 * math.pi * j / 71)])
        out_from = half - self.gap
        if j >= out_from:  # slides out to the right, then stays out
            centre[0] += min(1.0, (j - out_from) / max(1, self.gap // 2)) * width
        face_centre = (box[:2] + box[2:]) / 2
        shift = centre - scale * face_centre
        matrix = np.array([[scale, 0, shift[0]], [0, scale, shift[1]]])
        image = cv2.warpAffine(photo, matrix, (width, height), flags=cv2.INTER_AREA,
                               borderMode=cv2.BORDER_CONSTANT, borderValue=(90, 90, 90))
        moved = np.concatenate([box[:2] * scale + shift, box[2:] * scale + shift])
        if moved[2] <= 0 or moved[0] >= width or (moved[2] - min(moved[2], width)) > 0.3 * (
                moved[2] - moved[0]):
            return image, None  # gone, or more than 30 % of it out of the frame
        return image, tuple(float(v) for v in moved)


def _mean_iou(boxes: list, truth: list) -> float:
    scores = [0.0 if box is None else iou(box, true) for box, true in zip(boxes, truth)
              if true is not None]
    return float(np.mean(scores)) if scores else math.nan


def tracking_figures(*, frames: int = 600, seconds: float | None = None) -> dict:
    """Frames/s of the pipeline tracking (``redetect_every`` ``REDETECT_EVERY``) and detecting
    in every frame, on the moving-face clip, with ``nfcs``, interleaved (module docstring).

    Args:
        frames: the clip's length.
        seconds: stop once this much time has passed (the figures cover the frames done).

    Returns:
        ``tracking_fps``, ``per_frame_fps``, ``ratio`` (tracking / per frame), ``differing``
        (share of frames whose held state differs), ``iou_tracking``, ``iou_per_frame``, the
        frames done, the detector's runs when tracking, and the machine.
    """
    cv2.setNumThreads(2)
    clip = MovingFaceClip(frames)
    elapsed = {"tracking": 0.0, "per_frame": 0.0}
    states = {"tracking": [], "per_frame": []}
    boxes = {"tracking": [], "per_frame": []}
    truth = []
    started = time.perf_counter()
    with NfcsPredictor() as tracked_model, NfcsPredictor() as detected_model, \
            Assessor(tracked_model, redetect_every=REDETECT_EVERY) as tracking, \
            Assessor(detected_model) as per_frame:
        assessors = {"tracking": tracking, "per_frame": per_frame}
        warm, _ = clip.frame(0)
        for assessor in assessors.values():  # graphs built outside the timing
            assessor.step(warm, time_s=0.0)
            assessor.reset()
        for i in range(len(clip)):
            if seconds is not None and time.perf_counter() - started > seconds and i:
                break
            image, true_box = clip.frame(i)
            truth.append(true_box)
            order = ("tracking", "per_frame") if i % 2 else ("per_frame", "tracking")
            for name in order:
                before = time.perf_counter()
                result = assessors[name].step(image, time_s=i / FPS)
                elapsed[name] += time.perf_counter() - before
                states[name].append(result.held_state)
                boxes[name].append(None if result.face is None else result.face.box)
        detections = tracking.tracker_.detections_ if tracking.tracker_ is not None else 0
    done = len(truth)
    figures = {
        "frames": done,
        "tracking_fps": done / elapsed["tracking"],
        "per_frame_fps": done / elapsed["per_frame"],
        "differing": float(np.mean([a != b for a, b in zip(states["tracking"],
                                                         states["per_frame"])])),
        "iou_tracking": _mean_iou(boxes["tracking"], truth),
        "iou_per_frame": _mean_iou(boxes["per_frame"], truth),
        "detector_runs_tracking": detections,
        "redetect_every": REDETECT_EVERY,
        "frames_with_face": sum(box is not None for box in truth),
        "pain_frames": sum(clip.pain(i) for i in range(done)),
        "goal_fps": GOAL_FPS,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "machine": platform.machine(),
    }
    figures["ratio"] = figures["tracking_fps"] / figures["per_frame_fps"]
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=600)
    parser.add_argument("--seconds", type=float, default=None)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    figures = tracking_figures(frames=args.frames, seconds=args.seconds)
    if args.json:
        print(json.dumps(figures, indent=2))
        return
    print(f"{figures['frames']} frames of a moving face ({figures['frames_with_face']} with a "
          f"face, {figures['pain_frames']} in pain), nfcs, {figures['cores']} cores, decode "
          "excluded, interleaved")
    print(f"tracking (redetect every {figures['redetect_every']}): "
          f"{figures['tracking_fps']:7.1f} frames/s, mean IoU {figures['iou_tracking']:.3f}, "
          f"detector on {figures['detector_runs_tracking']} frames")
    print(f"per-frame detection:            {figures['per_frame_fps']:7.1f} frames/s, "
          f"mean IoU {figures['iou_per_frame']:.3f}")
    verdict = "meets" if figures["tracking_fps"] >= GOAL_FPS else "MISSES"
    print(f"ratio {figures['ratio']:.2f}×; held state differs on {figures['differing']:.1%} of "
          f"frames — {verdict} the {GOAL_FPS:g} frames/s goal")


if __name__ == "__main__":
    main()
