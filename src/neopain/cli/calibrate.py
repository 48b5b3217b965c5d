"""``neopain calibrate``: fit a calibrator and referral band on each fold's validation images."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from neopain.cli.console import console, fail
from neopain.cli.dataset import count_problems, print_problems
from neopain.data.tables import TableError
from neopain.errors import NeopainError

if TYPE_CHECKING:
    from neopain.evaluation.calibrate_run import FoldCalibration


def _number(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.3f}"


def _change(before: float, after: float) -> str:
    # two lines, so that the table fits 80 columns
    return f"{_number(before)}\n→ {_number(after)}"


FEW_SUBJECTS = 3
"""A calibrator fitted on fewer validation subjects than this is said to rest on few."""


def calibration_table(run: Path, folds: list[FoldCalibration]) -> Table:
    """Per fold: ECE, accuracy and AUC of the test images before → after calibration, and the
    referral band's coverage and referral share."""
    first = folds[0].calibrator
    title = Text(f"{run.name}: {first.method} calibration, referral band at alpha "
                 f"{first.alpha:g} (fitted on each fold's validation images)")
    table = Table(title=title, caption="test images of each fold; ECE: expected calibration "
                                       "error (lower is better); referral: sets holding both "
                                       "labels (uncertain)")
    for name in ("fold", "fitted on", "ECE", "accuracy", "AUC", "coverage", "referral"):
        table.add_column(name, justify="right", no_wrap=True)
    for fold in folds:
        fitted = fold.calibrator.fitted_on
        table.add_row(str(fold.index),
                      f"{fitted.get('images')} images\n{fitted.get('subjects')} "
                      f"subject{'' if fitted.get('subjects') == 1 else 's'}",
                      _change(fold.raw["ece"], fold.calibrated["ece"]),
                      _change(fold.raw["accuracy"], fold.calibrated["accuracy"]),
                      _change(fold.raw["auc"], fold.calibrated["auc"]),
                      _number(fold.sets["coverage"]), _number(fold.sets["referral"]))
    return table


def run_calibration(run: Path, *, method: str, alpha: float, bins: int) -> None:
    """Calibrate ``run`` and print the table; a bad input ends with one line and exit 1."""
    from neopain.evaluation.calibrate_run import calibrate_run

    try:
        folds = calibrate_run(run, method=method, alpha=alpha, bins=bins)
    except TableError as error:
        print_problems(error)
        fail(f"{escape(str(error.path))} cannot be calibrated: {count_problems(error)}")
    except NeopainError as error:
        fail(escape(str(error)))
    console.print(calibration_table(run, folds))
    few = [str(fold.index) for fold in folds
           if fold.calibrator.fitted_on.get("subjects", FEW_SUBJECTS) < FEW_SUBJECTS]
    if few:
        console.print(f"note: fold(s) {', '.join(few)} were calibrated on fewer than "
                      f"{FEW_SUBJECTS} validation subjects: their calibration and band rest on "
                      "few babies and may not hold for others (neopain folds make "
                      "--val-share)", highlight=False)
    console.print(f"wrote fold_K/calibrator.json and the calibrated columns of "
                  f"fold_K/predictions.csv in {escape(str(run))}; next: neopain evaluate "
                  f"{escape(str(run))}", highlight=False)


def calibrate(
    run: Annotated[Path, typer.Argument(
        help="The run folder, e.g. runs/ncnn (from neopain train).")],
    method: Annotated[str, typer.Option(
        help="temperature (one scale, ranking kept), platt (scale and offset; the NFCS "
             "scorer's logistic), isotonic or histogram.")],
    alpha: Annotated[float, typer.Option(
        help="Referral band: at most this share of prediction sets miss the true label.")
    ] = 0.1,
    bins: Annotated[int, typer.Option(help="Bins of --method histogram.")] = 10,
) -> None:
    """Calibrate a run's P(pain) on each fold's validation subjects, never its test subjects.

    Writes fold_K/calibrator.json and adds prob_pain_calibrated, pred_calibrated and
    prediction_set (pain, nopain, or pain|nopain: uncertain, look at the baby) to
    fold_K/predictions.csv; prints each fold's test ECE, accuracy and AUC before → after,
    and the band's coverage and referral share.

    Example: neopain calibrate runs/ncnn --method temperature --alpha 0.1
    """
    run_calibration(run, method=method, alpha=alpha, bins=bins)
