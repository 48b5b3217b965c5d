"""The Rich progress callback of ``neopain train`` (the CLI owns the terminal)."""

from __future__ import annotations

from rich.progress import Progress

from neopain.training import Callback


class ProgressBar(Callback):
    """Rich progress: one bar for the folds, one for the batches of the current epoch."""

    def __init__(self, progress: Progress, *, fold: int, folds_task, batch_task) -> None:
        self.progress = progress
        self.fold = fold
        self.folds_task = folds_task
        self.batch_task = batch_task
        self.epochs = 0

    def on_fit_start(self, trainer) -> None:
        self.epochs = trainer.epochs

    def on_epoch_start(self, trainer, epoch: int) -> None:
        self.progress.update(self.batch_task, completed=0, total=None,
                             description=f"fold {self.fold} epoch {epoch}/{self.epochs}")

    def on_batch_end(self, trainer, batch: int, batches: int, loss: float) -> None:
        self.progress.update(self.batch_task, completed=batch, total=batches)

    def on_fit_end(self, trainer) -> None:
        self.progress.advance(self.folds_task)
