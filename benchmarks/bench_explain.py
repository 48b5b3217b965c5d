"""Explanations of an N-CNN trained on the synthetic cohort: the issue-6 acceptance figures.

Trains ncnn on one subject-grouped holdout split of a synthetic cohort (the training recipe of
docs/training.md), then on the held-out pain images:

- per method (Grad-CAM on the cfg's layer and on ``--layer``, Integrated Gradients): the share
  of positive attribution inside the ground-truth action masks over the masks' area share
  (target >= 2), and the pointing game (target >= 70% of pain images);
- IG completeness error relative to |f(x) - f(baseline)| at default settings (target <= 2%);
- cascading weight randomization: mean Spearman with the trained heatmaps once every layer is
  re-initialized (target < 0.5);
- the persona ranking of the cohort's perception heatmaps against the masks and the model;
- resident memory growth over 500 Grad-CAM explanations (target < 100 MB).

    python benchmarks/bench_explain.py [--subjects 30] [--epochs 16] [--layer merge.conv]
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from neopain.data.folds import make_folds, save_folds
from neopain.data.manifest import load_manifest, sha256_file
from neopain.data.synthetic import CohortSpec, generate_cohort
from neopain.explain.gradcam import GradCam
from neopain.explain.integrated_gradients import IntegratedGradients
from neopain.explain.localization import localization, mask_in_input, read_action_mask
from neopain.explain.perception import Reference, compare_perception, load_perception
from neopain.explain.perception import summarize_agreement
from neopain.faces.regions import region_map
from neopain.explain.run import manifest_items
from neopain.explain.sanity import completeness_check, randomization_test
from neopain.runs import load_fold, select_rows
from neopain.training import TrainConfig, run_cv


def train(root: Path, *, subjects: int, epochs: int, seed: int) -> Path:
    """Cohort + holdout split + ncnn (one-cycle, flips); returns the fold folder."""
    generate_cohort(root, CohortSpec(subjects=subjects, seed=seed), workers=2)
    manifest = root / "manifest.csv"
    plan = make_folds(load_manifest(manifest), protocol="holdout", k=1, test_share=0.25,
                      val_share=0, seed=seed, manifest_sha256=sha256_file(manifest))
    save_folds(plan, root / "folds.json")
    config = TrainConfig(model="ncnn", manifest=manifest, folds=root / "folds.json",
                         out=root / "run", fold=0, epochs=epochs, batch_size=32, lr=0.004,
                         lr_schedule="onecycle", flip=0.5, early_stopping=0, precision="auto",
                         device="cpu", seed=seed)
    result = run_cv(config)
    print(f"ncnn: {subjects} subjects, {epochs} epochs, test accuracy "
          f"{result.folds[0].metrics['accuracy']:.3f}, {result.folds[0].seconds:.0f} s")
    return root / "run" / "fold_0"


def resident_mb() -> float:
    with open("/proc/self/statm") as file:
        return int(file.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subjects", type=int, default=30)
    parser.add_argument("--epochs", type=int, default=16)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--layer", default="merge.conv", help="a second Grad-CAM layer")
    args = parser.parse_args()
    sys.stdout.reconfigure(line_buffering=True)  # figures appear as they are measured
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        fold = load_fold(train(root, subjects=args.subjects, epochs=args.epochs,
                               seed=args.seed))
        model, cfg = fold.model, fold.model.cfg
        manifest = load_manifest(root / "manifest.csv")
        rows = [r for r in select_rows(manifest, subjects=fold.test_subjects)
                if manifest.table["label"].iat[r] == "pain"]
        items = list(manifest_items(manifest, cfg, rows=rows))
        images = np.stack([item.image for item in items])
        masks = np.stack([mask_in_input(read_action_mask(manifest.root / manifest.table["mask"]
                                                         .iat[item.row]),
                                        size=cfg.input_size, crop_box=item.crop_box)
                          for item in items])
        keep = masks.reshape(len(masks), -1).any(axis=1)
        images, masks = images[keep], masks[keep]
        items = [item for item, kept in zip(items, keep) if kept]
        print(f"{len(images)} held-out pain images; action masks cover "
              f"{masks.mean():.1%} of the input")

        methods = {
            f"gradcam {cfg.cam_layer} (plain)": lambda m: GradCam(m, gate=False),
            f"gradcam {cfg.cam_layer}": lambda m: GradCam(m),
            f"gradcam {args.layer} (plain)": lambda m: GradCam(m, layer=args.layer, gate=False),
            f"gradcam {args.layer}": lambda m: GradCam(m, layer=args.layer),
            "ig blur": lambda m: IntegratedGradients(m),
            "ig black": lambda m: IntegratedGradients(m, baseline="black"),
        }
        print(f"\n{'method':34s} {'mass ratio':>10s} {'pointing':>9s} {'seconds':>8s}")
        heatmaps = {}
        for name, make in methods.items():
            started = time.perf_counter()
            with make(model) as explainer:
                heat = heatmaps[name] = explainer.explain(images, target="pain")
            found = localization(heat, masks)
            print(f"{name:34s} {found.mass_ratio:10.2f} {found.pointing:9.0%} "
                  f"{time.perf_counter() - started:8.1f}")

        subset = images[:16]
        for baseline in ("blur", "black"):
            check = completeness_check(model, subset, target="pain", baseline=baseline)
            relative = check["relative_error"]
            print(f"\nIG completeness ({baseline}, defaults), {len(subset)} images: relative "
                  f"error median {relative.median():.2%}, max {relative.max():.2%}")

        for name, make in ((f"gradcam {cfg.cam_layer}", methods[f"gradcam {cfg.cam_layer}"]),
                           ("ig blur", methods["ig blur"])):
            table = randomization_test(model, subset[:8], target="pain", explainer=make)
            last = table[table["step"] == table["step"].max()]["spearman"]
            first = table[table["step"] == 1]["spearman"]
            print(f"randomization ({name}): mean Spearman {first.mean():.2f} after the top "
                  f"layer, {last.mean():.2f} with every layer randomized")

        perception = load_perception(root / "perception.csv")
        keypoints = manifest.keypoints()
        references = {}
        for r in range(0, len(manifest), 2):
            mask = read_action_mask(manifest.root / manifest.table["mask"].iat[r])
            small = mask_in_input(mask, size=(mask.shape[0] // 2, mask.shape[1] // 2))
            if small.any():
                scale = (np.array(small.shape[::-1]) / np.array(mask.shape[::-1]))
                references[manifest.table["image"].iat[r]] = Reference(
                    small.astype(np.float32), manifest.table["label"].iat[r],
                    regions=region_map(small.shape, keypoints=(keypoints[r] + 0.5) * scale - 0.5))
        summary = summarize_agreement(compare_perception(perception, references))
        print("\npersonas against the action masks (best first): "
              + ", ".join(f"{p} (Pearson {v:.2f})"
                          for p, v in summary["pearson_mean"].items()))
        for name in (f"gradcam {cfg.cam_layer}", "ig blur"):
            model_references = {
                item.name: Reference(heat, "pain", crop_box=item.crop_box,
                                     regions=region_map(heat.shape, keypoints=item.keypoints))
                for item, heat in zip(items, heatmaps[name])}
            summary = summarize_agreement(compare_perception(perception, model_references))
            print(f"personas against the model's {name} heatmaps of held-out pain images (best "
                  "first): " + ", ".join(f"{p} (Pearson {v:.2f})"
                                         for p, v in summary["pearson_mean"].items()))

        def explain_once(index: int) -> None:
            # a new explainer each time: hooks and captum objects must be released
            with GradCam(model) as explainer:
                explainer.explain(images[index % len(images)][None], target="pain")

        for index in range(50):
            explain_once(index)
        gc.collect()
        before = resident_mb()
        for index in range(500):
            explain_once(index)
        gc.collect()
        grown = resident_mb() - before
        print(f"\nmemory: 500 Grad-CAM explanations (each explainer opened and closed) grew "
              f"resident memory by {grown:.1f} MB")


if __name__ == "__main__":
    main()
