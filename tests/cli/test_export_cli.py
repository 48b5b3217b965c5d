"""``neopain export`` end to end: a trained fold becomes an .onnx file with its cfg inside, torch
parity is checked (and a failure stops the command), int8 comes with its comparison table, and
bad input exits 1 with a message, never a traceback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from neopain.cli.app import app as neopain_app
from neopain.export import onnx as onnx_module
from neopain.export.metadata import read_exported_cfg
from neopain.training import TrainConfig, run_cv


def run(*args: str) -> tuple[int, str]:
    """Exit code and output, with Rich's line wrapping undone."""
    result = CliRunner().invoke(neopain_app, list(args))
    assert "Traceback" not in result.output
    assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit)
    return result.exit_code, result.output if "--json" in args else " ".join(
        result.output.split())


@pytest.fixture(scope="module")
def fold(cohort6, tmp_path_factory) -> Path:
    """fold_0 of an N-CNN run trained 2 epochs on the 6-subject cohort."""
    out = tmp_path_factory.mktemp("export-cli") / "ncnn"
    run_cv(TrainConfig(model="ncnn", manifest=cohort6 / "manifest.csv",
                       folds=cohort6 / "folds.json", out=out, fold=0, epochs=2, batch_size=8,
                       device="cpu"))
    return out / "fold_0"


def test_export_writes_the_model_with_its_cfg_and_reports_parity(fold, tmp_path):
    out = tmp_path / "ncnn.onnx"
    code, output = run("export", str(fold), "--out", str(out))
    assert code == 0, output
    exported = read_exported_cfg(out)
    assert (exported.cfg.name, exported.crop, exported.fold) == ("ncnn", "face_box", 0)
    assert "parity torch vs ONNX" in output and "120×120, crop face_box" in output
    assert "max |ΔP|" in output


def test_static_int8_keeps_fp32_beside_it_and_reports_the_comparison(fold, tmp_path):
    out = tmp_path / "ncnn.onnx"
    code, output = run("export", str(fold), "--out", str(out), "--quantize", "static",
                       "--calibration", "8", "--json")
    assert code == 0, output
    summary = json.loads(output)
    assert summary["parity"]["max_abs_diff"] <= 1e-4
    assert summary["fp32"]["file"] == str(tmp_path / "ncnn.fp32.onnx")
    assert summary["int8"]["quantization"] == "static"
    report = summary["int8"]["report"]
    assert report["images"] == summary["parity"]["images"]
    assert 0.9 <= report["label_agreement"] <= 1.0 and report["size_ratio"] < 0.4
    assert read_exported_cfg(out).quantization == "static"
    assert read_exported_cfg(tmp_path / "ncnn.fp32.onnx").quantization == "none"


def test_a_parity_failure_stops_the_export(fold, tmp_path, monkeypatch):
    real = onnx_module.parity_on_inputs

    def drifting(*args, **kwargs):
        return real(*args, **kwargs).__class__(images=6, max_abs_diff=0.01, label_changes=1)

    monkeypatch.setattr(onnx_module, "parity_on_inputs", drifting)
    code, output = run("export", str(fold), "--out", str(tmp_path / "m.onnx"))
    assert code == 1
    assert "parity failed" in output and "1.00e-02" in output and "is not to be used" in output


@pytest.mark.parametrize("args, says", [
    (["--quantize", "int4"], "--quantize int4 is not valid"),
    (["--tolerance", "-1"], "--tolerance -1 >= 0"),
    (["--opset", "13"], "opset=13 is too old"),
])
def test_bad_options_exit_1_naming_them(fold, tmp_path, args, says):
    code, output = run("export", str(fold), "--out", str(tmp_path / "m.onnx"), *args)
    assert code == 1 and says in output, output


def test_a_folder_without_model_pt_is_named(tmp_path):
    code, output = run("export", str(tmp_path), "--out", str(tmp_path / "m.onnx"))
    assert code == 1 and "model.pt: file not found" in output
