"""Milliseconds per image on this CPU: torch fp32, ONNX Runtime fp32, static int8 and dynamic
int8, for every published model and the bedside model (mobilenet_nb), in one run.

Speed does not depend on what the weights learned, so the models are built by name with seeded
random weights; static int8 is calibrated on face crops of a small synthetic cohort (or of
--manifest). Every engine gets the same preprocessed images, batch size and thread count, and
the engines are timed in alternating rounds (best round counts) so that a busy machine slows
them alike. For trained models and accuracy figures see bench_int8.py.

Run: ``python benchmarks/bench_runtime.py [--models vgg16_nb,ncnn] [--threads 2] [--json F]``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from neopain.data.manifest import load_manifest
from neopain.data.synthetic import CohortSpec, generate_cohort
from neopain.faces.crop import CropRule
from neopain.export.inputs import manifest_crops
from neopain.export.onnx import export_model
from neopain.export.quantize import quantize_dynamic_model, quantize_static_model
from neopain.export.runtime import OnnxPredictor
from neopain.models import create_model, list_models
from neopain.runs import select_rows

ENGINES = ("torch fp32", "ORT fp32", "ORT int8 static", "ORT int8 dynamic")


def face_crops(manifest_path: Path | None, work: Path, *, count: int) -> list[np.ndarray]:
    if manifest_path is None:
        generate_cohort(work / "cohort", CohortSpec(subjects=4, seed=0,
                                                    images_per_subject=(8, 8)))
        manifest_path = work / "cohort" / "manifest.csv"
    manifest = load_manifest(manifest_path)
    rows = select_rows(manifest, limit=count)
    return [crop for _, crop in manifest_crops(manifest, rows, crop=CropRule.exact_box())]


def timed_round(run, inputs: np.ndarray, *, batch_size: int) -> float:
    """Milliseconds per image for one pass over ``inputs`` in batches."""
    started = time.perf_counter()
    for start in range(0, len(inputs), batch_size):
        run(inputs[start:start + batch_size])
    return (time.perf_counter() - started) * 1000.0 / len(inputs)


def bench_model(name: str, crops: list[np.ndarray], work: Path, *, batch_size: int,
                threads: int | None, repeats: int) -> dict[str, object]:
    torch.manual_seed(0)
    model = create_model(name).eval()
    fp32 = export_model(model, work / f"{name}.onnx")
    static = quantize_static_model(fp32, work / f"{name}.static.onnx", crops=crops)
    dynamic = quantize_dynamic_model(fp32, work / f"{name}.dynamic.onnx")
    predictors = [OnnxPredictor(path, threads=threads, batch_size=batch_size)
                  for path in (fp32, static, dynamic)]
    try:
        inputs = np.stack([predictors[0].preprocess(crop) for crop in crops])

        def torch_run(batch: np.ndarray) -> None:
            with torch.no_grad():
                model(torch.from_numpy(batch))

        runs = [torch_run] + [p.predict_inputs for p in predictors]
        for run in runs:  # warm-up: allocations, thread pools, kernel choice
            run(inputs[:batch_size])
        best = [math.inf] * len(runs)
        for _ in range(repeats):
            for index, run in enumerate(runs):
                best[index] = min(best[index], timed_round(run, inputs, batch_size=batch_size))
    finally:
        for predictor in predictors:
            predictor.close()
    sizes = [path.stat().st_size for path in (fp32, static, dynamic)]
    return {"model": name, "input": list(model.cfg.input_size),
            "params": sum(p.numel() for p in model.parameters()),
            "ms": dict(zip(ENGINES, best)),
            "bytes": dict(zip(ENGINES[1:], sizes))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default=",".join(list_models()),
                        help="comma-separated registry names (default: all)")
    parser.add_argument("--manifest", type=Path, default=None,
                        help="face crops from this manifest (default: a synthetic cohort)")
    parser.add_argument("--images", type=int, default=16, help="images per timed round")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--threads", type=int, default=None,
                        help="threads for torch and ONNX Runtime (default: one per core)")
    parser.add_argument("--repeats", type=int, default=3, help="timed rounds (best counts)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    names = args.models.split(",")
    unknown = sorted(set(names) - set(list_models()))
    if unknown:
        parser.error(f"unknown model(s) {', '.join(unknown)}; valid: {', '.join(list_models())}")
    with tempfile.TemporaryDirectory(prefix="neopain-bench-") as tmp:
        work = Path(tmp)
        crops = face_crops(args.manifest, work, count=args.images)
        results = []
        for name in names:
            results.append(bench_model(name, crops, work, batch_size=args.batch_size,
                                       threads=args.threads, repeats=args.repeats))
    print(f"CPU: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
          f"threads={args.threads or 'default'}, batch {args.batch_size}, {len(crops)} images, "
          f"best of {args.repeats} rounds; ms per image (file size)")
    print(f"{'model':<13}{'input':>9}" + "".join(f"{e:>22}" for e in ENGINES))
    for r in results:
        cells = [f"{r['ms']['torch fp32']:>22.1f}"]
        for engine in ENGINES[1:]:
            cells.append(f"{r['ms'][engine]:>11.1f} ({r['bytes'][engine] / 1e6:6.1f} MB)")
        print(f"{r['model']:<13}{'×'.join(map(str, r['input'])):>9}" + "".join(cells))
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
