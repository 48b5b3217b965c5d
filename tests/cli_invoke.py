"""Run ``neopain`` in-process as a user would, failing on a traceback or a hang."""

from __future__ import annotations

import threading
from unittest import mock

import cv2
from skimage import data as skdata
from typer.testing import CliRunner

from neopain.cli.app import app as neopain_app
from neopain.cli.console import console, err_console


def invoke(*args: str, seconds: float = 120.0) -> tuple[int, str]:
    """Exit code and output of ``neopain ARGS``; fails on a traceback or after ``seconds``."""
    outcome = []

    def run() -> None:
        # Rich fixes a console's width from COLUMNS when the console is made, so a console
        # made while another test set COLUMNS=120 wraps these long lines: set it here
        with mock.patch.object(console, "_width", 400), \
                mock.patch.object(err_console, "_width", 400):
            outcome.append(CliRunner().invoke(neopain_app, list(args), env={"COLUMNS": "400"}))

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"neopain {' '.join(args)[:80]} hangs"
    [result] = outcome
    assert result.exception is None or isinstance(result.exception, SystemExit), \
        repr(result.exception)
    assert "Traceback" not in result.output
    return result.exit_code, " ".join(result.output.split())


def train_fold_0(cohort, out, *options: str) -> tuple[int, str]:
    """``neopain train`` of N-CNN for one epoch of fold 0 of ``cohort`` into ``out``."""
    return invoke("train", "--model", "ncnn", "--manifest", str(cohort / "manifest.csv"),
                  "--folds", str(cohort / "folds.json"), "--out", str(out), "--fold", "0",
                  "--epochs", "1", "--workers", "0", *options, seconds=120)


def write_face(path) -> None:
    cv2.imwrite(str(path), cv2.cvtColor(skdata.astronaut(), cv2.COLOR_RGB2BGR))
