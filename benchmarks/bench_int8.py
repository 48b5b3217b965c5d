"""Static and dynamic int8 against fp32 ONNX Runtime, for models trained on a synthetic cohort:
the acceptance figures of issue 8 (>= 3× faster, <= 30% of the file size, >= 99% label
agreement, |AUC delta| <= 0.01 for static int8 of vgg16_nb and resnet50_nb).

Steps, all under --work (reused when present):
1. a synthetic cohort (``generate_cohort``: by default the acceptance cohort, 30 subjects,
   seed 1) and 3 subject-grouped folds (fold 0 tests 10 subjects);
2. per model, fold 0 trained on the CPU: no pretrained weights can be downloaded here, so the
   backbone starts from He-normal weights scaled on the training images (``init_weights``);
   ``--train block`` (default) trains the head on cached embeddings of the frozen backbone,
   then unfreezes the last block; ``--train head`` only the head; ``--train full`` every layer
   (what each gave: docs/export.md);
3. ``export_fold`` → model.onnx (+ parity with torch on the fold's test images);
4. static int8 calibrated on the fold's training images; dynamic int8;
5. ``compare_models`` on the fold's test images: label agreement, AUC, sizes, ms per image.

Run: ``python benchmarks/bench_int8.py --work /tmp/int8 [--models vgg16_nb,resnet50_nb]``.
Prints a table; ``--json`` writes the figures too. Not a test: figures depend on the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
from pathlib import Path

import torch
from torch import nn

from neopain.training.dataset import FaceDataset
from neopain.data.folds import load_folds, make_folds, save_folds
from neopain.data.manifest import load_manifest, sha256_file
from neopain.data.synthetic import CohortSpec, generate_cohort
from neopain.export.inputs import labels_of, manifest_crops, spread
from neopain.export.onnx import export_fold, parity_on_inputs
from neopain.export.quantize import compare_models, quantize_dynamic_model, quantize_static_model
from neopain.models import create_model
from neopain.runs import select_rows
from neopain.training import TrainConfig, run_cv

ACCEPTANCE = {"speedup": 3.0, "size_ratio": 0.30, "label_agreement": 0.99, "auc_delta": 0.01}


def cohort(work: Path, *, subjects: int, seed: int) -> tuple[Path, Path]:
    manifest, folds = work / "cohort" / "manifest.csv", work / "cohort" / "folds.json"
    if not manifest.is_file():
        generate_cohort(work / "cohort", CohortSpec(subjects=subjects, seed=seed), workers=2)
    if not folds.is_file():
        plan = make_folds(load_manifest(manifest), protocol="sgkf", k=3,
                          manifest_sha256=sha256_file(manifest))
        save_folds(plan, folds)
    return manifest, folds


def init_weights(name: str, out: Path, manifest: Path, folds: Path, *, images: int = 48) -> Path:
    """Weights to start from when no pretrained ones can be downloaded: He-normal convolutions
    (fan_out, as torchvision initializes VGG and ResNet), then scaled on the fold's TRAINING
    images so that activations stay near unit size: batch-norm statistics recomputed (ResNet),
    or each convolution's output scaled to unit standard deviation (LSUV, Mishkin & Matas 2015)
    where there is no batch norm (VGG, fed raw 0-255 pixels minus a mean)."""
    if out.is_file():
        return out
    torch.manual_seed(0)
    model = create_model(name)
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            if module.bias is not None:
                nn.init.zeros_(module.bias)
    cfg = model.cfg
    data = FaceDataset(load_manifest(manifest), subjects=load_folds(folds).folds[0].train,
                       size=cfg.input_size, mean=cfg.mean, std=cfg.std,
                       channel_order=cfg.channel_order, crop_to_face=True)
    batch = torch.stack([data[i]["image"] for i in range(min(images, len(data)))])
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    with torch.no_grad():
        if norms:
            for norm in norms:
                norm.reset_running_stats()
                norm.momentum = None  # a plain average over the batches
            model.train()
            for start in range(0, len(batch), 16):
                model.forward_features(batch[start:start + 16])
            for norm in norms:
                norm.momentum = 0.1
        else:
            seen: list[torch.Tensor] = []
            for conv in [m for m in model.modules() if isinstance(m, nn.Conv2d)]:
                seen.clear()
                hook = conv.register_forward_hook(lambda mod, inp, output: seen.append(output))
                model.eval()
                model.forward_features(batch[:16])
                hook.remove()
                conv.weight /= seen[0].std()
    torch.save(model.state_dict(), out)
    return out


def train(name: str, work: Path, manifest: Path, folds: Path, *, mode: str, epochs: int,
          lr: float) -> Path:
    """Fold 0 of ``name``: ``block`` trains the head on cached embeddings of the frozen
    backbone, then the last block too; ``full`` every layer (bf16 where native, one-cycle
    schedule, mirrored images); ``head`` only the head on cached embeddings."""
    out = work / "runs" / f"{name}-{mode}"
    if (out / "fold_0" / "model.pt").is_file():
        return out / "fold_0"
    weights = init_weights(name, work / f"{name}.init.pt", manifest, folds)
    cached_head = {"freeze_backbone": True, "cache": True, "cache_dir": work / "cache"}
    recipe = {
        "block": {**cached_head, "unfreeze_patience": 3, "unfreeze_blocks": 1,
                  "unfreeze_lr_factor": 1.0, "early_stopping": 0, "precision": "auto"},
        "full": {"lr_schedule": "onecycle", "flip": 0.5, "early_stopping": 0,
                 "precision": "auto"},
        "head": {**cached_head, "early_stopping": 15},
    }[mode]
    config = TrainConfig(model=name, manifest=manifest, folds=folds, out=out, fold=0,
                         epochs=epochs, batch_size=16, lr=lr, weight_decay=1e-4, device="auto",
                         weights=weights, **recipe)
    run_cv(config)
    return out / "fold_0"


def measure(name: str, work: Path, manifest_path: Path, folds: Path, *, mode: str, epochs: int,
            lr: float, calibration: int, repeats: int, threads: int | None) -> dict[str, object]:
    fold_dir = train(name, work, manifest_path, folds, mode=mode, epochs=epochs, lr=lr)
    fp32, fold = export_fold(fold_dir, work / "models" / f"{name}-{mode}.onnx")
    parity = parity_on_inputs(fold, fp32, limit=None)
    manifest = load_manifest(manifest_path)
    saved = torch.load(fold_dir / "model.pt", weights_only=True)
    rule = fold.crop_rule
    train_rows = spread(select_rows(manifest, subjects=saved["train_subjects"]), calibration)
    test_rows = select_rows(manifest, subjects=saved["test_subjects"])
    calibration_crops = [crop for _, crop in manifest_crops(manifest, train_rows, crop=rule)]
    test_crops = [crop for _, crop in manifest_crops(manifest, test_rows, crop=rule)]
    labels = labels_of(manifest, test_rows)
    static = quantize_static_model(fp32, work / "models" / f"{name}-{mode}.int8-static.onnx",
                                   crops=calibration_crops)
    dynamic = quantize_dynamic_model(fp32, work / "models" / f"{name}-{mode}.int8-dynamic.onnx")
    out: dict[str, object] = {"model": name, "parity_max_abs_diff": parity.max_abs_diff,
                              "parity_images": parity.images}
    for method, path in (("static", static), ("dynamic", dynamic)):
        report = compare_models(fp32, path, crops=test_crops, labels=labels, threads=threads,
                                repeats=repeats)
        out[method] = report.to_dict()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work", type=Path, default=Path("bench-int8"))
    parser.add_argument("--models", default="vgg16_nb,resnet50_nb")
    parser.add_argument("--subjects", type=int, default=30)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--train", default="block", choices=("block", "head", "full"),
                        help="block: the head on cached embeddings, then the last block too "
                             "(VGG-16 about 10 min); head: the head only, on the frozen initial "
                             "backbone (a weak model); full: every layer (ResNet-50 12 min, "
                             "VGG-16 45 min); docs/export.md")
    parser.add_argument("--epochs", type=int, default=None,
                        help="default: 12 full, 60 head")
    parser.add_argument("--lr", type=float, default=None, help="default: 1e-3 full, 3e-4 head")
    parser.add_argument("--calibration", type=int, default=200, help="calibration images")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1,
                        help="ONNX Runtime threads; 1 by default: on a CPU other work shares, "
                             "a second thread waits for cores and blurs the comparison")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    manifest, folds = cohort(args.work, subjects=args.subjects, seed=args.seed)
    epochs = args.epochs or {"head": 60, "block": 20, "full": 12}[args.train]
    lr = args.lr or {"head": 3e-4, "block": 1e-3, "full": 1e-3}[args.train]
    results = [measure(name, args.work, manifest, folds, mode=args.train, epochs=epochs, lr=lr,
                       calibration=args.calibration, repeats=args.repeats, threads=args.threads)
               for name in args.models.split(",")]
    print(f"CPU: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"ONNX Runtime threads={args.threads or 'default (one per core)'}")
    header = (f"{'model':<12} {'int8':<8} {'fp32 ms':>8} {'int8 ms':>8} {'speedup':>8} "
              f"{'size':>6} {'agree':>6} {'flips≤':>7} {'AUC fp32':>8} {'ΔAUC':>7} "
              f"{'max|ΔP|':>8}  accepted")
    print(header)
    for result in results:
        for method in ("static", "dynamic"):
            r = result[method]
            delta = r["auc_delta"]
            ok = (r["speedup"] >= ACCEPTANCE["speedup"]
                  and r["size_ratio"] <= ACCEPTANCE["size_ratio"]
                  and r["label_agreement"] >= ACCEPTANCE["label_agreement"]
                  and delta is not None and abs(delta) <= ACCEPTANCE["auc_delta"])
            auc = "–" if r["auc_fp32"] is None else f"{r['auc_fp32']:.3f}"
            print(f"{result['model']:<12} {method:<8} {r['fp32_ms']:>8.1f} {r['int8_ms']:>8.1f} "
                  f"{r['speedup']:>7.2f}× {100 * r['size_ratio']:>5.1f}% "
                  f"{100 * r['label_agreement']:>5.1f}% {r['flipped_within']:>7.4f} {auc:>8} "
                  f"{'–' if delta is None else f'{delta:+.4f}':>7} {r['max_abs_diff']:>8.4f}  "
                  f"{'yes' if ok else 'no'}")
        print(f"{result['model']:<12} parity torch vs ONNX fp32: max |ΔP| = "
              f"{result['parity_max_abs_diff']:.2e} on {result['parity_images']} test images")
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
