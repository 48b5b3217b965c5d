"""`neopain evaluate` on a calibrated run prints raw against calibrated metrics and the conformal
coverage per fold and pooled; `neopain compare` names the run with the lower ECE as the better
one."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from neopain.evaluation.calibration import set_summary

from evaluation.test_calibration_report import calibrate_folds, honest, set_probabilities, sharp
from evaluation.test_report import write_run
from cli_invoke import invoke as run


def test_evaluate_prints_calibrated_metrics_and_pooled_coverage(tmp_path):
    folder = calibrate_folds(write_run(tmp_path / "run", folds=3, images=40), alpha=0.1)
    code, output = run("evaluate", str(folder))
    assert code == 0, output
    assert "calibrated by temperature" in output
    tables = [pd.read_csv(f / "predictions.csv", dtype=str) for f in sorted(folder.glob("fold_*"))]
    y = np.concatenate([(t["label"] == "pain").to_numpy(int) for t in tables])
    pooled = set_summary(y, [s for t in tables for s in t["prediction_set"]])
    assert re.search(rf"│\s+pooled\s+│\s+120\s+│\s+90\.0%\s+│\s+{100 * pooled['coverage']:.1f}%\s+│"
                     rf"\s+{100 * pooled['referral']:.1f}%\s+│", output), output
    assert re.search(r"│ ece ↓\s+│ [\d.]+ ± [\d.]+ │ [\d.]+ ± [\d.]+ │", output), output
    # the calibrated pooled metrics carry their own subject-level interval, within [0, 1]
    low, high = map(float, re.search(r"│ accuracy\s+│[^│]+│[^│]+│[^│]+│ [\d.]+ "
                                     r"\[([\d.]+), ([\d.]+)\] │", output).groups())
    assert 0.0 <= low <= high <= 1.0, output


def test_compare_says_the_run_with_the_lower_ece_is_better(tmp_path):
    folders = [set_probabilities(write_run(tmp_path / name, folds=5, images=100), make)
               for name, make in (("honest", honest), ("sharp", sharp))]
    code, output = run("compare", *map(str, folders), "--metric", "ece")
    assert code == 0, output
    assert re.search(r"│ ece ↓\s+│[^│]+│[^│]+│[^│]+│[^│]+│ honest\s+│", output), output
    assert "ece ↓: honest is better than sharp" in output
