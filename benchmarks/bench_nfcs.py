"""What NFCS scoring adds per face beyond the face mesh (issue 7's target: at most 1 ms).

One run times, on the same face crops and interleaved so that machine load hits both alike:
the face mesh alone (``FaceMesh(refine=True).landmarks``, what ``NfcsPredictor`` runs) and the
face mesh followed by ``NfcsScorer.score`` on its landmarks; and the scorer alone on stored
landmarks (many repeats, for a steady figure). The crops are the astronaut's face (scikit-
image) at the margin the predictor uses, alternately neutral and warped into a pain face, a
little shifted and re-lit each time so that no two are the same.

Usage: .venv/bin/python benchmarks/bench_nfcs.py [--faces 200] [--json]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import skimage.data

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import face_warps  # noqa: E402  (test helper: the landmark-driven pain face)

from neopain.faces.base import create_detector  # noqa: E402
from neopain.faces.landmarks import FaceMesh  # noqa: E402
from neopain.scoring import NfcsPredictor, NfcsScorer  # noqa: E402

TARGET_MS = 1.0


def face_crops(count: int) -> list[np.ndarray]:
    """``count`` crops: the astronaut neutral and in pain, shifted and re-lit."""
    photo = cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2BGR)
    with FaceMesh(refine=True) as mesh:
        pained = face_warps.pain_face(photo, mesh.landmarks(photo))
    with create_detector("mediapipe-short") as detector:
        box = detector.detect(photo)[0].box
    rng = np.random.default_rng(0)
    crops = []
    for i in range(count):
        shift = rng.uniform(-4, 4, 2)
        moved = (box[0] + shift[0], box[1] + shift[1], box[2] + shift[0], box[3] + shift[1])
        crop = NfcsPredictor.crop.cut(pained if i % 2 else photo, box=moved)
        crops.append(cv2.convertScaleAbs(crop, alpha=rng.uniform(0.85, 1.15), beta=0))
    return crops


def milliseconds(samples: list[float]) -> dict[str, float]:
    values = np.array(samples) * 1000
    return {"median": float(np.median(values)), "mean": float(values.mean()),
            "p95": float(np.percentile(values, 95))}


def run(count: int) -> dict:
    crops = face_crops(count)
    scorer = NfcsScorer()
    mesh_only, mesh_and_score, stored = [], [], []
    with FaceMesh(refine=True) as mesh:
        mesh.landmarks(crops[0])  # build the graph outside the timing
        for crop in crops:
            started = time.perf_counter()
            mesh.landmarks(crop)
            mesh_only.append(time.perf_counter() - started)
            started = time.perf_counter()
            points = mesh.landmarks(crop)
            scorer.score(points)
            mesh_and_score.append(time.perf_counter() - started)
            stored.append(points)
    scoring = []
    for _ in range(10):
        for points in stored:
            started = time.perf_counter()
            scorer.score(points)
            scoring.append(time.perf_counter() - started)
    figures = {"faces": count, "face mesh": milliseconds(mesh_only),
               "face mesh + scoring": milliseconds(mesh_and_score),
               "scoring alone": milliseconds(scoring),
               "unassessable": sum(p is None for p in stored), "target_ms": TARGET_MS,
               "python": platform.python_version(), "machine": platform.machine()}
    figures["added_ms"] = (figures["face mesh + scoring"]["median"]
                           - figures["face mesh"]["median"])
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--faces", type=int, default=200)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    figures = run(args.faces)
    if args.json:
        print(json.dumps(figures, indent=2))
        return
    print(f"{figures['faces']} face crops, one run, interleaved "
          f"({figures['unassessable']} without a mesh)")
    print(f"{'':22s} {'median':>8s} {'mean':>8s} {'p95':>8s}  (ms per face)")
    for name in ("face mesh", "face mesh + scoring", "scoring alone"):
        row = figures[name]
        print(f"{name:22s} {row['median']:8.3f} {row['mean']:8.3f} {row['p95']:8.3f}")
    verdict = "meets" if figures["scoring alone"]["median"] <= TARGET_MS else "MISSES"
    print(f"scoring adds {figures['scoring alone']['median']:.3f} ms per face (median of the "
          f"scorer alone; mesh+scoring − mesh: {figures['added_ms']:+.3f} ms, within the "
          f"mesh's own spread) — {verdict} the {TARGET_MS:g} ms target")


if __name__ == "__main__":
    main()
