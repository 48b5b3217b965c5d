"""Calibration at the command line (issue 20): ``neopain export`` embeds the fold's
calibrator.json and says so, with the calibrated parity figure; ``neopain assess`` writes what
kind of number P(pain) is, the raw P and the referral set, applies a run's calibrator to any
model with ``--calibrator``, and names a bad calibrator.json, or ``--mc-passes`` for a model that
cannot, in one line without a traceback."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from typer.testing import CliRunner

from cli_invoke import invoke, write_face
from hostile_paths import REASONS, hostile
from neopain.cli.app import app as neopain_app
from neopain.data.synthetic import CohortSpec
from neopain.data.synthetic.cohort import make_subjects
from neopain.data.synthetic.video import ClipSpec, generate_clips
from neopain.evaluation.calibration import fit_calibrator
from neopain.export.metadata import read_exported_cfg
from neopain.models.calibrator import Calibrator, logit_of, sigmoid
from neopain.training import TrainConfig, run_cv


def fitted(method: str = "temperature") -> Calibrator:
    """``method`` fitted on logits whose labels follow sigmoid(z / 3), with a referral band."""
    rng = np.random.default_rng(1)
    z = rng.normal(0.0, 4.0, 300)
    y = (rng.random(300) < sigmoid(z / 3.0)).astype(int)
    return fit_calibrator(y, z, method=method, alpha=0.3)


@pytest.fixture(scope="module")
def fold(cohort6, tmp_path_factory) -> Path:
    """fold_0 of an N-CNN run (2 epochs on the 6-subject cohort) holding a calibrator.json."""
    out = tmp_path_factory.mktemp("calibrated-cli") / "ncnn"
    run_cv(TrainConfig(model="ncnn", manifest=cohort6 / "manifest.csv",
                       folds=cohort6 / "folds.json", out=out, fold=0, epochs=2, batch_size=8,
                       device="cpu"))
    (out / "fold_0" / "calibrator.json").write_text(json.dumps(fitted().to_dict()))
    return out / "fold_0"


@pytest.fixture(scope="module")
def exported(fold, tmp_path_factory) -> dict[str, Path]:
    """The fold exported with its calibrator and without it."""
    folder = tmp_path_factory.mktemp("calibrated-export")
    files: dict = {"with": folder / "with.onnx", "without": folder / "without.onnx"}
    for name, extra in (("with", []), ("without", ["--no-calibrator"])):
        code, output = invoke("export", str(fold), "--out", str(files[name]), *extra,
                              seconds=300)
        assert code == 0, output
        files[f"{name} said"] = " ".join(output.split())
    return files


def test_export_embeds_the_calibrator_and_reports_calibrated_parity(fold, tmp_path):
    code, output = invoke("export", str(fold), "--out", str(tmp_path / "m.onnx"), "--json",
                          seconds=300)
    assert code == 0, output
    summary = json.loads(output)
    assert summary["calibrator"]["embedded"] and summary["fp32"]["calibrator"]["method"] == \
        "temperature"
    assert read_exported_cfg(tmp_path / "m.onnx").calibrator == fitted()
    assert summary["parity"]["calibrated_max_abs_diff"] <= 1e-5
    assert summary["parity"]["calibrated_label_changes"] == 0
    code, output = invoke("export", str(fold), "--out", str(tmp_path / "t.onnx"), seconds=300)
    text = " ".join(output.split())
    assert code == 0 and "temperature, referral band alpha 0.3 from" in text, text
    assert "parity, calibrated P" in text


def test_export_without_the_calibrator_says_why(exported):
    assert read_exported_cfg(exported["without"]).calibrator is None
    assert read_exported_cfg(exported["with"]).calibrator is not None
    assert "left out (--no-calibrator)" in exported["without said"]
    assert "left out" not in exported["with said"]


@pytest.mark.parametrize("content, says", [
    ("{not json", "not valid JSON"),
    ('{"method": "temperature", "params": {"t": 1.0}, "alpha": 1.5, "quantile": 0.2}',
     "alpha=1.5 must be between 0 and 1"),
    ('{"method": "platt", "params": {"a": 1.0}}', "params must be exactly a, b"),
    ('{"method": "temperature", "params": {"t": 1.0}, "colour": "red"}',
     "needs method and params"),
    ('{"method": "temperature", "params": {"t": -2}}', "t=-2 must be positive"),
])
def test_a_bad_calibrator_json_is_named_in_one_line(fold, exported, tmp_path, content, says):
    bad = tmp_path / "calibrator.json"
    bad.write_text(content)
    image = tmp_path / "face.png"
    write_face(image)
    result = CliRunner().invoke(neopain_app, ["assess", str(image), "--model",
                                              str(exported["without"]), "--calibrator", str(bad)])
    output = result.output
    assert result.exit_code == 1 and "Traceback" not in output, output
    assert len(output.strip().splitlines()) == 1, output  # the one error line
    output = " ".join(output.split())
    assert f"error: {bad}: " in output and says in output, output
    broken_fold = tmp_path / "run" / "fold_0"
    broken_fold.mkdir(parents=True)
    (broken_fold / "model.pt").write_bytes((fold / "model.pt").read_bytes())
    (broken_fold / "calibrator.json").write_text(content)
    code, output = invoke("export", str(broken_fold), "--out", str(tmp_path / "m.onnx"))
    assert code == 1 and f"error: {broken_fold / 'calibrator.json'}: " in output, output
    assert says in output, output


@pytest.mark.parametrize("kind", REASONS)
def test_a_calibrator_that_is_no_regular_file_is_refused(exported, tmp_path, kind):
    image = tmp_path / "face.png"
    write_face(image)
    path = hostile(tmp_path / "calibrator.json", kind)
    code, output = invoke("assess", str(image), "--model", str(exported["without"]),
                          "--calibrator", str(path))
    assert code == 1 and f"error: {path}: {REASONS[kind]}" in output, output


def assessed(manifest: Path, model: Path, out: Path, *extra: str) -> pd.DataFrame:
    """``neopain assess`` of a manifest into ``out`` (.csv), read back with empty cells as ""."""
    code, output = invoke("assess", str(manifest), "--model", str(model), "--out", str(out),
                          *extra, seconds=300)
    assert code == 0, output
    return pd.read_csv(out, keep_default_na=False)


def test_assess_writes_kind_raw_p_and_set_from_the_embedded_calibrator(cohort6, exported,
                                                                       tmp_path):
    manifest = cohort6 / "manifest.csv"
    tables = {name: assessed(manifest, exported[name], tmp_path / f"{name}.csv")
              for name in ("with", "without")}
    calibrated, plain = tables["with"], tables["without"]
    assert (plain["prob_kind"] == "uncalibrated").all()
    assert (plain["prob_raw"] == "").all() and (plain["prediction_set"] == "").all()
    assert (calibrated["prob_kind"] == "calibrated").all()
    assert np.allclose(calibrated["prob_raw"].astype(float), plain["prob_pain"], atol=1e-6)
    calibrator = fitted()
    expected = calibrator.probability(logit_of(plain["prob_pain"]))
    assert np.allclose(calibrated["prob_pain"], expected, atol=1e-5)
    assert list(calibrated["prediction_set"]) == calibrator.prediction_sets(
        calibrated["prob_pain"])
    assert list(calibrated["label"]) == ["pain" if p >= 0.5 else "nopain"
                                         for p in calibrated["prob_pain"]]


def test_assess_applies_a_runs_calibrator_to_any_model(cohort6, exported, fold, tmp_path):
    manifest = cohort6 / "manifest.csv"
    out = tmp_path / "assessed.json"
    code, output = invoke("assess", str(manifest), "--model", str(exported["without"]),
                          "--calibrator", str(fold / "calibrator.json"), "--out", str(out),
                          seconds=300)
    assert code == 0, output
    text = " ".join(output.split())
    assert "P(pain) is a calibrated probability" in text, text
    records = pd.DataFrame(json.loads(out.read_text()))
    embedded = assessed(manifest, exported["with"], tmp_path / "embedded.csv")
    assert (records["prob_kind"] == "calibrated").all()
    assert np.allclose(records["prob_pain"], embedded["prob_pain"], atol=1e-5)
    assert list(records["prediction_set"]) == list(embedded["prediction_set"])
    assert records["model"].str.contains("calibrated").all()


def test_the_summary_says_what_kind_of_number_p_is(cohort6, exported):
    code, output = invoke("assess", str(cohort6 / "manifest.csv"), "--model",
                          str(exported["without"]), seconds=300)
    assert code == 0 and "the network's own probability, not calibrated" in " ".join(
        output.split()), output


def test_mc_passes_for_an_onnx_file_is_refused_clearly(exported, tmp_path):
    image = tmp_path / "face.png"
    write_face(image)
    code, output = invoke("assess", str(image), "--model", str(exported["with"]),
                          "--mc-passes", "5")
    assert code == 1 and "cannot run mc_passes=5 (MC dropout)" in " ".join(output.split())
    code, output = invoke("assess", str(image), "--model", str(exported["with"]),
                          "--mc-passes", "-1")
    assert code == 1 and "--mc-passes -1 must be 0" in output, output


def test_a_video_timeline_carries_kind_raw_p_and_set(exported, tmp_path):
    subjects = make_subjects(CohortSpec(subjects=2, seed=1))[:1]
    clips = generate_clips(tmp_path / "clips", subjects, clips=1,
                           clip=ClipSpec(seconds=8, fps=5), seed=0)
    out = tmp_path / "clip"
    code, output = invoke("assess", str(clips / "S001.mp4"), "--model", str(exported["with"]),
                          "--out", str(out), seconds=300)
    assert code == 0 and "P(pain) is a calibrated probability" in output, output
    timeline = pd.read_csv(out / "timeline.csv", keep_default_na=False)
    faces = timeline[timeline["face"] == 1]
    assert len(faces) > 0 and (faces["prob_kind"] == "calibrated").all()
    assert list(faces["prediction_set"]) == fitted().prediction_sets(faces["prob_pain"])
    assert np.allclose(fitted().probability(logit_of(faces["prob_raw"].astype(float))),
                       faces["prob_pain"], atol=1e-5)  # prob_raw written with 6 digits
    assert json.loads((out / "summary.json").read_text())["prob_kind"] == "calibrated"


def test_nfcs_output_is_labelled_a_score_until_a_calibrator_maps_it(fold, tmp_path):
    image = tmp_path / "face.png"
    write_face(image)
    code, output = invoke("assess", str(image), "--model", "nfcs", "--out",
                          str(tmp_path / "nfcs.csv"), seconds=300)
    assert code == 0 and "P(pain) is a rule-based score, not a probability" in output, output
    (score,) = pd.read_csv(tmp_path / "nfcs.csv", keep_default_na=False).to_dict("records")
    assert score["prob_kind"] == "score" and score["prob_raw"] == ""
    code, output = invoke("assess", str(image), "--model", "nfcs", "--calibrator",
                          str(fold / "calibrator.json"), "--out", str(tmp_path / "cal.csv"),
                          seconds=300)
    assert code == 0 and "P(pain) is a calibrated probability" in output, output
    (calibrated,) = pd.read_csv(tmp_path / "cal.csv", keep_default_na=False).to_dict("records")
    assert calibrated["prob_kind"] == "calibrated"
    assert calibrated["prob_raw"] == pytest.approx(score["prob_pain"])
    assert calibrated["prob_pain"] == pytest.approx(
        float(fitted().probability(logit_of(score["prob_pain"]))), abs=1e-6)
    assert calibrated["prediction_set"] == fitted().prediction_sets([calibrated["prob_pain"]])[0]
    code, output = invoke("assess", str(image), "--model", "nfcs", "--mc-passes", "3")
    assert code == 1 and "MC dropout" in output, output


def test_assess_with_a_run_folder_and_mc_passes_writes_each_faces_uncertainty(fold, tmp_path):
    """Point 4 of issue 20 at the command line: `--model runs/NAME --mc-passes N` (an ensemble
    with MC dropout) writes the predictive mean with its entropy and mutual information."""
    image = tmp_path / "face.png"
    write_face(image)
    out = tmp_path / "assessed.csv"
    code, output = invoke("assess", str(image), "--model", str(fold.parent), "--mc-passes", "4",
                          "--out", str(out), seconds=300)
    assert code == 0, output
    [row] = pd.read_csv(out).to_dict("records")
    assert row["prob_kind"] == "uncalibrated" and "4 MC-dropout passes" in row["model"]
    assert 0 < row["entropy"] <= np.log(2) + 1e-9
    assert 0 <= row["mutual_information"] <= row["entropy"]


def test_a_calibrator_fits_only_the_weights_it_was_fitted_on(cohort6, exported, fold,
                                                              tmp_path):
    # guards: a fold's temperature and band shown on another fold's network, an ensemble or
    # the NFCS scorer, as if that output were calibrated
    from neopain.data.manifest import sha256_file

    image = tmp_path / "face.png"
    write_face(image)
    own = fitted().to_dict() | {"fitted_on": {"fold": 0, "model": "ncnn",
                                              "model_sha256": sha256_file(fold / "model.pt")}}
    other = own | {"fitted_on": own["fitted_on"] | {"model_sha256": "0" * 64}}
    for name, data in (("own", own), ("other", other)):
        (tmp_path / f"{name}.json").write_text(json.dumps(data))
    for model in (fold / "model.pt", exported["without"]):
        code, output = invoke("assess", str(image), "--model", str(model), "--calibrator",
                              str(tmp_path / "own.json"), seconds=300)
        assert code == 0 and "P(pain) is a calibrated probability" in output, output
    for model, calibrator in ((fold / "model.pt", "other"), (exported["without"], "other"),
                              ("nfcs", "own")):
        code, output = invoke("assess", str(image), "--model", str(model), "--calibrator",
                              str(tmp_path / f"{calibrator}.json"), seconds=300)
        text = " ".join(output.split())
        assert code == 1 and "fitted on the outputs of the ncnn network of fold 0" in text, text
        assert "Traceback" not in output


def test_export_refuses_a_calibrator_fitted_on_other_weights(fold, tmp_path):
    # guards: a fold trained again after calibration shipping the old network's calibrator
    import shutil

    copy = tmp_path / "run" / "fold_0"
    shutil.copytree(fold, copy)
    shutil.copy(fold.parent / "config.yaml", copy.parent / "config.yaml")
    stale = fitted().to_dict() | {"fitted_on": {"fold": 0, "model": "ncnn",
                                                "model_sha256": "0" * 64}}
    (copy / "calibrator.json").write_text(json.dumps(stale))
    code, output = invoke("export", str(copy), "--out", str(tmp_path / "m.onnx"), seconds=300)
    text = " ".join(output.split())
    assert code == 1 and "fitted on other weights than this fold's model.pt" in text, text
    assert not (tmp_path / "m.onnx").exists()
    code, output = invoke("export", str(copy), "--out", str(tmp_path / "m.onnx"),
                          "--no-calibrator", seconds=300)
    assert code == 0, output
