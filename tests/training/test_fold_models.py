"""Fold models: ``run_cv`` runs any registered one through ``FoldModel`` alone (a model added
by registration needs no code elsewhere), every kind reports progress through one hook, and the
layers stay apart (training and scoring import neither each other nor the layers above)."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from run_progress import Recorder

from neopain.cli.app import app as neopain_app
from neopain.errors import NeopainError
from neopain.runs import (
    PREDICTION_COLUMNS,
    FoldContext,
    FoldModel,
    FoldPredictions,
    fold_model,
    load_run,
    oof_leaks,
)
from neopain.training import ConfigError, TrainConfig, run_cv

SRC = Path(__file__).resolve().parents[2] / "src" / "neopain"


class ConstantFoldModel(FoldModel):
    """A fold model from elsewhere: P(pain) = the share of pain among its training rows."""

    trains = False
    seen: list[tuple[int, set, set]] = []

    def fit(self, fold: FoldContext) -> ConstantFoldModel:
        labels = fold.manifest.table["label"].iloc[fold.train]
        self.prob_ = float((labels == "pain").mean())
        self.seen.append((fold.index, set(fold.subjects(fold.train)),
                          set(fold.subjects(fold.test))))
        return self

    def predict(self, fold: FoldContext) -> FoldPredictions:
        for done in range(1, len(fold.test) + 1):
            fold.report("guessing", done=done, total=len(fold.test))
        return FoldPredictions(prob=np.full(len(fold.test), self.prob_), threshold=0.5,
                               columns={"guess": ["yes"] * len(fold.test)},
                               summary={"rows": len(fold.test)})

    def record(self, folds):
        return {"folds": [fold.index for fold in folds]}

    def notes(self, folds):
        return [f"guessed {sum(fold.summary['rows'] for fold in folds)} row(s)"]


@pytest.fixture()
def constant_registered(monkeypatch):
    """``constant`` registered next to the installed fold models, as an entry point would."""
    installed = fold_model.other_fold_models()
    monkeypatch.setattr(fold_model, "other_fold_models",
                        lambda: {**installed, "constant": ConstantFoldModel})
    ConstantFoldModel.seen = []


def test_a_fold_model_registered_elsewhere_runs_through_run_cv_unchanged(cohort6, tmp_path,
                                                                          constant_registered):
    """run_cv once chose the NFCS scorer by comparing the model name with "nfcs"; any other
    model that was not a network could not be run without changing training."""
    out = tmp_path / "run"
    progress = Recorder()
    result = run_cv(TrainConfig(model="constant", manifest=cohort6 / "manifest.csv",
                                folds=cohort6 / "folds.json", out=out), progress=progress)
    plan = json.loads((cohort6 / "folds.json").read_text())
    assert [fold.index for fold in result.folds] == [0, 1, 2]
    rows = []
    for fold, (index, trained_on, tested_on) in zip(plan["folds"], ConstantFoldModel.seen):
        assert index == fold["index"] and trained_on == set(fold["train"])
        assert tested_on == set(fold["test"]) and not trained_on & tested_on
        table = pd.read_csv(out / f"fold_{index}" / "predictions.csv", dtype=str)
        assert list(table.columns) == [*PREDICTION_COLUMNS, "guess"]
        assert set(table["subject"]) == set(fold["test"]) and set(table["guess"]) == {"yes"}
        validation = pd.read_csv(out / f"fold_{index}" / "validation.csv", dtype=str)
        assert list(validation.columns) == [*PREDICTION_COLUMNS, "guess"]
        assert set(validation["subject"]) == set(fold["val"])
        metrics = json.loads((out / f"fold_{index}" / "metrics.json").read_text())
        assert list(metrics) == ["fold", "metrics", "epochs", "seconds", "rows"]
        assert metrics["epochs"] == 0 and metrics["rows"] == len(table)
        rows.append(len(table))
    assert result.record == out / "constant.json"
    assert json.loads(result.record.read_text()) == {"folds": [0, 1, 2]}
    assert result.notes == (f"guessed {sum(rows)} row(s)",)
    assert progress.calls[0] == ("start", "constant", 3, False)
    assert [call for call in progress.calls if call[0] == "end"] == [("end", 0), ("end", 1),
                                                                     ("end", 2)]
    subjects = pd.read_csv(cohort6 / "manifest.csv", dtype=str)["subject"]
    validation = int(subjects.isin(plan["folds"][1]["val"]).sum())  # then its validation rows
    assert validation > 0
    assert [call for call in progress.calls if call[:2] == ("step", 1)] == [
        *[("step", 1, "guessing", done, rows[1]) for done in range(1, rows[1] + 1)],
        *[("step", 1, "validation guessing", done, validation)
          for done in range(1, validation + 1)]]
    assert len(load_run(out).folds) == 3 and oof_leaks(out) == []


def test_the_cli_trains_a_registered_fold_model_without_knowing_its_name(cohort6, tmp_path,
                                                                         constant_registered):
    out = tmp_path / "cli"
    result = CliRunner().invoke(neopain_app, [
        "train", "--model", "constant", "--manifest", str(cohort6 / "manifest.csv"),
        "--folds", str(cohort6 / "folds.json"), "--out", str(out), "--epochs", "3"])
    assert result.exit_code == 0, result.output
    said = " ".join(result.output.split())
    assert "note: constant does not train; --epochs ignored" in said
    assert "guessed" in said and "scoring with constant" in said
    wrote = (f"wrote {out}/config.yaml, constant.json and fold_K/ (predictions.csv, "
             "validation.csv, metrics.json); next: neopain evaluate")
    assert "".join(wrote.split()) in "".join(said.split())  # a long path wraps anywhere


def test_the_run_config_names_every_fold_model_when_one_is_unknown(tmp_path,
                                                                    constant_registered):
    paths = {"manifest": tmp_path / "m.csv", "folds": tmp_path / "f.json", "out": tmp_path}
    with pytest.raises(ConfigError, match=r"model='nope' is not valid; valid: .*ncnn.*, "
                                          r"constant, nfcs"):
        TrainConfig(model="nope", **paths)
    assert TrainConfig(model="constant", **paths).model == "constant"


def test_a_network_reports_its_epochs_and_batches_through_the_same_hook(cohort6, tmp_path):
    progress = Recorder()
    run_cv(TrainConfig(model="ncnn", manifest=cohort6 / "manifest.csv",
                       folds=cohort6 / "folds.json", out=tmp_path / "run", fold=1, epochs=2,
                       batch_size=4, device="cpu"), progress=progress)
    assert progress.calls[0] == ("start", "ncnn", 1, True)
    assert progress.calls[-1] == ("end", 1)
    steps = [call for call in progress.calls if call[0] == "step"]
    assert {call[2] for call in steps} == {"epoch 1/2", "epoch 2/2"}
    assert all(call[1] == 1 for call in steps)
    assert ("step", 1, "epoch 2/2", 0, None) in steps  # an epoch starts with an unknown total
    assert any(call[3] == call[4] for call in steps)  # and its batches end at their count


def _imported_packages(path: Path) -> set[str]:
    """The neopain packages a module imports (``neopain.X`` → X), lazy imports included."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names = ([alias.name for alias in node.names] if isinstance(node, ast.Import)
                 else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
        found |= {name.split(".")[1] for name in names
                  if name.startswith("neopain.") and name.count(".") >= 1}
    return found


@pytest.mark.parametrize("package, forbidden", [
    ("runs", {"training", "scoring", "evaluation", "export", "explain", "prediction",
              "monitor", "store", "server", "cli"}),
    ("training", {"scoring", "evaluation", "export", "explain", "monitor", "store", "server",
                  "cli"}),
    ("scoring", {"training", "evaluation", "export", "explain", "monitor", "store", "server",
                 "cli"}),
])
def test_training_and_scoring_import_neither_each_other_nor_the_layers_above(package,
                                                                            forbidden):
    """training.cv imported evaluation (prediction_table, binary_metrics) and dispatched to
    scoring.runs, which imported training back: an import circle between packages."""
    offenders = {f"{path.relative_to(SRC)} imports neopain.{name}"
                 for path in (SRC / package).rglob("*.py")
                 for name in _imported_packages(path) & forbidden}
    assert not offenders, sorted(offenders)


class CountingMesh:
    """A face mesh that finds no face and counts how many are opened and closed."""

    opened: list[CountingMesh] = []
    fail_after: int | None = None

    def __init__(self, **options) -> None:
        self.calls, self.closed = 0, False
        CountingMesh.opened.append(self)

    def landmarks(self, image):
        assert not self.closed, "a closed mesh was used"
        self.calls += 1
        if CountingMesh.fail_after is not None and self.calls > CountingMesh.fail_after:
            raise RuntimeError("the mesh broke")
        return None

    def close(self) -> None:
        self.closed = True

    def __enter__(self) -> CountingMesh:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@pytest.mark.parametrize("fails", [False, True], ids=["finished", "failed-in-the-last-fold"])
def test_one_face_mesh_serves_an_nfcs_run_and_is_closed_when_it_ends(cohort6, tmp_path,
                                                                     monkeypatch, fails):
    """As a fold model, the NFCS scorer opened a face mesh (a MediaPipe graph) per fold, where
    the run it replaced opened one for the whole run; the mesh must be freed however the run
    ends."""
    import neopain.faces.landmarks
    from neopain.data.manifest import load_manifest

    subjects = load_manifest(cohort6 / "manifest.csv").table["subject"]
    plan = json.loads((cohort6 / "folds.json").read_text())
    # each image is scored once as a test image and once per fold that validates on it
    images = len(subjects) + sum(int(subjects.isin(fold["val"]).sum()) for fold in plan["folds"])
    monkeypatch.setattr(neopain.faces.landmarks, "FaceMesh", CountingMesh)
    monkeypatch.setattr(CountingMesh, "opened", [])
    monkeypatch.setattr(CountingMesh, "fail_after", images - 1 if fails else None)
    config = TrainConfig(model="nfcs", manifest=cohort6 / "manifest.csv",
                         folds=cohort6 / "folds.json", out=tmp_path / "run")
    if not fails:
        result = run_cv(config)
        assert len(result.folds) == 3
        scored = sum(len(pd.read_csv(fold.path / name)) for fold in result.folds
                     for name in ("predictions.csv", "validation.csv"))
        assert CountingMesh.opened[0].calls == scored == images
    else:
        with pytest.raises(RuntimeError, match="the mesh broke"):
            run_cv(config)
    assert len(CountingMesh.opened) == 1 and CountingMesh.opened[0].closed


def test_train_ends_with_one_line_when_the_run_cannot_be_calibrated(cohort6, tmp_path,
                                                                    constant_registered):
    """The tiny cohort's folds validate on one subject (3-4 images): too few to calibrate.
    The run is written, then the calibration's refusal is one line naming the file."""
    import yaml

    out = tmp_path / "cli"
    run_yaml = tmp_path / "run.yaml"
    run_yaml.write_text(yaml.safe_dump({"calibration": {"method": "temperature"}}))
    result = CliRunner().invoke(neopain_app, [
        "train", "--config", str(run_yaml), "--model", "constant", "--manifest",
        str(cohort6 / "manifest.csv"), "--folds", str(cohort6 / "folds.json"), "--out",
        str(out)])
    assert result.exit_code == 1, result.output
    said = " ".join(result.output.split())
    assert "error:" in said and "validation.csv:" in said and "needs at least 10" in said
    assert said.count("error:") == 1 and "Traceback" not in result.output
    assert len(load_run(out).folds) == 3 and not (out / "fold_0" / "calibrator.json").exists()


def test_a_network_that_answers_every_face_alike_is_trained_again_then_told_of(cohort6,
                                                                              tmp_path):
    # guards: a fold whose network died in training (one output for most faces) passing
    # silently into evaluation, calibration and the referral band
    from neopain.training.networks import same_output_share

    assert same_output_share(np.array([0.3, 0.3, 0.3000000001, 2.0])) == 0.75
    assert same_output_share(np.array([0.1, 0.2])) == 0.5
    assert same_output_share(np.array([])) == 0.0
    # Adam at lr 0.1 kills N-CNN's 8-unit ReLU head within a few epochs (no fresh start here)
    dead = run_cv(TrainConfig(model="ncnn", manifest=cohort6 / "manifest.csv",
                              folds=cohort6 / "folds.json", out=tmp_path / "dead", fold=0,
                              epochs=5, batch_size=8, lr=0.1, device="cpu", restarts=0))
    [fold] = dead.folds
    written = json.loads((fold.path / "metrics.json").read_text())
    assert written["same_output"] == fold.summary["same_output"] == 1.0
    assert written["restarts"] == 0 and not (fold.path / "restarts.json").exists()
    assert [note for note in dead.notes if "fold 0" in note] == [
        "note: fold 0: the network gives 100% of its faces one and the same output (its ReLU "
        "units died in training); train it again with optimizer: sgd in the run config, a "
        "lower --lr or another --seed"]
    healthy = run_cv(TrainConfig(model="ncnn", manifest=cohort6 / "manifest.csv",
                                 folds=cohort6 / "folds.json", out=tmp_path / "sgd", fold=0,
                                 epochs=2, batch_size=8, lr=0.01, optimizer="sgd",
                                 device="cpu"))
    assert set(healthy.folds[0].summary) == {"same_output", "restarts", "checked_same_output"}
    assert healthy.folds[0].summary["restarts"] == 0
    assert healthy.folds[0].summary["same_output"] < 0.5 and not healthy.notes
    assert not (healthy.folds[0].path / "restarts.json").exists()


def test_a_fold_started_again_trains_anew_and_resumes_to_the_same_network(cohort6, tmp_path,
                                                                          monkeypatch):
    # guards: a restart that reuses the dead start's seed (the same dead network again), keeps
    # its checkpoint or history, or a resumed run that forgets which start it was on
    import torch

    from neopain.training import networks

    real = networks.same_output_share
    checks: list[int] = []

    def first_start_dead(logit):  # the check after fit: dead on the first start only
        checks.append(1)
        return 1.0 if len(checks) == 1 else real(logit)

    def train(out, epochs=2):
        return run_cv(TrainConfig(model="ncnn", manifest=cohort6 / "manifest.csv",
                                  folds=cohort6 / "folds.json", out=out, fold=0, epochs=epochs,
                                  batch_size=8, lr=0.01, optimizer="sgd", device="cpu"))

    plain = train(tmp_path / "plain")
    monkeypatch.setattr(networks, "same_output_share", first_start_dead)
    again = train(tmp_path / "again")
    [fold] = again.folds
    assert fold.summary["restarts"] == 1
    assert json.loads((fold.path / "restarts.json").read_text())["given_up"][0]["start"] == 0
    assert len((fold.path / "history.csv").read_text().splitlines()) == 1 + 2  # one start's
    weights = [torch.load(path / "fold_0" / "model.pt", weights_only=False)["state_dict"]
               for path in (tmp_path / "plain", tmp_path / "again")]
    assert any(not torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
    assert list(again.notes) == ["note: fold 0: 1 start answered most validation faces alike "
                                 "(dead ReLU units); trained again from a fresh start "
                                 "(fold_0/restarts.json)"]
    # a resumed run reads which start it is on: the same network as the uninterrupted one
    checks.clear()
    checks.append(1)  # no more dead starts
    resumed = tmp_path / "resumed"
    (resumed / "fold_0").mkdir(parents=True)
    (resumed / "fold_0" / "restarts.json").write_text(
        (fold.path / "restarts.json").read_text())
    train(resumed)
    again_weights = torch.load(resumed / "fold_0" / "model.pt", weights_only=False)
    assert all(torch.equal(again_weights["state_dict"][k], weights[1][k]) for k in weights[1])
    assert plain.folds[0].summary["restarts"] == 0
    # every start dead: ``restarts`` fresh starts, each listed, and the fold told of
    monkeypatch.setattr(networks, "same_output_share", lambda logit: 1.0)
    dead = run_cv(TrainConfig(model="ncnn", manifest=cohort6 / "manifest.csv",
                              folds=cohort6 / "folds.json", out=tmp_path / "dead", fold=0,
                              epochs=1, batch_size=8, device="cpu", restarts=2))
    [fold] = dead.folds
    given_up = json.loads((fold.path / "restarts.json").read_text())["given_up"]
    assert [start["start"] for start in given_up] == [0, 1] and fold.summary["restarts"] == 2
    assert "one and the same output after 3 starts" in dead.notes[0]
    # a restarts.json the run did not write is named, not trusted or a traceback
    (fold.path / "restarts.json").write_text('{"given_up": 3}')
    with pytest.raises(NeopainError, match="restarts.json: not a restarts.json this run wrote"):
        run_cv(TrainConfig(model="ncnn", manifest=cohort6 / "manifest.csv",
                           folds=cohort6 / "folds.json", out=tmp_path / "dead", fold=0,
                           epochs=1, batch_size=8, device="cpu"))


def test_the_validation_faces_checked_after_training_are_predicted_once(cohort6, tmp_path,
                                                                         monkeypatch):
    # guards: a second inference pass over the validation faces (the fresh-start check, then
    # validation.csv), costly for a large network on a CPU
    from neopain.training import networks
    from neopain.training.trainer import Trainer

    monkeypatch.setattr(networks, "MIN_CHECKED", 1)  # judge by cohort6's few validation faces
    passes: list[int] = []
    real = Trainer.predict_with_logit

    def counted(self, dataset, *args, **kwargs):
        passes.append(len(dataset))
        return real(self, dataset, *args, **kwargs)

    monkeypatch.setattr(Trainer, "predict_with_logit", counted)
    [fold] = run_cv(TrainConfig(model="ncnn", manifest=cohort6 / "manifest.csv",
                                folds=cohort6 / "folds.json", out=tmp_path / "run", fold=0,
                                epochs=1, batch_size=8, device="cpu")).folds
    validation = pd.read_csv(fold.path / "validation.csv")
    test = pd.read_csv(fold.path / "predictions.csv")
    assert sorted(passes) == sorted([len(validation), len(test)]), passes
