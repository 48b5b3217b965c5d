"""The edge agent's pipeline on ONE CPU core: frames per second and resident memory.

Each model runs in a fresh (spawned) process that imports only what the agent imports, pinned
to one core (``os.sched_setaffinity`` where available), with ``cv2.setNumThreads(1)`` and ONNX
Runtime on one thread. A frame goes through what ``Agent`` does with it: face detection
(mediapipe-short, the face followed between detections as the agent does:
``NEOPAIN_REDETECT_EVERY``), the crop, the model, smoothing, the record rule, and a snapshot
JPEG when a record is due with one. The frames are a real face (scikit-image's astronaut)
drifting across a 640×480 frame, made in memory. Models:

- ``nfcs``: the rule-based NFCS scorer (face mesh + action measurements);
- ``ncnn-int8``: N-CNN exported to ONNX and statically quantized to int8, as
  ``neopain export --quantize static`` does. Its weights are NOT trained (a fresh network):
  the figure is a speed figure only, and says so.

Goal: >= 30 frames/s per model on one core. Memory: the peak resident set of the process that
ran the pipeline and its resident set at the end (``resident_mb``).

    python benchmarks/agent_device.py [--frames 150]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import resource
import tempfile
import time
from pathlib import Path

GOAL_FPS = 30.0
WARMUP = 10


def astronaut_face():
    """scikit-image's astronaut, BGR, 440×440 (loaded in the parent: the measured process
    imports no scikit-image)."""
    import cv2
    from skimage import data as skdata

    return cv2.resize(cv2.cvtColor(skdata.astronaut(), cv2.COLOR_RGB2BGR), (440, 440))


def face_frame(face, index: int):
    """Frame ``index``: BGR 640×480, the face drifting 200 px right and back every 4 s at
    30 frames/s."""
    import numpy as np

    frame = np.full((480, 640, 3), 120, np.uint8)
    x = int(200 * abs((index % 120) / 60 - 1))
    frame[20:460, x:x + 440] = face
    return frame


def resident_mb() -> tuple[float, float]:
    """(peak, current) resident memory of this process in MB: /proc/self/status VmHWM and
    VmRSS where there is one (``ru_maxrss`` keeps the peak of the process before ``exec``, so
    a spawned child would report its parent's), else ``ru_maxrss`` and psutil."""
    status = Path("/proc/self/status")
    if status.is_file():
        fields = dict(line.split(":", 1) for line in status.read_text().splitlines()
                      if ":" in line)
        return int(fields["VmHWM"].split()[0]) / 1024, int(fields["VmRSS"].split()[0]) / 1024
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # bytes on macOS
    try:
        import psutil
        return peak, psutil.Process().memory_info().rss / 2**20
    except ImportError:
        return peak, float("nan")


def _pipeline(spec: str, frame_count: int, face, queue) -> None:
    """In a spawned process: the agent's per-frame work on one core; figures put on ``queue``."""
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    import cv2

    cv2.setNumThreads(1)
    from neopain.agent.messages import record_of, snapshot_jpeg
    from neopain.config import get_settings
    from neopain.monitor.pipeline import Assessor
    from neopain.monitor.recording import RecordPolicy
    from neopain.prediction import load_predictor

    policy = RecordPolicy(interval_s=1.0)
    faces = records = 0
    seconds = 0.0
    settings = get_settings()  # the agent's: tracking, the detector every N frames
    with load_predictor(spec, threads=1) as predictor, \
            Assessor(predictor, detector=settings.detector, window=settings.smoothing_window,
                     redetect_every=settings.redetect_every) as assessor:
        for i in range(frame_count + WARMUP):
            frame = face_frame(face, i)  # made outside the timed part, one at a time
            started = time.perf_counter()
            result = assessor.step(frame, time_s=i / 30)
            due, snapshot = policy.due(result)
            if due:
                record_of(result, session_id=1, time=time.time(),
                          snapshot=snapshot_jpeg(frame, side=320) if snapshot else None)
                policy.recorded(result, snapshot=snapshot)
            if i >= WARMUP:
                seconds += time.perf_counter() - started
                records += due
                faces += result.face is not None
        import sys
        loaded = [m for m in ("torch", "fastapi", "neopain.server") if m in sys.modules]
        peak, current = resident_mb()
    queue.put({"fps": round(frame_count / seconds, 1),
               "ms_per_frame": round(1000 * seconds / frame_count, 1),
               "faces_found": round(faces / frame_count, 3), "records": records,
               "peak_rss_mb": round(peak, 1), "rss_mb": round(current, 1),
               "cores": 1 if hasattr(os, "sched_setaffinity") else None,
               "heavy_modules_loaded": loaded})


def measure(spec: str, *, frames: int, face) -> dict:
    """The figures of ``_pipeline`` for the model ``spec`` from a fresh process."""
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=_pipeline, args=(spec, frames, face, queue))
    process.start()
    figures = queue.get(timeout=600)
    process.join()
    return figures


def int8_ncnn(folder: Path) -> Path:
    """N-CNN, untrained, exported to ONNX and quantized to static int8 on face crops."""
    import torch

    from neopain.export.onnx import export_model
    from neopain.export.quantize import quantize_static_model
    from neopain.models import create_model

    torch.manual_seed(0)
    model = create_model("ncnn").eval()
    fp32 = export_model(model, folder / "ncnn.onnx")
    face = astronaut_face()
    crops = [face_frame(face, i)[20:460, :] for i in range(0, 120, 3)]
    return quantize_static_model(fp32, folder / "ncnn.int8.onnx", crops=crops)


def device_figures(*, frames: int = 150) -> dict:
    """Frames/s and memory of the agent's pipeline on one core, per model (module docstring)."""
    with tempfile.TemporaryDirectory(prefix="neopain-agent-bench-") as tmp:
        int8 = int8_ncnn(Path(tmp))
        face = astronaut_face()
        figures = {"nfcs": measure("nfcs", frames=frames, face=face),
                   "ncnn-int8": measure(str(int8), frames=frames, face=face)}
    figures["ncnn-int8"]["note"] = ("untrained weights (a fresh N-CNN): a speed and memory "
                                    "figure only, not an accuracy one")
    for name in ("nfcs", "ncnn-int8"):
        figures[name]["meets_goal"] = figures[name]["fps"] >= GOAL_FPS
    figures["goal_fps"] = GOAL_FPS
    figures["frames"] = frames
    figures["cpu"] = _cpu_name()
    return figures


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("model name", "Model")):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform
    return platform.processor() or platform.machine()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frames", type=int, default=150)
    args = parser.parse_args()
    figures = device_figures(frames=args.frames)
    print(json.dumps(figures, indent=2))
    for name in ("nfcs", "ncnn-int8"):
        f = figures[name]
        print(f"{name:10s} {f['fps']:6.1f} frames/s on one core ({f['ms_per_frame']} ms/frame; "
              f"goal {GOAL_FPS:g}: {'met' if f['meets_goal'] else 'NOT met'}), peak RSS "
              f"{f['peak_rss_mb']} MB, faces found in {f['faces_found']:.0%} of frames")
    print("ncnn-int8:", figures["ncnn-int8"]["note"])


if __name__ == "__main__":
    main()
