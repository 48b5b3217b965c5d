"""The Rich progress bars of ``neopain train`` (the CLI owns the terminal)."""

from __future__ import annotations

from rich.progress import Progress, TaskID

from neopain.runs import RunProgress


class ProgressBar(RunProgress):
    """Rich progress: one bar for the folds, one for the steps of the current fold (the
    batches of an epoch, the images being scored)."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.folds_task: TaskID | None = None
        self.steps_task: TaskID | None = None

    def on_run_start(self, *, model: str, folds: int, trains: bool) -> None:
        self.folds_task = self.progress.add_task(
            f"training {model}" if trains else f"scoring with {model}", total=folds)
        self.steps_task = self.progress.add_task("", total=None)

    def on_step(self, fold: int, *, stage: str, done: int, total: int | None) -> None:
        self.progress.update(self.steps_task, completed=done, total=total,
                             description=f"fold {fold} {stage}")

    def on_fold_end(self, fold: int) -> None:
        self.progress.advance(self.folds_task)
