"""``neopain evaluate`` and ``neopain compare`` through the Typer app: the numbers printed are the
fold statistics, compare prints F, p and Tukey pairs per metric, and bad runs exit 1 with a
message naming the file (never a traceback)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from neopain.cli.app import app as neopain_app
from neopain.runs.metrics import METRICS


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(neopain_app, list(args))
    assert "Traceback" not in result.output
    assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit)
    return result.exit_code, result.output


def write_run(root: Path, *, accuracies: list[float], images: int = 20) -> Path:
    """A run folder in the training layout whose fold K has exactly ``accuracies[K]`` correct."""
    root.mkdir(parents=True)
    (root / "config.yaml").write_text("model: ncnn\n")
    for fold, accuracy in enumerate(accuracies):
        y = np.arange(images) % 2
        wrong = np.arange(images) >= round(accuracy * images)
        prob = np.where((y == 1) != wrong, 0.8, 0.2) + np.linspace(0, 0.1, images)
        folder = root / f"fold_{fold}"
        folder.mkdir()
        rows = range(fold * images, (fold + 1) * images)
        pd.DataFrame({"row": rows, "image": [f"{r}.png" for r in rows],
                      "subject": [f"S{fold}{r % 4}" for r in rows],  # 4 infants a fold
                      "label": np.where(y == 1, "pain", "nopain"), "prob_pain": prob.round(6),
                      "pred": np.where(prob >= 0.5, "pain", "nopain"), "fold": fold,
                      }).to_csv(folder / "predictions.csv", index=False)
    return root


GOOD = [0.95, 0.9, 1.0, 0.9, 0.95]
POOR = [0.6, 0.7, 0.65, 0.55, 0.6]


def test_evaluate_prints_mean_std_ci_and_folds_and_writes_the_report(tmp_path):
    folder = write_run(tmp_path / "ncnn", accuracies=GOOD)
    code, output = run("evaluate", str(folder))
    assert code == 0, output
    mean, std = np.mean(GOOD), np.std(GOOD, ddof=1)
    # pooled (= the mean: equal folds) │ bootstrap CI │ mean ± std │ folds
    assert re.search(rf"accuracy\s+│\s+{mean:.3f}\s+│\s+\[[\d.]+, [\d.]+\]\s+│\s+{mean:.3f} ± "
                     rf"{std:.3f}\s+│\s+5\s+│", output), output
    assert "subject-level bootstrap" in " ".join(output.split())
    for fold, accuracy in enumerate(GOOD):
        assert re.search(rf"│\s+{fold}\s+│\s+20\s+│\s+{accuracy:.3f}\s+│", output), output
    for name in ("summary.json", "report.md", "report.html", "figures/roc.png",
                 "figures/confusion.png"):
        assert (folder / name).is_file(), name


def test_evaluate_json_prints_only_the_summary(tmp_path):
    folder = write_run(tmp_path / "ncnn", accuracies=GOOD)
    code, output = run("evaluate", str(folder), "--json")
    assert code == 0, output
    printed = json.loads(output)
    assert printed == json.loads((folder / "summary.json").read_text())
    assert printed["metrics"]["accuracy"]["mean"] == pytest.approx(np.mean(GOOD))
    assert set(printed["metrics"]) == set(METRICS)


def test_evaluate_a_bad_run_exits_1_naming_the_file_line_and_column(tmp_path):
    folder = write_run(tmp_path / "ncnn", accuracies=GOOD)
    path = folder / "fold_2" / "predictions.csv"
    path.write_text(path.read_text().replace(",pain,", ",ouch,", 1))
    code, output = run("evaluate", str(folder))
    assert code == 1
    flat = " ".join(output.split())
    assert "fold_2" in flat and "ouch" in flat and "label" in flat and "error:" in flat
    code, output = run("evaluate", str(tmp_path / "missing"))
    assert code == 1 and "run folder not found" in output


def test_compare_prints_f_p_and_a_significant_tukey_pair_per_metric(tmp_path):
    good = write_run(tmp_path / "good", accuracies=GOOD)
    poor = write_run(tmp_path / "poor", accuracies=POOR)
    code, output = run("compare", str(good), str(poor), "--out", str(tmp_path / "cmp"))
    assert code == 0, output
    assert "F" in output and "Tukey HSD" in output
    f_accuracy = re.search(r"│ accuracy\s+│[^│]+│[^│]+│\s+([\d.]+)\s+│\s+(<0\.001|[\d.]+)\s+│",
                           output)
    assert f_accuracy, output
    between = 5 * ((np.mean(GOOD) - np.mean(GOOD + POOR)) ** 2 +
                   (np.mean(POOR) - np.mean(GOOD + POOR)) ** 2)
    within = (np.var(GOOD, ddof=1) + np.var(POOR, ddof=1)) / 2
    assert float(f_accuracy.group(1)) == pytest.approx(between / within, abs=0.01)
    difference = np.mean(GOOD) - np.mean(POOR)
    assert re.search(rf"│ accuracy\s+│ good │ poor │\s+{difference:.3f}\s+│.*│\s+yes\s+│", output)
    for metric in ("precision", "recall", "specificity", "f1", "auc", "balanced_accuracy"):
        assert re.search(rf"│ {metric}\s+│ good │ poor │", output), metric
    assert (tmp_path / "cmp" / "box_accuracy.png").is_file()


def test_compare_json_says_runs_from_one_distribution_do_not_differ(tmp_path):
    first = write_run(tmp_path / "first", accuracies=GOOD)
    second = write_run(tmp_path / "second", accuracies=GOOD[::-1])
    code, output = run("compare", str(first), str(second), "--json", "--metric", "accuracy")
    assert code == 0, output
    result = json.loads(output)
    assert list(result) == ["accuracy"]
    pair = result["accuracy"]["tukey"][0]
    assert (pair["a"], pair["b"], pair["significant"]) == ("first", "second", False)
    assert result["accuracy"]["anova"]["p"] == pytest.approx(1.0)


def test_compare_needs_two_runs_with_two_folds_each(tmp_path):
    good = write_run(tmp_path / "good", accuracies=GOOD)
    code, output = run("compare", str(good))
    assert code == 1 and "at least 2 run folders; got 1" in output
    single = write_run(tmp_path / "single", accuracies=[0.9])
    code, output = run("compare", str(good), str(single))
    assert code == 1 and "single (1 fold)" in " ".join(output.split())
    code, output = run("compare", str(good), str(good), "--metric", "speed")
    assert code == 1 and "unknown metric speed; valid: accuracy" in output
