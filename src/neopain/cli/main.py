"""The ``neopain`` console script: user errors, and errors the file system reports, end with a
message and exit 1, not a traceback. ``neopain agent`` loads only its own command
(``cli.device_app``); every other command line loads them all (``cli.app``)."""

from __future__ import annotations

import sys

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
    else:
        from neopain.cli.app import app
    app()
