"""How fast the face detectors and the face mesh run per 640×360 frame (issue 4's targets:
``mediapipe-short`` median <= 5 ms, face mesh <= 8 ms per frame, on this machine).

The frames are scikit-image's astronaut (head and shoulders) moving smoothly through a 640×360
frame, growing and shrinking, with changing brightness, as a face drifts in a bedside video.
Every detector that can run here runs (``neopain.faces.benchmark.runnable_detectors``: not
``manifest``, which reads boxes; a detector that runs the user's model file only when its
variable in ``neopain.faces.benchmark.MODEL_FILE_VARIABLES`` names one, e.g.
``NEOPAIN_YUNET_MODEL=yunet.onnx``). The face mesh runs in video (tracking) mode over the
frames in order, and in image mode (a face search every frame).

``--write-clip PATH`` writes the same frames as a 10 frames/s video instead, for
``neopain faces benchmark PATH`` (the table in docs/faces.md).

Usage: .venv/bin/python benchmarks/bench_faces.py [--frames 300] [--repeats 1] [--json]
       .venv/bin/python benchmarks/bench_faces.py --write-clip astronaut.mp4 [--frames 300]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
from contextlib import ExitStack

import cv2
import numpy as np
import skimage.data

from neopain.faces.base import FaceDetector
from neopain.faces.benchmark import (
    MODEL_FILE_VARIABLES,
    BenchmarkImage,
    DetectorFigures,
    benchmark_detectors,
    runnable_detectors,
)

TARGETS_MS = {"mediapipe-short": 5.0, "face mesh": 8.0, "face mesh (video)": 8.0}


def moving_face_frames(count: int) -> list[BenchmarkImage]:
    """``count`` 640×360 frames of the astronaut drifting, scaling and changing brightness."""
    photo = cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2BGR)[0:300, 75:375]
    frames = []
    for i in range(count):
        phase = 2 * np.pi * i / max(count, 1)
        side = int(round(330 + 30 * np.sin(2 * phase)))  # 300 to 360 px
        face = cv2.resize(photo, (side, side), interpolation=cv2.INTER_AREA)
        x = int(round((640 - side) / 2 + 120 * np.sin(phase)))
        y = (360 - side) // 2
        frame = np.full((360, 640, 3), 40, np.uint8)
        frame[y:y + side, x:x + side] = face
        frame = cv2.convertScaleAbs(frame, alpha=1.0 + 0.15 * np.sin(3 * phase), beta=0)
        frames.append(BenchmarkImage(f"frame {i}", frame))
    return frames


def detectors_to_run(stack: ExitStack) -> tuple[list[FaceDetector], dict[str, str]]:
    """The detectors that run here, built and entered into ``stack``, and why the others do
    not."""
    options = {name: {"model": os.environ[variable]}
               for name, variable in MODEL_FILE_VARIABLES.items() if os.environ.get(variable)}
    return runnable_detectors(stack, detector_options=options)


def write_clip(frames: list[BenchmarkImage], path: str, *, fps: float = 10.0) -> None:
    """The frames as an MP4 (or, by its suffix, any container OpenCV writes)."""
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"mp4v"), fps, (640, 360))
    if not writer.isOpened():
        raise SystemExit(f"{path}: OpenCV cannot write this video (try a .mp4 or .avi path)")
    try:
        for frame in frames:
            writer.write(frame.image)
    finally:
        writer.release()
    print(f"wrote {path}: {len(frames)} frames of 640×360 at {fps:g} frames/s")


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as file:
            names = [line.split(":", 1)[1].strip() for line in file
                     if line.startswith("model name")]
    except OSError:
        names = []
    return names[0] if names else platform.processor() or platform.machine()


def verdict(row: DetectorFigures) -> str:
    target = TARGETS_MS.get(row.detector)
    if target is None:
        return ""
    return f"{'PASS' if row.median_ms <= target else 'FAIL'} (target <= {target:g} ms)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--json", action="store_true", help="print the figures as JSON only")
    parser.add_argument("--write-clip", metavar="PATH",
                        help="write the frames as a video instead of timing")
    args = parser.parse_args()
    frames = moving_face_frames(args.frames)
    if args.write_clip:
        write_clip(frames, args.write_clip)
        return
    with ExitStack() as stack:
        detectors, left_out = detectors_to_run(stack)
        rows = benchmark_detectors(frames, detectors=detectors, include_mesh=True,
                                   mesh_video=True, repeats=args.repeats, warmup=5)
    rows += benchmark_detectors(frames, detectors=[], include_mesh=True, mesh_video=False,
                                repeats=args.repeats, warmup=5)
    if args.json:
        print(json.dumps([row.to_dict() for row in rows], indent=2))
        return
    print(f"{args.frames} frames of 640×360, {args.repeats} call(s) each; "
          f"{cpu_name()}, {os.cpu_count()} CPU(s), "
          f"OpenCV threads {cv2.getNumThreads()}")
    for name, reason in left_out.items():
        print(f"{name} not run: {reason}")
    print(f"{'detector':<20} {'no face':>8} {'median ms':>10} {'p95 ms':>8} "
          f"{'images/s':>9}  target")
    for row in rows:
        print(f"{row.detector:<20} {row.no_face_share:>8.1%} {row.median_ms:>10.2f} "
              f"{row.p95_ms:>8.2f} {row.images_per_s:>9.1f}  {verdict(row)}")


if __name__ == "__main__":
    main()
