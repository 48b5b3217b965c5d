"""``neopain calibrate`` through the Typer app: a table of each fold's ECE, accuracy and AUC
before → after, coverage and referral; every bad input ends with one ``error:`` line naming what
to fix and exit 1, never a traceback."""

from __future__ import annotations

from pathlib import Path
from unittest import mock

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from neopain.cli.app import app as neopain_app
from neopain.cli.console import console, err_console


def run(*args: str) -> tuple[int, list[str]]:
    """Exit code and the output's non-blank lines (wide consoles: no wrapping)."""
    with mock.patch.object(console, "_width", 400), mock.patch.object(err_console, "_width", 400):
        result = CliRunner().invoke(neopain_app, list(args))
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    return result.exit_code, [line for line in result.output.splitlines() if line.strip()]


def predictions(rows: range, *, fold: int, subject: str, rng) -> pd.DataFrame:
    """Overconfident predictions (logit ±4, right 3 times in 4) of ``rows``."""
    y = rng.integers(0, 2, len(rows))
    z = np.where((y == 1) != (rng.random(len(rows)) < 0.25), 4.0, -4.0) + rng.normal(0, .3,
                                                                                     len(rows))
    p = 1 / (1 + np.exp(-z))
    return pd.DataFrame({"row": rows, "image": [f"{r}.png" for r in rows],
                         "subject": [f"{subject}{r % 3}" for r in rows],
                         "label": np.where(y == 1, "pain", "nopain"),
                         "prob_pain": [f"{v:.6f}" for v in p],
                         "logit_pain": [f"{v:.6f}" for v in z],
                         "pred": np.where(p >= 0.5, "pain", "nopain"), "fold": fold})


def write_run(root: Path, *, folds: int = 2, images: int = 30) -> Path:
    """A run folder as training writes it: predictions.csv and validation.csv per fold."""
    rng = np.random.default_rng(0)
    root.mkdir(parents=True)
    (root / "config.yaml").write_text("model: ncnn\n")
    for fold in range(folds):
        folder = root / f"fold_{fold}"
        folder.mkdir()
        start = fold * 2 * images
        predictions(range(start, start + images), fold=fold, subject=f"T{fold}_",
                    rng=rng).to_csv(folder / "predictions.csv", index=False)
        predictions(range(start + images, start + 2 * images), fold=fold, subject=f"V{fold}_",
                    rng=rng).to_csv(folder / "validation.csv", index=False)
    return root


def test_calibrate_prints_each_folds_change_and_writes_the_calibrators(tmp_path):
    folder = write_run(tmp_path / "ncnn")
    code, lines = run("calibrate", str(folder), "--method", "temperature", "--alpha", "0.2")
    assert code == 0, lines
    said = "\n".join(lines)
    assert "temperature calibration, referral band at alpha 0.2" in said
    for fold in (0, 1):
        # each fold's row is two lines: before, then "→ after" (the table fits 80 columns)
        at = next(i for i, line in enumerate(lines) if line.strip("│ ").startswith(f"{fold} "))
        before, after = lines[at], lines[at + 1]
        assert "30 images" in before and "3 subjects" in after, (before, after)
        table = [line for line in lines if line[:1] in "┏┃┡│└"]
        assert after.count("→") == 3 and max(len(line) for line in table) <= 80, after
        assert (folder / f"fold_{fold}" / "calibrator.json").is_file()
    assert "next: neopain evaluate" in said


@pytest.mark.parametrize("case, says", [
    ("missing run", "run folder not found"),
    ("no validation.csv", "validation.csv: file not found; this run predates calibration"),
    ("bad method", "method='bayes' is not a calibration method; valid: temperature, platt, "
                   "isotonic, histogram"),
    ("alpha too large", "alpha=1.5 must be between 0 and 1 (exclusive)"),
    ("alpha zero", "alpha=0.0 must be between 0 and 1 (exclusive)"),
    ("few validation images", "validation.csv: 4 validation images; a calibrator needs at "
                              "least 10"),
])
def test_bad_input_ends_with_one_clear_line(tmp_path, case, says):
    folder = write_run(tmp_path / "ncnn")
    args = ["calibrate", str(folder), "--method", "temperature"]
    if case == "missing run":
        args[1] = str(tmp_path / "nope")
    elif case == "no validation.csv":
        (folder / "fold_1" / "validation.csv").unlink()
    elif case == "bad method":
        args[3] = "bayes"
    elif case == "few validation images":
        path = folder / "fold_0" / "validation.csv"
        pd.read_csv(path, dtype=str).head(4).to_csv(path, index=False)
    else:
        args += ["--alpha", "1.5" if case == "alpha too large" else "0"]
    code, lines = run(*args)
    assert code == 1, lines
    assert len(lines) == 1 and lines[0].startswith("error: ") and says in lines[0], lines
    assert not (folder / "fold_0" / "calibrator.json").exists()
