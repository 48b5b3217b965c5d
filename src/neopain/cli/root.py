"""What every ``neopain`` command line shares: the root group that turns user errors into
``error: …`` lines, and the root options (``--version``, logging)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Optional

import typer
from rich.markup import escape

from neopain import __version__
from neopain.cli.console import console, fail, setup_logging
from neopain.config import get_settings
from neopain.errors import NeopainError

if TYPE_CHECKING:  # a bed device may have no click of its own (typer carries what it needs)
    import click

HELP = "Objective, explained pain assessment for newborns from facial expressions."


class Commands(typer.core.TyperGroup):
    """The root command group: a user error (``NeopainError``) or an error the file system
    reports (``OSError``: a full disk, a name too long) raised by any command ends with
    ``error: …`` and exit 1, not a traceback; the message is printed as text, never as Rich
    markup (a path may hold ``[/]``)."""

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except NeopainError as error:
            fail(escape(str(error)))
        except OSError as error:
            where = f"{error.filename}: " if error.filename else ""
            fail(escape(where + (error.strerror or str(error))))


def _show_version(value: bool) -> None:
    if value:
        console.print(f"neopain {__version__}")
        raise typer.Exit()


def root_app() -> typer.Typer:
    """A ``neopain`` root: the group that prints user errors, ``--version`` and logging; the
    caller adds the commands."""
    app = typer.Typer(cls=Commands, name="neopain", help=HELP, no_args_is_help=True,
                      pretty_exceptions_enable=False, rich_markup_mode="rich")
    app.callback()(root_options)
    return app


def root_options(
    version: Annotated[
        Optional[bool],
        typer.Option("--version", callback=_show_version, is_eager=True, help="Print the version."),
    ] = None,
) -> None:
    """The root group's callback: set up logging before any command runs."""
    setup_logging(get_settings().log_level)
