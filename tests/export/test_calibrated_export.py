"""Calibration travels with the model (issue 20, item 3): the fold's calibrator.json goes into
the exported file's ``neopain.cfg`` (fp32 and int8), the ONNX runtime applies it to the raw
logit from the file alone, and the calibrated P(pain) equals torch's within 1e-5."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from torch import nn

from neopain.data.manifest import load_manifest
from neopain.errors import NeopainError
from neopain.evaluation.calibration import fit_calibrator
from neopain.export.inputs import labels_of, manifest_crops
from neopain.export.metadata import (
    METADATA_KEY,
    ExportedCfg,
    ModelFileError,
    read_exported_cfg,
)
from neopain.export.onnx import check_parity, export_fold, export_model, parity_on_inputs
from neopain.export.quantize import compare_models, quantize_static_model
from neopain.export.runtime import OnnxPredictor
from neopain.models import PainModel, model_cfg
from neopain.models.calibrator import METHODS, Calibrator, sigmoid
from neopain.prediction import load_predictor
from neopain.runs import load_fold, select_rows

CALIBRATED_PARITY = 1e-5
"""The acceptance of issue 20: calibrated P(pain) of the fp32 file equals torch's within it."""


def fitted(method: str) -> Calibrator:
    """``method`` fitted by evaluation.calibration on logits whose labels follow sigmoid(z / 3)
    (an overconfident model: temperature about 3), with a referral band."""
    rng = np.random.default_rng(0)
    z = rng.normal(0.0, 4.0, 400)
    y = (rng.random(400) < sigmoid(z / 3.0)).astype(int)
    return fit_calibrator(y, z, method=method, alpha=0.2, fitted_on={"fold": 0, "images": 400})


def fold_with(tiny_fold: Path, folder: Path, calibrator: Calibrator | None) -> Path:
    """A copy of the tiny run whose fold_0 holds ``calibrator`` as calibrator.json."""
    run = shutil.copytree(tiny_fold.parent, folder / tiny_fold.parent.name)
    if calibrator is not None:
        (run / "fold_0" / "calibrator.json").write_text(json.dumps(calibrator.to_dict()))
    return run / "fold_0"


@pytest.fixture(scope="module")
def test_crops(tiny_fold):
    fold = load_fold(tiny_fold)
    manifest = load_manifest(fold.manifest)
    rows = select_rows(manifest, subjects=fold.test_subjects)
    return ([crop for _, crop in manifest_crops(manifest, rows, crop=fold.crop_rule)],
            labels_of(manifest, rows))


@pytest.fixture(scope="module")
def temperature_export(tiny_fold, tmp_path_factory):
    """The tiny fold with a fitted temperature calibrator, exported: (fold dir, file)."""
    folder = tmp_path_factory.mktemp("calibrated")
    fold_dir = fold_with(tiny_fold, folder, fitted("temperature"))
    path, _ = export_fold(fold_dir, folder / "ncnn.onnx")
    return fold_dir, path


@pytest.mark.parametrize("method", METHODS)
def test_the_fold_calibrator_is_embedded_and_torch_parity_holds_on_calibrated_p(
        method, tiny_fold, tmp_path):
    calibrator = fitted(method)
    fold_dir = fold_with(tiny_fold, tmp_path, calibrator)
    path, fold = export_fold(fold_dir, tmp_path / "ncnn.onnx")
    assert read_exported_cfg(path).calibrator.to_dict() == calibrator.to_dict()
    parity = parity_on_inputs(fold, path, limit=None)
    assert parity.images > 0 and parity.max_abs_diff <= 1e-4
    assert parity.calibrated_max_abs_diff <= CALIBRATED_PARITY, method
    assert parity.calibrated_label_changes == 0


def test_the_runtime_shows_the_calibrator_applied_to_torch_logits(temperature_export,
                                                                   test_crops):
    # guards: a runtime that forgot the calibrator, or applied it to P instead of the logit,
    # shows a P(pain) other than the one the calibrator was fitted to give
    fold_dir, path = temperature_export
    model = load_fold(fold_dir).model.eval()
    calibrator = read_exported_cfg(path).calibrator
    with OnnxPredictor(path) as predictor:
        predictions = predictor.predict_crops(test_crops[0])
        inputs = torch.as_tensor(np.stack([predictor.preprocess(c) for c in test_crops[0]]))
    with torch.no_grad():
        logits = model(inputs).numpy().astype(np.float64)
    z = logits[:, 1] - logits[:, 0]
    t = calibrator.params["t"]
    expected = 1.0 / (1.0 + np.exp(-z / t))  # by hand, not through Calibrator
    shown = np.array([p.prob_pain for p in predictions])
    raw = np.array([p.prob_raw for p in predictions])
    assert np.abs(shown - expected).max() <= CALIBRATED_PARITY
    assert np.abs(raw - sigmoid(z)).max() <= 1e-5
    # the test tells those mistakes apart: forgetting it, or mapping P, gives other numbers
    assert np.abs(expected - sigmoid(z)).max() > 1e-3
    assert np.abs(expected - sigmoid(sigmoid(z) / t)).max() > 1e-3
    assert [p.label for p in predictions] == ["pain" if p >= 0.5 else "nopain" for p in expected]
    assert [p.prediction_set for p in predictions] == calibrator.prediction_sets(shown)
    assert all(p.calibrated and p.prob_kind == "calibrated" for p in predictions)


class Confident(PainModel):
    """Pain logit = 200 × the input's mean: |z| up to ~100, where float32 softmax is 0 or 1."""

    def __init__(self) -> None:
        super().__init__()
        self.head = nn.Identity()

    def forward_features(self, x):
        return 200.0 * x.mean(dim=(1, 2, 3))[:, None]

    def forward_head(self, features):
        return torch.cat([torch.zeros_like(features), features], dim=1)

    def block_modules(self):
        return {}


def test_calibrated_p_comes_from_the_logit_where_float32_probabilities_saturate(tmp_path):
    # guards: a runtime deriving z from float32 softmax reads P = 1.0 as z ≈ 16 and shows
    # sigmoid(16 / 10) = 0.83 where torch's calibrated P is sigmoid(100 / 10) ≈ 1
    model = Confident().eval()
    model.cfg = model_cfg("ncnn")
    calibrator = Calibrator(method="temperature", params={"t": 10.0})
    path = export_model(model, tmp_path / "confident.onnx",
                        exported=ExportedCfg(cfg=model.cfg, calibrator=calibrator))
    means = np.linspace(-0.5, 0.5, 11)
    inputs = np.stack([np.full((3, *model.cfg.input_size), m, np.float32) for m in means])
    parity = check_parity(model, path, inputs)
    assert parity.calibrated_max_abs_diff <= CALIBRATED_PARITY
    with OnnxPredictor(path) as predictor:
        out = predictor.pain_outputs(inputs)
    assert (out.raw[means > 0.05] == 1.0).all()  # float32 P(pain) saturated
    with torch.no_grad():
        z = model(torch.as_tensor(inputs)).numpy().astype(np.float64)[:, 1]
    assert np.abs(z).max() > 90 and np.allclose(out.logit, z, rtol=1e-4)
    assert np.abs(out.calibrated - sigmoid(z / 10.0)).max() <= CALIBRATED_PARITY


def test_a_file_exported_before_log_probs_still_runs_from_its_probabilities(temperature_export,
                                                                            test_crops, tmp_path):
    _, path = temperature_export
    graph = onnx.load(str(path))
    del graph.graph.output[1]
    old = tmp_path / "old.onnx"
    onnx.save(graph, str(old))
    with OnnxPredictor(path) as new_file, OnnxPredictor(old) as old_file:
        assert old_file.outputs_ == ["probs"]
        new = [p.prob_pain for p in new_file.predict_crops(test_crops[0])]
        before = [p.prob_pain for p in old_file.predict_crops(test_crops[0])]
    assert np.allclose(new, before, atol=1e-5)  # unsaturated: the same P either way


def test_no_calibrator_leaves_the_output_as_it_was(tiny_fold, tiny_onnx, test_crops, tmp_path):
    assert read_exported_cfg(tiny_onnx).calibrator is None
    fold_dir = fold_with(tiny_fold, tmp_path, fitted("platt"))
    path, _ = export_fold(fold_dir, tmp_path / "left-out.onnx", calibrator=False)
    assert read_exported_cfg(path).calibrator is None
    with OnnxPredictor(tiny_onnx) as plain, OnnxPredictor(path) as left_out:
        for predictor in (plain, left_out):
            predictions = predictor.predict_crops(test_crops[0])
            assert all(p.prob_raw is None and p.prediction_set is None
                       and p.prob_kind == "uncalibrated" for p in predictions)


def test_the_int8_file_carries_the_calibrator_and_compares_calibrated_labels(
        temperature_export, tiny_fold, test_crops, tmp_path):
    _, path = temperature_export
    fold = load_fold(tiny_fold)
    manifest = load_manifest(fold.manifest)
    train = select_rows(manifest, subjects=fold.train_subjects)
    crops = [crop for _, crop in manifest_crops(manifest, train[:16], crop=fold.crop_rule)]
    int8 = quantize_static_model(path, tmp_path / "int8.onnx", crops=crops)
    calibrator = read_exported_cfg(path).calibrator
    assert read_exported_cfg(int8).calibrator == calibrator
    report = compare_models(path, int8, crops=test_crops[0], labels=test_crops[1], repeats=1)
    with OnnxPredictor(path) as fp32, OnnxPredictor(int8) as quantized:
        p32 = np.array([p.prob_pain for p in fp32.predict_crops(test_crops[0])])
        p8 = [p for p in quantized.predict_crops(test_crops[0])]
    assert report.calibrated and all(p.calibrated for p in p8)
    p8 = np.array([p.prob_pain for p in p8])
    assert report.label_agreement == pytest.approx(np.mean((p32 >= 0.5) == (p8 >= 0.5)))
    assert report.max_abs_diff == pytest.approx(np.abs(p8 - p32).max(), abs=1e-9)
    assert report.label_agreement >= 0.9


def test_mc_passes_are_refused_by_an_onnx_file(tiny_onnx):
    with pytest.raises(NeopainError, match="cannot run mc_passes=3 .MC dropout."):
        load_predictor(tiny_onnx, mc_passes=3)


@pytest.mark.parametrize("calibrator, says", [
    ({"method": "temperature", "params": {"t": 1.5}, "alpha": 2.0, "quantile": 0.3},
     "calibrator: alpha=2.0 must be between 0 and 1"),
    ({"method": "platt", "params": {"a": 1.0}}, "params must be exactly a, b"),
    ("temperature", "must be a mapping"),
])
def test_a_damaged_calibrator_in_the_file_is_named(tiny_onnx, tmp_path, calibrator, says):
    graph = onnx.load(str(tiny_onnx))
    entry = next(p for p in graph.metadata_props if p.key == METADATA_KEY)
    entry.value = json.dumps({**json.loads(entry.value), "calibrator": calibrator})
    damaged = tmp_path / "damaged.onnx"
    onnx.save(graph, str(damaged))
    for read in (read_exported_cfg, OnnxPredictor):
        with pytest.raises(ModelFileError) as error:
            read(damaged)
        assert str(error.value).startswith(f"{damaged}: {METADATA_KEY}: calibrator")
        assert says in str(error.value)
