"""``neopain export``: a trained fold → one ONNX file with its preprocessing inside (+ int8)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape
from rich.table import Table

from neopain.cli.console import console, err_console, fail, progress_bar
from neopain.errors import NeopainError

QUANTIZE = ("none", "static", "dynamic")


def _mb(size: int) -> str:
    return f"{size / 1e6:.1f} MB"


def _auc(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"


def export(
    fold: Annotated[Path, typer.Argument(
        help="A fold folder of a training run, e.g. runs/vgg16_nb/fold_0 (holds model.pt).")],
    out: Annotated[Path, typer.Option(help="The .onnx file to write.")],
    quantize: Annotated[str, typer.Option(
        help="none: fp32 only; static: int8 QDQ calibrated on the fold's training images; "
             "dynamic: int8 MatMul/Gemm. With static or dynamic, OUT is the int8 model and "
             "the fp32 one is kept next to it as NAME.fp32.onnx.")] = "none",
    calibration: Annotated[int, typer.Option(
        help="Training images used to calibrate static int8 (evenly spread over the fold's "
             "training subjects).")] = 200,
    parity: Annotated[int, typer.Option(
        help="Test images on which torch and ONNX Runtime are compared (0: skip).")] = 32,
    tolerance: Annotated[float, typer.Option(
        help="Largest |P(pain) torch - P(pain) ONNX| accepted on those images.")] = 1e-4,
    calibrated_tolerance: Annotated[float, typer.Option(
        help="With a calibrator: the largest |calibrated P(pain) torch - ONNX| accepted.")
    ] = 1e-5,
    calibrator: Annotated[bool, typer.Option(
        "--calibrator/--no-calibrator",
        help="Embed the fold's calibrator.json (neopain calibrate) when it has one, so that "
             "every runtime shows the calibrated P(pain); --no-calibrator leaves it out.")
    ] = True,
    threads: Annotated[Optional[int], typer.Option(
        help="ONNX Runtime threads when timing fp32 vs int8 (default: one per core).")] = None,
    opset: Annotated[int, typer.Option(help="ONNX opset (17 or later).")] = 17,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Export a trained model to ONNX with its cfg embedded, check parity, optionally int8.

    The file carries neopain.cfg (input size, mean, std, channel order, labels, threshold,
    architecture, crop rule, source run and fold, and the fold's calibrator.json when it has
    one), so `neopain assess --model FILE` needs nothing else. Parity: torch and ONNX Runtime
    must agree within --tolerance on the fold's test images (and, with a calibrator, within
    --calibrated-tolerance on the calibrated P(pain)). With --quantize, a table compares fp32
    and int8 on those test images (label agreement, AUC, size, ms per image; calibrated P(pain)
    when there is a calibrator).

    Example: neopain export runs/vgg16_nb/fold_0 --out vgg16.onnx --quantize static
    """
    if quantize not in QUANTIZE:
        fail(f"--quantize {escape(quantize)} is not valid; valid: {', '.join(QUANTIZE)}")
    if calibration < 1 or parity < 0 or not tolerance >= 0 or not calibrated_tolerance >= 0:
        fail(f"--calibration {calibration} must be >= 1, --parity {parity} >= 0, "
             f"--tolerance {tolerance:g} >= 0 and --calibrated-tolerance "
             f"{calibrated_tolerance:g} >= 0")
    try:
        summary = _run(fold, out, quantize=quantize, calibration=calibration, parity=parity,
                       tolerance=(tolerance, calibrated_tolerance), calibrator=calibrator,
                       threads=threads, opset=opset, quiet=as_json)
    except NeopainError as error:
        fail(escape(str(error)))
    if as_json:
        print(json.dumps(summary, indent=2))
        return
    _print_summary(summary)


def _run(fold_dir: Path, out: Path, *, quantize: str, calibration: int, parity: int,
         tolerance: tuple[float, float], calibrator: bool, threads: int | None, opset: int,
         quiet: bool) -> dict:
    from neopain.data.manifest import load_manifest
    from neopain.export.inputs import labels_of, manifest_crops, spread
    from neopain.export.onnx import describe_file, export_fold, parity_on_inputs
    from neopain.export.quantize import (
        compare_models, quantize_dynamic_model, quantize_static_model,
    )
    from neopain.models.calibrator import CALIBRATOR_FILE
    from neopain.runs import select_rows

    fp32_path = out if quantize == "none" else out.with_name(f"{out.stem}.fp32{out.suffix}")
    fp32_path, fold = export_fold(fold_dir, fp32_path, opset=opset, calibrator=calibrator)
    summary: dict = {"fp32": describe_file(fp32_path)}
    summary["calibrator"] = {
        "file": str(fold_dir / CALIBRATOR_FILE), "embedded": summary["fp32"]["calibrator"]
        is not None, "reason": "embedded" if summary["fp32"]["calibrator"] is not None
        else "left out (--no-calibrator)" if not calibrator
        else "the fold has none (neopain calibrate writes it)"}
    if parity:
        if quiet:
            checked = parity_on_inputs(fold, fp32_path, limit=parity)
        else:
            with progress_bar("parity torch vs ONNX") as update:
                checked = parity_on_inputs(fold, fp32_path, limit=parity, on_progress=update)
        summary["parity"] = {"images": checked.images, "max_abs_diff": checked.max_abs_diff,
                             "label_changes": checked.label_changes, "tolerance": tolerance[0],
                             "calibrated_max_abs_diff": checked.calibrated_max_abs_diff,
                             "calibrated_label_changes": checked.calibrated_label_changes,
                             "calibrated_tolerance": tolerance[1]}
        if not checked.max_abs_diff <= tolerance[0]:
            raise NeopainError(f"parity failed: torch and ONNX Runtime differ by up to "
                               f"{checked.max_abs_diff:.2e} in P(pain) on {checked.images} test "
                               f"images (tolerance {tolerance[0]:g}); {fp32_path} is not to be "
                               "used")
        if checked.calibrated_max_abs_diff is not None \
                and not checked.calibrated_max_abs_diff <= tolerance[1]:
            raise NeopainError(f"parity failed: the calibrated P(pain) of torch and ONNX Runtime "
                               f"differ by up to {checked.calibrated_max_abs_diff:.2e} on "
                               f"{checked.images} test images (--calibrated-tolerance "
                               f"{tolerance[1]:g}); {fp32_path} is not to be used")
    if quantize == "none":
        return summary
    if fold.manifest is None:
        raise NeopainError(f"{fold_dir.parent / 'config.yaml'} names no manifest: int8 needs "
                           "the run's images to calibrate and to compare")
    manifest = load_manifest(fold.manifest)
    rule = fold.crop_rule
    test_rows = select_rows(manifest, subjects=fold.test_subjects or None)
    test_crops = [crop for _, crop in manifest_crops(manifest, test_rows, crop=rule)]
    if quantize == "static":
        rows = spread(select_rows(manifest, subjects=fold.train_subjects or None), calibration)
        crops = [crop for _, crop in manifest_crops(manifest, rows, crop=rule)]
        if quiet:
            quantize_static_model(fp32_path, out, crops=crops)
        else:
            with progress_bar("calibrating and quantizing") as update:
                quantize_static_model(fp32_path, out, crops=crops, on_progress=update)
    else:
        quantize_dynamic_model(fp32_path, out)
    if quiet:
        report = compare_models(fp32_path, out, crops=test_crops,
                                labels=labels_of(manifest, test_rows), threads=threads)
    else:
        with progress_bar("comparing fp32 and int8") as update:
            report = compare_models(fp32_path, out, crops=test_crops,
                                    labels=labels_of(manifest, test_rows), threads=threads,
                                    on_progress=update)
    summary["int8"] = {**describe_file(out), "report": report.to_dict()}
    return summary


def _calibrator_text(summary: dict) -> str:
    embedded = summary["fp32"]["calibrator"]
    if embedded is None:
        return f"none: {summary['calibrator']['reason']}; P(pain) is the network's own"
    band = "" if embedded["alpha"] is None else f", referral band alpha {embedded['alpha']:g}"
    return (f"{embedded['method']}{band} from {escape(summary['calibrator']['file'])}, "
            "embedded: runtimes show the calibrated P(pain)")


def _print_summary(summary: dict) -> None:
    fp32 = summary["fp32"]
    table = Table(title=f"exported {escape(fp32['architecture'])}", show_header=False)
    table.add_column("what")
    table.add_column("value")
    table.add_row("fp32 file", f"{escape(fp32['file'])} ({_mb(fp32['bytes'])})")
    table.add_row("input", f"{fp32['input_size'][0]}×{fp32['input_size'][1]}, crop "
                  f"{fp32['crop']}, pain at P >= {fp32['threshold']:g}")
    table.add_row("from", f"{escape(fp32['source_run'])} fold {fp32['fold']}")
    table.add_row("calibrator", _calibrator_text(summary))
    if "parity" in summary:
        p = summary["parity"]
        table.add_row("parity torch vs ONNX", f"max |ΔP| {p['max_abs_diff']:.1e} on "
                      f"{p['images']} test images (tolerance {p['tolerance']:g})")
        if p["calibrated_max_abs_diff"] is not None:
            table.add_row("parity, calibrated P", f"max |ΔP| {p['calibrated_max_abs_diff']:.1e} "
                          f"(tolerance {p['calibrated_tolerance']:g}), "
                          f"{p['calibrated_label_changes']} labels differ")
    if "int8" in summary:
        int8, r = summary["int8"], summary["int8"]["report"]
        table.add_row(f"int8 {int8['quantization']} file",
                      f"{escape(int8['file'])} ({_mb(int8['bytes'])}, "
                      f"{100 * r['size_ratio']:.0f}% of fp32)")
    console.print(table)
    if "int8" not in summary:
        return
    r = summary["int8"]["report"]
    kind = "calibrated P(pain)" if r["calibrated"] else "P(pain)"
    compare = Table(title=f"fp32 vs int8 on {r['images']} test images (same run), {kind}")
    for name in ("model", "ms / image", "AUC", "labels agree", "max |ΔP|"):
        compare.add_column(name, justify="left" if name == "model" else "right")
    compare.add_row("fp32", f"{r['fp32_ms']:.1f}", _auc(r["auc_fp32"]), "", "")
    compare.add_row(f"int8 {r['method']}", f"{r['int8_ms']:.1f}", _auc(r["auc_int8"]),
                    f"{100 * r['label_agreement']:.1f}%"
                    + (f" (flips within {r['flipped_within']:.3f} of the threshold)"
                       if r["label_agreement"] < 1 else ""), f"{r['max_abs_diff']:.4f}")
    console.print(compare)
    console.print(f"int8 is {r['speedup']:.2f}× the speed of fp32"
                  + ("" if r["auc_delta"] is None else f"; AUC change {r['auc_delta']:+.4f}"))
    if r["speedup"] < 1:
        err_console.print("note: int8 is slower than fp32 here; keep the fp32 file for this "
                          "CPU (dynamic int8 does not speed up convolutions)", style="yellow")
