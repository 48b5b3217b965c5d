"""A ``RunProgress`` that records every call, for tests of what a run tells its progress."""

from __future__ import annotations

from neopain.runs import RunProgress


class Recorder(RunProgress):
    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def on_run_start(self, *, model: str, folds: int, trains: bool) -> None:
        self.calls.append(("start", model, folds, trains))

    def on_step(self, fold: int, *, stage: str, done: int, total: int | None) -> None:
        self.calls.append(("step", fold, stage, done, total))

    def on_fold_end(self, fold: int) -> None:
        self.calls.append(("end", fold))
