"""Terminal output shared by the commands: one Console, progress bars, error exits."""

from __future__ import annotations

import logging
import math
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Callable, NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from rich.logging import RichHandler
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

console = Console()
err_console = Console(stderr=True)


def setup_logging(level: str) -> None:
    """Route the library's log records, and warnings (``logging.captureWarnings``), to stderr
    through Rich."""
    logging.captureWarnings(True)
    logging.basicConfig(
        level=level.upper(),
        format="%(message)s",
        handlers=[RichHandler(console=err_console, show_path=False)],
        force=True,
    )


def silence_native_stderr() -> None:
    """Send file descriptor 2 to /dev/null while Python's ``sys.stderr`` keeps the terminal.

    MediaPipe and TensorFlow Lite write INFO and warning lines from C++ straight to fd 2 (no
    environment variable silences them before absl's logging starts), which garbles progress
    bars; worker processes inherit the quiet fd. neopain's own messages and errors still reach
    the terminal through ``sys.stderr``. Called by the console script only, never on import.
    """
    try:
        terminal = os.dup(2)
        devnull = os.open(os.devnull, os.O_WRONLY)
    except OSError:
        return
    os.dup2(devnull, 2)
    os.close(devnull)
    sys.stderr = os.fdopen(terminal, "w", buffering=1, encoding=sys.stderr.encoding,
                           errors="backslashreplace")


def fail(message: str, *, code: int = 1) -> NoReturn:
    """Print a user-facing error (no traceback) and exit. Not wrapped by Rich: the paths in it
    stay whole for copying (the terminal wraps long lines)."""
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


@contextmanager
def progress_bar(description: str) -> Iterator[Callable[[int, int], None]]:
    """A Rich progress bar; yields ``update(done, total)`` for library ``on_progress`` hooks."""
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task(description, total=None)

        def update(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)

        yield update


def number_text(value: float | None, digits: int = 3) -> str:
    """A figure with ``digits`` decimals, or ``n/a`` when there is none (None or NaN)."""
    return "n/a" if value is None or math.isnan(value) else f"{value:.{digits}f}"


def print_skipped(error: object) -> None:
    """Name on stderr what was left out (an unreadable image) and why; the command goes on."""
    err_console.print(f"skipped: {escape(str(error))}", style="yellow", highlight=False)
