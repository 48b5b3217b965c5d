"""Cross-validation: the runs layout, and no out-of-fold prediction from a model that saw its
subject (with the mutation that trains on every subject, which the check must catch).

Also ``neopain train`` end to end on a tiny cohort, and config errors that name the keys.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from typer.testing import CliRunner

from neopain.cli.app import app as neopain_app
from neopain.data.folds import make_folds, save_folds
from neopain.data.manifest import load_manifest, sha256_file
from neopain.runs import PREDICTION_COLUMNS
from neopain.training import (
    ConfigError, TrainConfig, load_config, oof_leaks, run_cv, save_config,
)
from neopain.training import cv as cv_module

FOLD_FILES = {"model.pt", "predictions.csv", "validation.csv", "metrics.json", "history.csv",
              "checkpoint.pt"}


@pytest.fixture()
def cohort(cohort6):
    """6 subjects, 3-4 images each, and 3 lsso folds (the shared fixture; runs go elsewhere)."""
    return cohort6


def config(cohort, out, **kwargs) -> TrainConfig:
    return TrainConfig(model="ncnn", manifest=cohort / "manifest.csv",
                       folds=cohort / "folds.json", out=out,
                       **{"epochs": 1, "batch_size": 8, "device": "cpu", **kwargs})


def manifest_rows(cohort, subjects) -> list[int]:
    """The manifest rows of ``subjects``, ascending."""
    table = load_manifest(cohort / "manifest.csv").table
    return np.flatnonzero(table["subject"].isin(subjects).to_numpy()).tolist()


def test_every_oof_prediction_comes_from_a_model_that_never_saw_its_subject(cohort, tmp_path,
                                                                           monkeypatch):
    out = tmp_path / "run"
    result = run_cv(config(cohort, out))
    plan = json.loads((cohort / "folds.json").read_text())
    predicted = []
    for fold in plan["folds"]:
        folder = out / f"fold_{fold['index']}"
        assert FOLD_FILES <= {p.name for p in folder.iterdir()}
        saved = torch.load(folder / "model.pt", weights_only=False)
        predictions = pd.read_csv(folder / "predictions.csv", dtype=str)
        assert list(predictions.columns) == list(PREDICTION_COLUMNS)
        assert set(predictions["subject"]) == set(fold["test"])
        # validation.csv: exactly the validation subjects' rows, predicted by the same model
        validation = pd.read_csv(folder / "validation.csv", dtype=str)
        assert list(validation.columns) == list(PREDICTION_COLUMNS)
        assert validation["row"].astype(int).tolist() == manifest_rows(cohort, fold["val"])
        assert set(validation["subject"]) == set(fold["val"]) == set(saved["val_subjects"])
        assert not set(validation["subject"]) & set(fold["test"])
        for table in (predictions, validation):
            z = table["logit_pain"].astype(float).to_numpy()
            np.testing.assert_allclose(table["prob_pain"].astype(float), 1 / (1 + np.exp(-z)),
                                       atol=2e-6)
        seen = set(saved["train_subjects"] + saved["val_subjects"])
        assert not set(predictions["subject"]) & seen
        assert saved["train_subjects"] == sorted(fold["train"])
        predicted += list(predictions["subject"])
    assert sorted(set(predicted)) == sorted(load_manifest(cohort / "manifest.csv").subjects)
    assert oof_leaks(out) == []
    assert len(result.folds) == 3

    # the mutation: a model trained on every subject must be caught
    monkeypatch.setattr(cv_module, "training_subjects",
                        lambda fold: fold.train + fold.test)
    run_cv(config(cohort, tmp_path / "leaky", fold=1))
    leaks = oof_leaks(tmp_path / "leaky")
    assert leaks and all(message.startswith("fold_1: subject") for message in leaks)


def test_metrics_json_and_model_pt_follow_the_runs_layout(cohort, tmp_path):
    out = tmp_path / "one"
    run_cv(config(cohort, out, fold=0))
    assert [p.name for p in out.glob("fold_*")] == ["fold_0"]
    metrics = json.loads((out / "fold_0" / "metrics.json").read_text())
    # a network's own: the share of test faces given one output, and its fresh starts
    assert set(metrics) == {"fold", "metrics", "epochs", "seconds", "same_output", "restarts",
                            "checked_same_output"}
    assert {"accuracy", "precision", "recall", "specificity", "f1", "auc", "balanced_accuracy",
            "brier", "nll", "ece", "ece_mass", "mce"} == set(metrics["metrics"])
    saved = torch.load(out / "fold_0" / "model.pt", weights_only=False)
    assert (saved["model"], saved["fold"], saved["cfg"]["name"]) == ("ncnn", 0, "ncnn")
    resolved = yaml.safe_load((out / "config.yaml").read_text())
    assert resolved["model"] == "ncnn" and resolved["epochs"] == 1 and resolved["fold"] == 0
    assert TrainConfig.from_dict(resolved) == config(cohort, out, fold=0)


def test_config_errors_name_the_key_and_the_valid_values(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("model: ncnn\nmanifest: m.csv\nfolds: f.json\nout: runs/x\nepoch: 3\n")
    with pytest.raises(ConfigError, match=r"unknown key 'epoch'; valid: model, .*epochs"):
        load_config(path)
    with pytest.raises(ConfigError, match="optimizer='adamw' is not valid; valid: adam"):
        load_config(None, model="ncnn",
                    manifest="m", folds="f", out="o", optimizer="adamw")
    with pytest.raises(ConfigError, match="missing 'folds', 'out'"):
        load_config(None, model="ncnn", manifest="m.csv")
    assert load_config(None, model="ncnn", manifest="m", folds="f", out="o", lr=None).lr == 1e-3


@pytest.mark.parametrize("calibration, says", [
    ({"method": "bayes"}, "calibration.method='bayes' is not valid; valid: temperature, platt, "
                          "isotonic, histogram"),
    ({"alpha": 0.1}, "calibration.method=None is not valid; valid: temperature"),
    ({"method": "platt", "alpha": 1.0}, "calibration.alpha=1.0 is not valid; valid: a number "
                                        "between 0 and 1 (exclusive)"),
    ({"method": "histogram", "bins": 1}, "calibration.bins=1 is not valid; valid: a whole "
                                         "number >= 2"),
    ({"method": "platt", "alhpa": 0.1}, "calibration: unknown key 'alhpa'; valid: method, "
                                        "alpha, bins"),
    ("temperature", "calibration='temperature' is not valid; valid: a mapping such as "
                    "{method: temperature, alpha: 0.1}, or null"),
])
def test_calibration_errors_name_the_field_and_the_valid_values(tmp_path, calibration, says):
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump({"model": "ncnn", "manifest": "m.csv", "folds": "f.json",
                                    "out": "runs/x", "calibration": calibration}))
    with pytest.raises(ConfigError) as raised:
        load_config(path)
    assert says in str(raised.value)


def test_the_calibration_setting_is_saved_resolved_and_read_back(tmp_path):
    config = load_config(None, model="ncnn", manifest="m", folds="f", out="o",
                         calibration={"method": "isotonic"})
    assert config.to_dict()["calibration"] == {"method": "isotonic", "alpha": 0.1, "bins": 10}
    save_config(config, tmp_path / "config.yaml")
    assert load_config(tmp_path / "config.yaml") == config
    assert load_config(None, model="ncnn", manifest="m", folds="f", out="o").calibration is None


def test_neopain_train_cli_writes_the_run_and_a_summary(cohort, tmp_path):
    out = tmp_path / "runs" / "ncnn"
    run_yaml = tmp_path / "run.yaml"
    run_yaml.write_text(yaml.safe_dump({"model": "ncnn", "manifest": str(cohort / "manifest.csv"),
                                        "folds": str(cohort / "folds.json"), "epochs": 3,
                                        "batch_size": 8}))
    result = CliRunner().invoke(neopain_app, ["train", "--config", str(run_yaml), "--out",
                                              str(out), "--epochs", "1", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert "mean" in result.output and "accuracy" in result.output
    assert sorted(p.name for p in out.glob("fold_*")) == ["fold_0", "fold_1", "fold_2"]
    assert yaml.safe_load((out / "config.yaml").read_text())["epochs"] == 1  # the flag won
    bad = CliRunner().invoke(neopain_app, ["train", "--config", str(run_yaml), "--out",
                                           str(out), "--fold", "7"])
    assert bad.exit_code == 1  # printed by the command, no traceback
    said = " ".join(bad.output.split())
    assert "error: fold=7 is not in" in said and "valid: 0 to 2" in said, said


def _pained_landmarks() -> np.ndarray:
    """Canonical-face landmarks (pixels) with brows lowered and the mouth widened: with the
    canonical face's slightly parted lips, three NFCS actions."""
    from neopain.scoring.canonical import canonical_landmarks

    points = np.nan_to_num(canonical_landmarks())
    points[[55, 65, 52, 107, 66, 105, 285, 295, 282, 336, 296, 334], 1] += 0.4
    points[291, 0] *= 1.2
    points[61, 0] *= 1.2
    return points * 20 + np.array([100.0, 100.0, 0.0])


def test_nfcs_run_scores_the_test_folds_and_evaluates_like_a_cnn(cohort, tmp_path):
    """`neopain train --model nfcs` trains nothing, but writes the runs layout: every test
    image scored once, rows without a face mesh kept at 0.5 and counted, landmarks taken from
    the manifest's column when a row has them; evaluate and compare then work."""
    from neopain.data.manifest import save_manifest
    from neopain.faces.landmarks import save_landmarks

    manifest = load_manifest(cohort / "manifest.csv")
    table = manifest.table.copy()
    for column in ("image", "mask"):  # the copy lives here; the shared cohort stays untouched
        table[column] = [str(cohort / cell) if cell else cell for cell in table[column]]
    save_landmarks(_pained_landmarks(), tmp_path / "lm" / "pained.npy")
    table.loc[0, "landmarks"] = "lm/pained.npy"  # row 0: landmarks given, image not used
    save_manifest(table, tmp_path / "with_landmarks.csv")
    plan = make_folds(load_manifest(tmp_path / "with_landmarks.csv"), protocol="lsso", k=3,
                      manifest_sha256=sha256_file(tmp_path / "with_landmarks.csv"))
    save_folds(plan, tmp_path / "folds.json")
    out = tmp_path / "runs" / "nfcs"
    result = CliRunner().invoke(neopain_app, [
        "train", "--model", "nfcs", "--manifest", str(tmp_path / "with_landmarks.csv"),
        "--folds", str(tmp_path / "folds.json"), "--out", str(out), "--epochs", "3"])
    assert result.exit_code == 0, result.output
    assert "--epochs ignored" in result.output and "no usable face mesh" in result.output
    scored = pd.concat([pd.read_csv(out / f"fold_{k}" / "predictions.csv") for k in range(3)])
    assert list(scored.columns) == [*PREDICTION_COLUMNS, "count", "assessable"]
    assert sorted(scored["row"]) == list(range(len(table)))  # each image once, none lost
    first = scored[scored["row"] == 0].iloc[0]
    assert first["count"] == 3 and first["pred"] == "pain" and first["prob_pain"] >= 0.5
    unscored = scored[scored["assessable"] == 0]
    assert (unscored["prob_pain"] == 0.5).all()
    record = json.loads((out / "nfcs.json").read_text())
    assert sum(f["unassessable"] for f in record["folds"]) == len(unscored)
    assert record["count_threshold"] == 3 and record["thresholds"]["open_lips"] == 0.05
    for k in range(3):
        saved = json.loads((out / f"fold_{k}" / "metrics.json").read_text())
        assert saved["epochs"] == 0 and "auc" in saved["metrics"]
    assert np.isfinite(scored["prob_pain"]).all()

    evaluated = CliRunner().invoke(neopain_app, ["evaluate", str(out)])
    assert evaluated.exit_code == 0, evaluated.output
    run_cv(TrainConfig(model="ncnn", manifest=tmp_path / "with_landmarks.csv",
                       folds=tmp_path / "folds.json", out=tmp_path / "runs" / "ncnn", epochs=1,
                       batch_size=8, device="cpu"))
    compared = CliRunner().invoke(neopain_app, ["compare", str(tmp_path / "runs" / "ncnn"),
                                                str(out)], terminal_width=160)
    assert compared.exit_code == 0, compared.output
    assert "nfcs" in compared.output and "ncnn" in compared.output
