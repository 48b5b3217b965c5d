"""``calibrate_run``: a calibrator is fitted on its fold's validation subjects and never on a
test subject (with the mutation that fits on predictions.csv, which must be refused);
temperature scaling keeps accuracy and AUC and lowers the ECE of an overconfident model; the
calibrated columns are read back and replaced by a second calibration; the NFCS scorer's
logistic is rescaled the same way; runs from before calibration are refused by name."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from neopain.data.folds import make_folds, save_folds
from neopain.data.manifest import load_manifest, sha256_file
from neopain.data.synthetic import CohortSpec, generate_cohort
from neopain.data.tables import TableError
from neopain.errors import NeopainError
from neopain.evaluation import calibrate_run as calibrate_module
from neopain.evaluation.calibrate_run import calibrate_run
from neopain.models.calibrator import Calibrator
from neopain.runs import (
    CALIBRATED_COLUMNS,
    PREDICTION_COLUMNS,
    FoldContext,
    FoldModel,
    FoldPredictions,
    fold_model,
    load_run,
    read_calibrator,
    FoldFolder,
)
from neopain.training import TrainConfig, run_cv

WRONG = 4
"""Every WRONG-th row (by manifest row) gets the wrong sign: 75 % accuracy."""


def row_logit(row: int, label: str) -> float:
    """The overconfident model's logit of a manifest row: ±3 (P 0.95 or 0.05), wrong for one
    row in ``WRONG``, plus row / 1000 so that every row's logit is its own."""
    sign = 1.0 if label == "pain" else -1.0
    if row % WRONG == 1:
        sign = -sign
    return 3.0 * sign + row / 1000


class OverconfidentFoldModel(FoldModel):
    """P(pain) = sigmoid(±3): 95 % sure, right 75 % of the time."""

    trains = False

    def predict(self, fold: FoldContext) -> FoldPredictions:
        labels = fold.manifest.table["label"]
        logit = np.array([row_logit(int(row), labels.iat[row]) for row in fold.test])
        return FoldPredictions(prob=1 / (1 + np.exp(-logit)), threshold=0.5, logit=logit)


@pytest.fixture(scope="module")
def cohort(tmp_path_factory) -> Path:
    """12 subjects of 6 images, 3 lsso folds with 3 validation subjects (18 images) each: with
    the faces the NFCS scorer cannot judge left out, still 10 or more to fit on."""
    root = tmp_path_factory.mktemp("cohort12")
    generate_cohort(root, CohortSpec(subjects=12, seed=3, images_per_subject=(6, 6),
                                     noisy_share=0.5))
    manifest = root / "manifest.csv"
    save_folds(make_folds(load_manifest(manifest), protocol="lsso", k=3, val_share=0.4,
                          manifest_sha256=sha256_file(manifest)), root / "folds.json")
    return root


@pytest.fixture(scope="module")
def trained(cohort, tmp_path_factory) -> Path:
    """The overconfident model's run over the cohort (copy it before changing it)."""
    out = tmp_path_factory.mktemp("runs") / "overconfident"
    installed = fold_model.other_fold_models()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(fold_model, "other_fold_models",
                      lambda: {**installed, "overconfident": OverconfidentFoldModel})
        run_cv(TrainConfig(model="overconfident", manifest=cohort / "manifest.csv",
                           folds=cohort / "folds.json", out=out))
    return out


@pytest.fixture()
def run(trained, tmp_path) -> Path:
    return Path(shutil.copytree(trained, tmp_path / "overconfident"))


def subject_of_logit(cohort: Path) -> dict[str, str]:
    """Every manifest row's logit, as written (6 decimals), to its subject."""
    table = load_manifest(cohort / "manifest.csv").table
    return {f"{row_logit(row, label):.6f}": subject
            for row, (label, subject) in enumerate(zip(table["label"], table["subject"]))}


def fitted_subjects(monkeypatch, cohort: Path) -> list[set[str]]:
    """Records, per ``fit_calibrator`` call, the subjects of the logits it is handed."""
    subjects = subject_of_logit(cohort)
    received: list[set[str]] = []
    fit = calibrate_module.fit_calibrator

    def recording(y_true, logit, **options):
        received.append({subjects[f"{z:.6f}"] for z in logit})
        return fit(y_true, logit, **options)

    monkeypatch.setattr(calibrate_module, "fit_calibrator", recording)
    return received


def test_each_calibrator_is_fitted_on_its_folds_validation_subjects_only(run, cohort,
                                                                         monkeypatch):
    received = fitted_subjects(monkeypatch, cohort)
    calibrate_run(run, method="temperature")
    plan = json.loads((cohort / "folds.json").read_text())
    assert len(received) == len(plan["folds"]) == 3
    for fold, subjects in zip(plan["folds"], received):
        assert subjects == set(fold["val"])
        assert not subjects & set(fold["test"])
        fitted_on = read_calibrator(FoldFolder(run / f"fold_{fold['index']}")).fitted_on
        table = load_manifest(cohort / "manifest.csv").table
        # and the model whose outputs it fits (this stand-in saves no model.pt to hash)
        assert fitted_on == {"fold": fold["index"], "subjects": len(fold["val"]),
                             "images": int(table["subject"].isin(fold["val"]).sum()),
                             "model": "overconfident"}

    # the mutation: calibrating on the test predictions must be refused before any fit
    received.clear()
    monkeypatch.setattr(calibrate_module, "load_validation", lambda fold: fold.predictions)
    with pytest.raises(NeopainError, match="never be fitted on a test subject"):
        calibrate_run(run, method="platt")
    assert received == []


def test_temperature_keeps_accuracy_and_auc_and_lowers_the_ece_of_an_overconfident_model(run):
    folds = calibrate_run(run, method="temperature", alpha=0.1)
    assert [fold.index for fold in folds] == [0, 1, 2]
    for fold in folds:
        assert fold.calibrator.params["t"] > 1.5  # softened
        assert fold.calibrated["accuracy"] == fold.raw["accuracy"]
        assert fold.calibrated["auc"] == pytest.approx(fold.raw["auc"], abs=1e-12)
        assert fold.raw["ece"] > 0.15
        assert fold.calibrated["ece"] < fold.raw["ece"] - 0.05
        assert 0 <= fold.sets["referral"] <= 1 and 0 <= fold.sets["coverage"] <= 1
    loaded = load_run(run)
    assert loaded.calibrated
    for fold, result in zip(loaded.folds, folds):
        # the sets are the band's on the calibrated P (not on the raw one)
        assert fold.prediction_sets == result.calibrator.prediction_sets(fold.prob_calibrated)
        expected = result.calibrator.probability(fold.logit)
        np.testing.assert_allclose(fold.prob_calibrated, expected, atol=5e-7)
        pred = fold.predictions["pred_calibrated"].to_numpy()
        np.testing.assert_array_equal(pred == "pain", fold.prob_calibrated >= loaded.threshold)


def test_calibrating_again_replaces_the_columns_and_keeps_the_rest(run):
    before = pd.read_csv(run / "fold_1" / "predictions.csv", dtype=str, keep_default_na=False)
    calibrate_run(run, method="temperature")
    calibrate_run(run, method="isotonic", alpha=0.2)
    after = pd.read_csv(run / "fold_1" / "predictions.csv", dtype=str, keep_default_na=False)
    assert list(after.columns) == [*PREDICTION_COLUMNS, *CALIBRATED_COLUMNS]
    pd.testing.assert_frame_equal(after[list(before.columns)], before)
    saved = Calibrator.from_dict(json.loads((run / "fold_1" / "calibrator.json").read_text()))
    assert (saved.method, saved.alpha) == ("isotonic", 0.2)


@pytest.mark.parametrize("method", ["platt", "isotonic", "histogram"])
def test_every_method_writes_a_calibrator_that_reads_back(run, method):
    folds = calibrate_run(run, method=method, bins=5)
    for fold in folds:
        saved = read_calibrator(FoldFolder(run / f"fold_{fold.index}"))
        assert saved == Calibrator.from_dict(fold.calibrator.to_dict())
        assert saved.method == method and saved.has_band


def test_an_nfcs_run_gets_its_logistic_rescaled_by_platt(cohort, tmp_path):
    out = tmp_path / "nfcs"
    run_cv(TrainConfig(model="nfcs", manifest=cohort / "manifest.csv",
                       folds=cohort / "folds.json", out=out))
    validation = pd.read_csv(out / "fold_0" / "validation.csv")
    assert list(validation.columns) == [*PREDICTION_COLUMNS, "count", "assessable"]
    z = validation["logit_pain"].to_numpy()
    np.testing.assert_allclose(validation["prob_pain"], 1 / (1 + np.exp(-z)), atol=1e-6)
    folds = calibrate_run(out, method="platt")
    for fold in folds:
        assert set(fold.calibrator.params) == {"a", "b"}
    loaded = load_run(out)
    assert loaded.calibrated and all(len(f.prediction_sets) == len(f.prob) for f in loaded.folds)


def test_faces_the_model_could_not_judge_are_neither_fitted_on_nor_given_a_label(run):
    """Guards (review of issue 20): the NFCS scorer's faces without a mesh (assessable 0, a
    meaningless P of 0.5) entered the fit and got a calibrated single-label set."""
    honest = calibrate_run(run, method="platt")[0].calibrator
    for name in ("validation.csv", "predictions.csv"):
        path = run / "fold_0" / name
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
        table["assessable"] = ["0" if i < 3 else "1" for i in range(len(table))]
        if name == "validation.csv":  # would drag a fit that used them far off
            table.loc[:2, ["label", "logit_pain"]] = ["nopain", "40.0"]
        table.to_csv(path, index=False)
    calibrator = calibrate_run(run, method="platt")[0].calibrator
    assert calibrator.params == pytest.approx(honest.params, rel=0.2)
    fold = load_run(run).folds[0]
    assert fold.prediction_sets[:3] == ["pain|nopain"] * 3
    np.testing.assert_allclose(fold.prob_calibrated[:3], fold.prob[:3])


def test_a_run_without_subjects_cannot_prove_its_calibration_leak_free(run):
    path = run / "fold_1" / "validation.csv"
    pd.read_csv(path, dtype=str).drop(columns=["subject"]).to_csv(path, index=False)
    with pytest.raises(NeopainError, match=r"validation\.csv: has no column subject"):
        calibrate_run(run, method="temperature")


def test_runs_that_cannot_be_calibrated_are_refused_by_name(run):
    with pytest.raises(NeopainError, match="method='bayes' is not a calibration method; valid: "
                                           "temperature, platt, isotonic, histogram"):
        calibrate_run(run, method="bayes")
    with pytest.raises(NeopainError, match=r"alpha=1\.5 must be between 0 and 1"):
        calibrate_run(run, method="temperature", alpha=1.5)
    (run / "fold_2" / "validation.csv").unlink()
    with pytest.raises(NeopainError, match=r"fold_2/validation\.csv: file not found; this run "
                                           r"predates calibration"):
        calibrate_run(run, method="temperature")
    assert not (run / "fold_0" / "calibrator.json").exists()  # nothing written
    assert not load_run(run).calibrated


def test_a_bad_calibrated_cell_is_named_by_line_and_column(run):
    calibrate_run(run, method="temperature")
    path = run / "fold_0" / "predictions.csv"
    table = pd.read_csv(path, dtype=str, keep_default_na=False)
    table.loc[2, "prediction_set"] = "maybe"
    table.loc[3, "prob_pain_calibrated"] = "1.5"
    table.to_csv(path, index=False)
    with pytest.raises(TableError) as raised:
        load_run(run)
    problems = {(p.line, p.column) for p in raised.value.problems}
    assert problems == {(4, "prediction_set"), (5, "prob_pain_calibrated")}


def test_train_calibrates_the_run_when_its_config_asks(cohort, tmp_path):
    """``calibration:`` in run.yaml: ``neopain train`` ends as ``neopain calibrate`` would,
    and config.yaml keeps the resolved setting."""
    import yaml
    from typer.testing import CliRunner

    from neopain.cli.app import app as neopain_app

    out = tmp_path / "runs" / "nfcs"
    run_yaml = tmp_path / "run.yaml"
    run_yaml.write_text(yaml.safe_dump({
        "model": "nfcs", "manifest": str(cohort / "manifest.csv"),
        "folds": str(cohort / "folds.json"), "out": str(out),
        "calibration": {"method": "platt", "alpha": 0.2}}))
    result = CliRunner().invoke(neopain_app, ["train", "--config", str(run_yaml)])
    assert result.exit_code == 0, result.output
    said = " ".join(result.output.split())
    assert "platt calibration, referral band at alpha 0.2" in said
    assert yaml.safe_load((out / "config.yaml").read_text())["calibration"] == {
        "method": "platt", "alpha": 0.2, "bins": 10}
    for k in range(3):
        saved = read_calibrator(FoldFolder(out / f"fold_{k}"))
        assert saved.method == "platt" and saved.alpha == 0.2
    assert load_run(out).calibrated
