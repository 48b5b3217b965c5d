"""Run folders in the training layout → load_run, evaluate_run, write_report: metrics recomputed
from predictions.csv (a stale metrics.json is named, not trusted), mean ± std equal to numpy's,
every report file written, and bad folders refused naming the file, line and column."""

from __future__ import annotations

import json
import math
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from neopain.data.tables import TableError
from neopain.evaluation.report import compare, evaluate_run, write_comparison, write_report
from neopain.runs import RunError, load_run
from neopain.runs.metrics import binary_metrics


def write_run(root: Path, *, accuracy: float = 0.8, folds: int = 4, images: int = 20,
              seed: int = 0, config: str = "model: ncnn\n") -> Path:
    """A run folder as `neopain train` writes it; each fold about ``accuracy`` correct."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True)
    (root / "config.yaml").write_text(config)
    for fold in range(folds):
        y = np.arange(images) % 2
        correct = rng.random(images) < accuracy
        confidence = rng.uniform(0.55, 0.99, images)
        prob = np.where(correct == (y == 1), confidence, 1 - confidence).round(6)
        rows = range(fold * images, (fold + 1) * images)
        folder = root / f"fold_{fold}"
        folder.mkdir()
        pd.DataFrame({
            "row": rows, "image": [f"faces/{r}.png" for r in rows],
            "subject": [f"S{fold:02d}{r % 2}" for r in rows],
            "label": np.where(y == 1, "pain", "nopain"), "prob_pain": prob,
            "pred": np.where(prob >= 0.5, "pain", "nopain"), "fold": fold,
        }).to_csv(folder / "predictions.csv", index=False)
        saved = {"accuracy": float(((prob >= 0.5) == y).mean())}
        (folder / "metrics.json").write_text(json.dumps(
            {"fold": fold, "metrics": saved, "epochs": 3, "seconds": 1.0}))
    return root


def fold_accuracies(run: Path) -> np.ndarray:
    """Accuracy per fold computed here with pandas only."""
    values = []
    for folder in sorted(run.glob("fold_*")):
        table = pd.read_csv(folder / "predictions.csv")
        values.append(((table["prob_pain"] >= 0.5) == (table["label"] == "pain")).mean())
    return np.array(values)


def test_report_files_hold_numpy_mean_and_sample_std(tmp_path):
    run = write_run(tmp_path / "ncnn", folds=5)
    written = write_report(load_run(run))
    names = {"summary.json", "report.md", "report.html", "figures/confusion.png",
             "figures/confusion_folds.png", "figures/roc.png", "figures/precision_recall.png",
             "figures/reliability.png", "figures/probabilities.png"}
    assert {p.relative_to(run).as_posix() for p in written.values()} == names
    for name in names:
        if name.endswith(".png"):
            assert cv2.imread(str(run / name)) is not None, name

    accuracy = fold_accuracies(run)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["folds"] == 5 and summary["images"] == 100
    metric = summary["metrics"]["accuracy"]
    assert metric["mean"] == pytest.approx(accuracy.mean())
    assert metric["std"] == pytest.approx(accuracy.std(ddof=1))
    assert 0 <= metric["ci95"][0] < metric["pooled"] < metric["ci95"][1] <= 1
    assert metric["ci_method"] == "BCa" and "subject-level bootstrap" in summary["ci"]
    assert [f["metrics"]["accuracy"] for f in summary["per_fold"]] == pytest.approx(accuracy)
    pooled = np.array(summary["pooled_confusion"])
    assert pooled.sum() == 100
    assert metric["pooled"] == pytest.approx(np.trace(pooled) / 100)

    markdown = (run / "report.md").read_text()
    row = f" | {accuracy.mean():.3f} ± {accuracy.std(ddof=1):.3f} | 5 |"
    assert "| metric | pooled | 95% CI | mean ± std over folds | folds |" in markdown
    assert row in markdown
    assert "figures/roc.png" in markdown
    html = (run / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 6  # self-contained: pictures embedded
    assert f"{accuracy.mean():.3f} ± {accuracy.std(ddof=1):.3f}" in html


def test_metrics_come_from_predictions_and_a_stale_metrics_json_is_named(tmp_path):
    run = write_run(tmp_path / "run")
    (run / "fold_2" / "metrics.json").write_text(json.dumps({"metrics": {"accuracy": 0.99}}))
    evaluation = evaluate_run(load_run(run))
    assert evaluation.per_fold.loc[2, "accuracy"] == pytest.approx(fold_accuracies(run)[2])
    stale = [n for n in evaluation.notes if "metrics.json" in n]
    assert len(stale) == 1 and stale[0].startswith("fold 2:") and "0.99" in stale[0]


def test_threshold_comes_from_the_config_and_a_mismatched_pred_column_is_noted(tmp_path):
    run = write_run(tmp_path / "run", config="model: ncnn\ncfg:\n  threshold: 0.7\n")
    loaded = load_run(run)
    assert loaded.threshold == 0.7
    evaluation = evaluate_run(loaded)
    y, prob = loaded.pooled()
    assert evaluation.summary["accuracy"].pooled == pytest.approx(((prob >= 0.7) == y).mean())
    assert any("'pred' values disagree with prob_pain >= 0.7" in n for n in evaluation.notes)


def test_a_fold_with_one_class_has_no_auc_and_the_mean_uses_the_other_folds(tmp_path):
    run = write_run(tmp_path / "run", folds=3)
    table = pd.read_csv(run / "fold_1" / "predictions.csv")
    table["label"] = "nopain"
    table.to_csv(run / "fold_1" / "predictions.csv", index=False)
    evaluation = evaluate_run(load_run(run))
    auc = evaluation.per_fold["auc"]
    assert math.isnan(auc[1]) and evaluation.summary["auc"].n == 2
    assert evaluation.summary["auc"].mean == pytest.approx(auc[[0, 2]].mean())
    assert any(n.startswith("fold 1: no pain images") for n in evaluation.notes)
    summary = json.loads(json.dumps(evaluation.to_dict()))  # NaN must be valid JSON (null)
    assert summary["per_fold"][1]["metrics"]["auc"] is None


def edit_predictions(run: Path, fold: int, change) -> Path:
    path = run / f"fold_{fold}" / "predictions.csv"
    table = pd.read_csv(path, dtype=str, keep_default_na=False)
    change(table)
    table.to_csv(path, index=False)
    return path


@pytest.mark.parametrize(("change", "says"), [
    (lambda t: t.drop(columns="prob_pain", inplace=True), "column 'prob_pain': column missing"),
    (lambda t: t.loc.__setitem__((3, "label"), "hurts"),
     "line 5, column 'label': 'hurts' is not a label; valid: pain, nopain"),
    (lambda t: t.loc.__setitem__((0, "prob_pain"), "1.5"),
     "line 2, column 'prob_pain': '1.5' is not a probability in [0, 1]"),
    (lambda t: t.loc.__setitem__((1, "fold"), "3"),
     "line 3, column 'fold': '3' differs from the folder's fold 1"),
])
def test_bad_predictions_are_refused_naming_file_line_and_column(tmp_path, change, says):
    run = write_run(tmp_path / "run")
    path = edit_predictions(run, 1, change)
    with pytest.raises(TableError) as error:
        load_run(run)
    assert error.value.path == path
    assert says in str(error.value)


def test_bad_layouts_are_refused_naming_what_is_missing(tmp_path):
    with pytest.raises(RunError, match="run folder not found"):
        load_run(tmp_path / "nothing")
    run = write_run(tmp_path / "run")
    (run / "fold_3" / "predictions.csv").unlink()
    with pytest.raises(RunError, match=r"fold_3/predictions.csv: file not found"):
        load_run(run)
    (run / "config.yaml").unlink()
    with pytest.raises(RunError, match="config.yaml: file not found"):
        load_run(run)
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "config.yaml").write_text("model: ncnn\n")
    with pytest.raises(RunError, match="no fold_K folders"):
        load_run(empty)


def test_an_image_tested_in_two_folds_is_refused(tmp_path):
    run = write_run(tmp_path / "run")
    edit_predictions(run, 2, lambda t: t.loc.__setitem__((0, "row"), "5"))  # fold 0's row 5
    with pytest.raises(RunError, match="row '5' is a test prediction of both fold 0 and fold 2"):
        load_run(run)


def test_compare_finds_the_better_run_and_writes_box_plots(tmp_path):
    good = load_run(write_run(tmp_path / "good", accuracy=0.95, folds=6, seed=1))
    poor = load_run(write_run(tmp_path / "poor", accuracy=0.6, folds=6, seed=2))
    twin = load_run(write_run(tmp_path / "twin", accuracy=0.95, folds=6, seed=1))
    result = compare([good, poor, twin])
    pairs = {(p.a, p.b): p for p in result["accuracy"].pairs}
    assert pairs["good", "poor"].significant and pairs["good", "poor"].difference > 0.2
    assert not pairs["good", "twin"].significant
    assert pairs["good", "twin"].p == pytest.approx(1.0)
    written = write_comparison([good, poor, twin], result, tmp_path / "cmp")
    assert cv2.imread(str(written["accuracy"])) is not None
    saved = json.loads(written["json"].read_text())
    assert saved["accuracy"]["anova"]["p"] == pytest.approx(result["accuracy"].p)


def test_compare_refuses_a_single_fold_run(tmp_path):
    one = load_run(write_run(tmp_path / "one", folds=1))
    other = load_run(write_run(tmp_path / "other"))
    with pytest.raises(Exception, match=r"at least 2 folds to compare; too few: .*one \(1 fold\)"):
        compare([one, other])


def test_a_metrics_json_from_before_the_calibration_metrics_is_no_mismatch(tmp_path):
    run = write_run(tmp_path / "run", folds=3)
    loaded = load_run(run)
    old = {"accuracy", "precision", "recall", "specificity", "f1", "auc", "balanced_accuracy",
           "brier"}
    for fold in loaded.folds:  # an old run's metrics.json: right values, no nll/ece/ece_mass/mce
        values = binary_metrics(fold.y_true, fold.prob)
        (fold.path / "metrics.json").write_text(json.dumps(
            {"fold": fold.index, "metrics": {k: v for k, v in values.items() if k in old}}))
    assert not [n for n in evaluate_run(load_run(run)).notes if "metrics.json" in n]

    saved = json.loads((run / "fold_1" / "metrics.json").read_text())
    saved["metrics"]["ece"] = 0.5  # a key that is there and differs is still named
    (run / "fold_1" / "metrics.json").write_text(json.dumps(saved))
    stale = [n for n in evaluate_run(load_run(run)).notes if "metrics.json" in n]
    assert len(stale) == 1 and stale[0].startswith("fold 1: metrics.json says ece = 0.5")


def test_every_report_states_how_its_intervals_were_made_and_keeps_them_in_range(tmp_path):
    # guards: the report gave recall "0.736 ± 0.311, 95 % CI [0.350, 1.123]" (a t interval of
    # the mean over 5 folds); the interval is now the pooled value's subject-level bootstrap
    run = write_run(tmp_path / "run", folds=5, images=6, accuracy=0.7, seed=4)
    evaluation = evaluate_run(load_run(run))
    for name, s in evaluation.summary.items():
        if name != "nll":
            assert 0.0 <= s.ci_low <= s.pooled <= s.ci_high <= 1.0, (name, s)
    write_report(load_run(run))
    flat = {name: " ".join((run / name).read_text().split())
            for name in ("report.md", "report.html", "summary.json")}
    for name, text in flat.items():
        assert "subject-level bootstrap of the pooled predictions (2000 resamples" in text, name


def test_predictions_without_subjects_are_resampled_by_image_and_a_note_says_so(tmp_path):
    run = write_run(tmp_path / "run", folds=3)
    for folder in run.glob("fold_*"):
        table = pd.read_csv(folder / "predictions.csv").drop(columns="subject")
        table.to_csv(folder / "predictions.csv", index=False)
    evaluation = evaluate_run(load_run(run))
    assert evaluation.ci_text.startswith("image-level bootstrap")
    assert any("no subject" in note and "too narrow" in note for note in evaluation.notes)
    assert evaluation.summary["accuracy"].ci_method == "BCa"
