"""Jobs for ``neopain.data.parallel`` tests, importable by spawned worker processes."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from neopain.data.manifest import ManifestError
from neopain.data.tables import Problem
from neopain.errors import NeopainError

_STARTED_WITH: str | None = None


def start(value: str) -> None:
    """A pool initializer: remembers ``value`` in the worker process."""
    global _STARTED_WITH
    _STARTED_WITH = value


def started_with(_item: object) -> str | None:
    return _STARTED_WITH


def slow_square(item: int) -> int:
    """Earlier items take longer, so that later ones finish first."""
    time.sleep(0.02 * (8 - item % 8))
    return item * item


def pid(_item: object) -> int:
    return os.getpid()


def reserved_cpus(_item: object) -> tuple[int, float]:
    """A Ray actor's process and the CPUs Ray reserved for it."""
    import ray

    return os.getpid(), ray.get_runtime_context().get_assigned_resources().get("CPU", 0.0)


def mark(item: tuple[Path, int, int | None]) -> int:
    """Write ``folder/<number>``; raise NeopainError at ``fail``; slow after it."""
    folder, number, fail = item
    (folder / str(number)).write_text("")
    if number == fail:
        raise NeopainError(f"item {number} is bad")
    if fail is not None and number > fail:
        time.sleep(0.05)
    return number


def die(item: int) -> int:
    if item == 1:
        os._exit(3)
    time.sleep(0.2)
    return item


def _ignores_ctrl_c(pid: int) -> bool:
    """Whether process ``pid`` ignores SIGINT now (Linux: the SigIgn mask of /proc/PID/status)."""
    status = Path(f"/proc/{pid}/status").read_text()
    mask = int(next(line.split()[1] for line in status.splitlines()
                    if line.startswith("SigIgn:")), 16)
    return bool(mask >> (signal.SIGINT - 1) & 1)


def interrupt_parent(item: int) -> str:
    """Item 0 sends Ctrl-C to the parent once the pool has started (Ctrl-C is ignored while
    worker processes start, which on a busy machine can outlast a worker's first item: it waits
    up to 10 s for the parent to heed Ctrl-C again); every item says how its process treats
    Ctrl-C."""
    time.sleep(0.3)
    if item == 0:
        parent = os.getppid()
        deadline = time.monotonic() + 10
        while _ignores_ctrl_c(parent) and time.monotonic() < deadline:
            time.sleep(0.05)
        os.kill(parent, signal.SIGINT)
        time.sleep(0.3)
    return "ignored" if signal.getsignal(signal.SIGINT) == signal.SIG_IGN else "handled"


BAD_LABEL = Problem(line=2, column="label", value="maybe", message="not a label")


def bad_manifest(item: int) -> None:
    """Raise the error a worker reading a broken manifest raises."""
    raise ManifestError(f"manifest{item}.csv", [BAD_LABEL])
