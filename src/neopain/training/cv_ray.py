"""``run_cv``'s folds on Ray: one Ray task per fold, writing into the same run folder.

Each task builds the fold model from the run config, runs ``cv.run_fold`` and closes the model;
its progress steps go to a ``ProgressLog`` actor that the driver drains while it waits, into
the run's one ``RunProgress`` (a fold's steps all before its ``on_fold_end``). A task asks for
as many CPUs as torch uses threads in the driver (at most a node's) and runs torch with that
many: Ray gives a worker as many threads as its task's CPUs (one by default), and the thread
count changes a network's float results; with the same count the files are the local
backend's. A task asks for one GPU when the config's device wants CUDA. The run folder must
be on storage every node sees at the same path.
"""

from __future__ import annotations

from collections.abc import Sequence
from types import ModuleType
from typing import TYPE_CHECKING, Any

from neopain.data.folds import Fold
from neopain.data.manifest import load_manifest
from neopain.data.parallel import Backend
from neopain.data.ray_backend import (
    import_ray, largest_node_cpus, ray_result, ray_session,
)
from neopain.errors import NeopainError
from neopain.runs import FoldResult, RunProgress

if TYPE_CHECKING:
    from neopain.training.config import TrainConfig

POLL_S = 0.2
"""How often the driver passes the folds' progress steps on while it waits."""

Step = tuple[int, str, int, "int | None"]


class ProgressLog:
    """A Ray actor holding the progress steps of the running folds until the driver takes
    them."""

    def __init__(self) -> None:
        self.steps: list[Step] = []

    def add(self, step: Step) -> None:
        self.steps.append(step)

    def take(self) -> list[Step]:
        steps, self.steps = self.steps, []
        return steps


class RelayProgress(RunProgress):
    """A fold task's progress: each step sent to the ``ProgressLog`` actor ``log``, unawaited
    until ``flush``."""

    def __init__(self, log: Any) -> None:
        self.log = log
        self.sent_: Any = None

    def on_step(self, fold: int, *, stage: str, done: int, total: int | None) -> None:
        self.sent_ = self.log.add.remote((fold, stage, done, total))

    def flush(self) -> None:
        """Wait until the log holds every step sent (one caller's calls run in order), so the
        driver has them all when it sees the fold's result."""
        if self.sent_ is not None:
            import_ray().get(self.sent_)


def fold_task(config: TrainConfig, fold: Fold, *, log: Any, threads: int) -> FoldResult:
    """One fold, run where Ray placed it: the fold model built from ``config``, fitted, saved
    and closed, with torch on ``threads`` threads."""
    import torch

    from neopain.training.cv import fold_model_class, run_fold

    torch.set_num_threads(threads)
    relay = RelayProgress(log)
    model = fold_model_class(config.model).from_config(config)
    try:
        return run_fold(model, manifest=load_manifest(config.manifest), fold=fold,
                        out=config.out, progress=relay)
    finally:
        model.close()
        relay.flush()


def wants_gpu(device: str, *, ray: ModuleType) -> bool:
    """Whether a fold task asks for a GPU: the device is ``cuda``/``cuda:N``, or ``auto`` on a
    cluster that has one.

    Raises:
        NeopainError: ``cuda`` on a cluster without a GPU (its folds would wait for ever).
    """
    has_gpu = ray.cluster_resources().get("GPU", 0) >= 1
    if device.startswith("cuda"):
        if not has_gpu:
            raise NeopainError(f"device={device!r}: the Ray cluster has no GPU; valid here: "
                               "cpu or auto")
        return True
    return device == "auto" and has_gpu


def _pass_on(steps: Sequence[Step], progress: RunProgress) -> None:
    for fold, stage, done, total in steps:
        progress.on_step(fold, stage=stage, done=done, total=total)


def ray_folds(config: TrainConfig, folds: Sequence[Fold], *, backend: Backend,
              progress: RunProgress) -> list[FoldResult]:
    """Each fold's result in fold order, the folds running as Ray tasks at once; the progress
    steps of all of them, and ``on_fold_end`` as each finishes, go to ``progress`` here in the
    driver. However it ends, the tasks still running are cancelled.

    Raises:
        NeopainError: Ray is not installed or cannot connect; whatever a fold raised, as itself.
    """
    import torch

    with ray_session(backend) as ray:
        threads = min(torch.get_num_threads(), largest_node_cpus(ray))
        log = ray.remote(num_cpus=0)(ProgressLog).remote()
        task = ray.remote(fold_task).options(
            num_cpus=threads, num_gpus=1 if wants_gpu(config.device, ray=ray) else 0,
            max_retries=0)
        sent = config.absolute()  # a task does not run in this folder
        running = {task.remote(sent, fold, log=log, threads=threads): fold.index
                   for fold in folds}
        done: dict[int, FoldResult] = {}
        waiting = list(running)
        try:
            while waiting:
                finished, waiting = ray.wait(waiting, num_returns=1, timeout=POLL_S)
                _pass_on(ray_result(ray, log.take.remote()), progress)
                for ref in finished:
                    done[running[ref]] = ray_result(ray, ref)
                    progress.on_fold_end(running[ref])
        finally:
            for ref in waiting:
                ray.cancel(ref, force=True)
            ray.kill(log)
    return [done[fold.index] for fold in folds]
