"""The ``neopain`` Typer application: command groups are added here as their stages land."""

from __future__ import annotations

import sys
from typing import Annotated, Optional

import typer
from rich.markup import escape

from neopain import __version__
from neopain.cli import (
    assess, augment, dataset, demo, evaluate, explain, export, faces, folds, frames, importing,
    models, serve, synth, train, users,
)
from neopain.cli.console import console, err_console, setup_logging, silence_native_stderr
from neopain.config import get_settings
from neopain.errors import NeopainError

app = typer.Typer(
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
app.command("evaluate")(evaluate.evaluate)
app.command("compare")(evaluate.compare)
app.add_typer(explain.app, name="explain")
app.command("export")(export.export)
app.command("assess")(assess.assess)
app.command("serve")(serve.serve)
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
    if get_settings().log_level.upper() != "DEBUG":  # DEBUG keeps the native libraries' lines
        silence_native_stderr()
    try:
        app()
    except NeopainError as error:
        err_console.print(f"[bold red]error:[/] {error}", highlight=False)
        sys.exit(1)
    except OSError as error:  # the file system refused something: a full disk, a name too long
        where = f"{error.filename}: " if error.filename else ""
        err_console.print(f"[bold red]error:[/] {escape(where + (error.strerror or str(error)))}",
                          highlight=False)
        sys.exit(1)
