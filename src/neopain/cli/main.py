"""The ``neopain`` console script: user errors, and errors the file system reports, end with a
message and exit 1, not a traceback. ``neopain agent`` loads only its own command
(``cli.device_app``) and, once it has ended, leaves without the interpreter's teardown; every
other command line loads them all (``cli.app``)."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from typing import NoReturn

from rich.markup import escape

from neopain.cli.console import err_console, silence_native_stderr
from neopain.config import get_settings
from neopain.errors import NeopainError


def main() -> None:
    """Console-script entry point."""
    try:
        level = get_settings().log_level
    except NeopainError as error:  # before any command runs: its handler is not there yet
        err_console.print(f"[bold red]error:[/] {escape(str(error))}", highlight=False,
                          soft_wrap=True)
        raise SystemExit(1) from None
    if level.upper() != "DEBUG":  # DEBUG keeps the native libraries' lines
        silence_native_stderr()
    if sys.argv[1:2] == ["agent"]:
        from neopain.cli.device_app import app

        _run_and_leave(app)
    from neopain.cli.app import app

    app()


def _run_and_leave(app: Callable[[], object]) -> NoReturn:
    """Run the agent, then end the process at once. By then it has closed its camera, model and
    outbox and printed its last line; the interpreter's teardown of MediaPipe's native modules
    takes another 0.15 s, and 0.5 s on a busy device, which a revoked agent ("stops within a
    second") cannot spend. An exception other than an exit ends it the usual way."""
    try:
        app()
        code = 0
    except SystemExit as end:  # Typer ends every run with one
        if isinstance(end.code, str):
            print(end.code, file=sys.stderr)
        code = end.code if isinstance(end.code, int) else int(end.code is not None)
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
