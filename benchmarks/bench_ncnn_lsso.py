"""ncnn over lsso 10 folds on a synthetic cohort: mean ± std accuracy and wall time.

The acceptance target: mean accuracy >= 0.90 within 15 minutes on a 2-core CPU.

    python benchmarks/bench_ncnn_lsso.py [--subjects 30] [--epochs 10] [--lr 0.002]
        [--lr-schedule onecycle] [--flip 0.5] [--early-stopping 0] [--val-share 0]
        [--precision bf16] [--out DIR]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from neopain.data.folds import make_folds, save_folds
from neopain.data.manifest import load_manifest, sha256_file
from neopain.data.synthetic import CohortSpec, generate_cohort
from neopain.evaluation.stats import mean_std
from neopain.training import TrainConfig, oof_leaks, run_cv


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subjects", type=int, default=30)
    parser.add_argument("--images-per-subject", type=int, nargs=2, default=(10, 16),
                        metavar=("LO", "HI"), help="range of images drawn per subject")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=0.002)
    parser.add_argument("--augment", action="store_true")
    parser.add_argument("--lr-schedule", default="constant", choices=("constant", "onecycle"))
    parser.add_argument("--flip", type=float, default=0.0)
    parser.add_argument("--early-stopping", type=int, default=4)
    parser.add_argument("--val-share", type=float, default=0.1,
                        help="share of each fold's training subjects that validate (0: none)")
    parser.add_argument("--precision", default="fp32", choices=("fp32", "bf16", "auto"))
    parser.add_argument("--out", type=Path, default=None,
                        help="keep the cohort and the run here (then: neopain evaluate OUT/run)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder) if args.out is None else args.out
        root.mkdir(parents=True, exist_ok=True)
        spec = CohortSpec(subjects=args.subjects, seed=1,
                          images_per_subject=tuple(args.images_per_subject))
        if not (root / "cohort.json").is_file():  # --out with a cohort already: reuse it
            generate_cohort(root, spec, workers=2)
        manifest = root / "manifest.csv"
        images = len(load_manifest(manifest))
        plan = make_folds(load_manifest(manifest), protocol="lsso", k=10,
                          val_share=args.val_share, manifest_sha256=sha256_file(manifest))
        save_folds(plan, root / "folds.json")
        config = TrainConfig(model="ncnn", manifest=manifest, folds=root / "folds.json",
                             out=root / "run", epochs=args.epochs, batch_size=args.batch_size,
                             lr=args.lr, augment=args.augment, lr_schedule=args.lr_schedule,
                             flip=args.flip, early_stopping=args.early_stopping, device="cpu",
                             precision=args.precision)
        started, cpu_started = time.perf_counter(), time.process_time()
        result = run_cv(config)
        seconds = time.perf_counter() - started
        # CPU seconds of all this process's threads: on a machine shared with other work the
        # wall time grows, the CPU time much less; / cores = wall time on an idle machine
        cpu_seconds = time.process_time() - cpu_started
        leaks = oof_leaks(config.out)
    accuracy = np.array(result.metric("accuracy"))
    mean, std = mean_std(accuracy)  # sample std, as `neopain evaluate` reports it
    print(f"ncnn, lsso 10 folds, {args.subjects} subjects: accuracy {mean:.3f} ± {std:.3f} "
          f"(per fold {np.round(accuracy, 3).tolist()}), epochs "
          f"{[fold.epochs for fold in result.folds]}, {images} images, "
          f"wall {seconds / 60:.1f} min, CPU {cpu_seconds / 60:.1f} min "
          f"(/ {torch.get_num_threads()} threads = "
          f"{cpu_seconds / 60 / torch.get_num_threads():.1f} min), out-of-fold leaks: {len(leaks)}")


if __name__ == "__main__":
    main()
