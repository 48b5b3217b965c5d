"""The local and the Ray backend side by side on this machine (issue 23): ``faces detect`` of a
synthetic cohort of at least 2,000 images, and 2-fold training of N-CNN, each timed on both;
then the per-task figures behind docs/scale.md's estimate for a cluster of N nodes.

The cohort is drawn small (``--subjects`` subjects of 13 images) and tiled, as hard links under
new subject names, to ``--images`` rows: the detector's work per image is the same. Ray is
started once (its start-up is timed apart) and both Ray runs use it, as a command joining a
running cluster (``--address auto``) would; a command that starts its own Ray pays the start-up
once more. Both backends write the same files (tests/cli/test_backend_ray.py).

Usage: .venv/bin/python benchmarks/bench_backends.py [--images 2000] [--detector manifest]
           [--epochs 3] [--nodes 1 2 4 8] [--keep DIR]
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import tempfile
import time
from pathlib import Path

import pandas as pd

from neopain.data.folds import make_folds, save_folds
from neopain.data.manifest import load_manifest, save_manifest, sha256_file
from neopain.data.parallel import Backend, ordered_map
from neopain.data.synthetic import CohortSpec, generate_cohort
from neopain.faces.detect import detect_faces
from neopain.training import TrainConfig, run_cv

IMAGES_PER_SUBJECT = 13


def tiled_cohort(root: Path, *, subjects: int, images: int, seed: int) -> Path:
    """A synthetic cohort of ``subjects`` subjects, its rows repeated (hard links, new subject
    names) until the manifest has at least ``images`` rows; returns the tiled manifest."""
    base = root / "base"
    generate_cohort(base, CohortSpec(subjects=subjects, seed=seed,
                                     images_per_subject=(IMAGES_PER_SUBJECT,) * 2), workers=2)
    table = load_manifest(base / "manifest.csv").table
    copies = math.ceil(images / len(table))
    tiles = []
    for copy in range(copies):
        tile = table.copy()
        tile["subject"] = [f"{subject}R{copy}" for subject in tile["subject"]]
        tile["image"] = [f"images/R{copy}/{image}" for image in table["image"]]
        for source, target in zip(table["image"], tile["image"]):
            (root / target).parent.mkdir(parents=True, exist_ok=True)
            os.link(base / source, root / target)
        for column in ("landmarks", "mask"):  # per-image files the detector does not read
            if column in tile:
                tile[column] = ""
        tiles.append(tile)
    return save_manifest(pd.concat(tiles, ignore_index=True), root / "manifest.csv")


def timed_detect(manifest: Path, out: Path, *, detector: str, workers: int,
                 backend: Backend) -> float:
    start = time.perf_counter()
    detect_faces(load_manifest(manifest), detector=detector, out=out, workers=workers,
                 backend=backend)
    return time.perf_counter() - start


def timed_train(manifest: Path, folds: Path, out: Path, *, epochs: int,
                backend: Backend) -> tuple[float, list[float]]:
    start = time.perf_counter()
    result = run_cv(TrainConfig(model="ncnn", manifest=manifest, folds=folds, out=out,
                                epochs=epochs, batch_size=16, device="cpu", workers=0),
                    backend=backend)
    return time.perf_counter() - start, [fold.seconds for fold in result.folds]


def same_files(a: Path, b: Path, *, skip: tuple[str, ...]) -> bool:
    """Whether two output folders hold the same bytes, but for the files named in ``skip``."""
    def files(root: Path) -> dict[str, bytes]:
        return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
                if p.is_file() and p.name not in skip}
    return files(a) == files(b)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--subjects", type=int, default=8)
    parser.add_argument("--detector", default="manifest")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--nodes", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--keep", type=Path, help="write into this folder and keep it")
    args = parser.parse_args()

    import ray
    import torch

    cpus = len(os.sched_getaffinity(0))
    root = args.keep or Path(tempfile.mkdtemp(prefix="bench_backends_"))
    try:
        manifest = tiled_cohort(root / "cohort", subjects=args.subjects, images=args.images,
                                seed=args.seed)
        base = root / "cohort" / "base" / "manifest.csv"
        folds = root / "folds.json"
        save_folds(make_folds(load_manifest(base), protocol="lsso", k=2,
                              manifest_sha256=sha256_file(base)), folds)
        rows = len(load_manifest(manifest).table)

        for image in (root / "cohort" / "images").rglob("*.jpg"):  # both read from the cache
            image.read_bytes()
        start = time.perf_counter()
        ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False)
        startup = time.perf_counter() - start
        try:
            on_ray = Backend("ray")
            start = time.perf_counter()
            list(ordered_map(abs, range(cpus), workers=1, backend=on_ray))
            actors_up = time.perf_counter() - start
            start = time.perf_counter()
            noop = 2000
            list(ordered_map(abs, range(noop), workers=1, backend=on_ray))
            per_item = (time.perf_counter() - start - actors_up) / noop

            one_cpu = timed_detect(manifest, root / "faces_inline", detector=args.detector,
                                   workers=1, backend=Backend())
            detect = {"local": timed_detect(manifest, root / "faces_local",
                                            detector=args.detector, workers=cpus,
                                            backend=Backend()),
                      "ray": timed_detect(manifest, root / "faces_ray", detector=args.detector,
                                          workers=cpus, backend=on_ray)}
            train_local, folds_local = timed_train(base, folds, root / "run_local",
                                                   epochs=args.epochs, backend=Backend())
            train_ray, folds_ray = timed_train(base, folds, root / "run_ray",
                                               epochs=args.epochs, backend=on_ray)
        finally:
            ray.shutdown()

        threads = torch.get_num_threads()
        same_faces = same_files(root / "faces_local", root / "faces_ray", skip=("faces.jsonl",))
        same_run = same_files(root / "run_local", root / "run_ray",
                              skip=("metrics.json", "config.yaml"))
        print(f"this machine: {cpus} CPUs, torch {threads} threads; ray {ray.__version__}")
        print(f"faces detect: {rows} images, detector {args.detector}, {cpus} workers/actors; "
              f"train: N-CNN, 2 folds of {args.subjects * IMAGES_PER_SUBJECT} images, "
              f"{args.epochs} epochs")
        print(f"{'step':<14}{'local s':>9}{'ray s':>9}{'ray/local':>11}  same files")
        print(f"{'faces detect':<14}{detect['local']:>9.1f}{detect['ray']:>9.1f}"
              f"{detect['ray'] / detect['local']:>11.2f}  {same_faces} (but faces.jsonl's times)")
        print(f"{'train 2 folds':<14}{train_local:>9.1f}{train_ray:>9.1f}"
              f"{train_ray / train_local:>11.2f}  {same_run} (but seconds, out)")

        image_ms = 1000 * one_cpu / rows
        ray_image_ms = 1000 * detect["ray"] / rows
        fold_s = sum(folds_local) / len(folds_local)
        print("\nper task")
        print(f"  Ray start-up (ray.init, a new local Ray):   {startup:.1f} s")
        print(f"  actors up to a first result ({cpus} actors):      {actors_up:.2f} s")
        print(f"  Ray per item, no-op (driver round trip):    {1000 * per_item:.2f} ms")
        print(f"  faces detect per image, one CPU (local, --workers 1): {image_ms:.2f} ms")
        print(f"  faces detect per image, wall (local, {cpus} processes): "
              f"{1000 * detect['local'] / rows:.2f} ms")
        print(f"  faces detect per image, wall (Ray, {cpus} actors): {ray_image_ms:.2f} ms")
        print(f"  train per fold (local; Ray's: "
              f"{', '.join(f'{s:.1f}' for s in folds_ray)} s):   {fold_s:.1f} s")

        slots = max(1, cpus // threads)
        print("\nestimate for N nodes of this machine's size (c CPUs each), per docs/scale.md:")
        print("  detect(N) = S + A + n * max(t_actor / (N c), o)")
        print("  train(N)  = S + ceil(K / (N floor(c / threads))) * t_fold")
        actor_ms = ray_image_ms * cpus  # an image's cost on one actor, round trip included
        print(f"  S={startup:.1f} s (0 when joining a running cluster), A={actors_up:.2f} s, "
              f"t_actor={actor_ms:.2f} ms (Ray wall per image x c), o={1000 * per_item:.2f} ms "
              f"(no-op round trip: a lower bound), t_fold={fold_s:.1f} s, c={cpus}, "
              f"threads={threads}")
        print("  joining a running cluster (S = 0):")
        print(f"{'N':>4}{f'detect {rows} s':>16}{'detect 100k s':>15}{'train 10 folds s':>18}")
        for nodes in args.nodes:
            detect_s = [actors_up + n * max(actor_ms / 1000 / (nodes * cpus), per_item)
                        for n in (rows, 100_000)]
            train_s = math.ceil(10 / (nodes * slots)) * fold_s
            print(f"{nodes:>4}{detect_s[0]:>16.1f}{detect_s[1]:>15.1f}{train_s:>18.1f}")
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
