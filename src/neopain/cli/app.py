"""The ``neopain`` Typer application: command groups are added here as their stages land."""

from __future__ import annotations

from typing import Annotated, Optional

import click
import typer
from rich.markup import escape

from neopain import __version__
from neopain.cli import (
    agent, assess, augment, calibrate, dataset, demo, evaluate, explain, export, faces, folds,
    frames, importing, models, serve, synth, train, users,
)
from neopain.cli.console import (
    console, err_console, fail, setup_logging, silence_native_stderr,
)
from neopain.config import get_settings
from neopain.errors import NeopainError

class _Commands(typer.core.TyperGroup):
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


app = typer.Typer(
    cls=_Commands,
    name="neopain",
    help="Objective, explained pain assessment for newborns from facial expressions.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)
app.command("synth")(synth.synth)
app.command("demo")(demo.demo)
app.add_typer(dataset.app, name="dataset")
dataset.app.command("import")(importing.import_dataset)
dataset.app.command("frames")(frames.frames)
app.add_typer(faces.app, name="faces")
app.add_typer(folds.app, name="folds")
app.command("augment")(augment.augment)
app.add_typer(models.app, name="models")
app.command("train")(train.train)
app.command("calibrate")(calibrate.calibrate)
app.command("evaluate")(evaluate.evaluate)
app.command("compare")(evaluate.compare)
app.add_typer(explain.app, name="explain")
app.command("export")(export.export)
app.command("assess")(assess.assess)
app.command("serve")(serve.serve)
app.command("agent")(agent.agent)
app.add_typer(users.app, name="users")


def _show_version(value: bool) -> None:
    if value:
        console.print(f"neopain {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        Optional[bool],
        typer.Option("--version", callback=_show_version, is_eager=True, help="Print the version."),
    ] = None,
) -> None:
    setup_logging(get_settings().log_level)


def main() -> None:
    """Console-script entry point: user errors, and errors the file system reports, end with a
    message and exit 1, not a traceback."""
    try:
        level = get_settings().log_level
    except NeopainError as error:  # before any command runs: its handler is not there yet
        err_console.print(f"[bold red]error:[/] {escape(str(error))}", highlight=False,
                          soft_wrap=True)
        raise SystemExit(1) from None
    if level.upper() != "DEBUG":  # DEBUG keeps the native libraries' lines
        silence_native_stderr()
    app()
