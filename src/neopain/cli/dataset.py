"""``neopain dataset``: check and summarize manifests."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Annotated, NoReturn

import typer
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from neopain.cli.console import console, err_console, fail
from neopain.data.manifest import Manifest, ManifestError, load_manifest
from neopain.data.tables import TableError
from neopain.errors import NeopainError

app = typer.Typer(help="Import, check and summarize datasets (manifests).", no_args_is_help=True)

MAX_PROBLEM_ROWS = 200


@app.command()
def validate(
    manifest: Annotated[Path, typer.Argument(help="The manifest CSV to check.")],
    check_files: Annotated[
        bool,
        typer.Option(
            "--check-files/--no-check-files",
            help="Also check that the image, video and landmarks files exist.",
        ),
    ] = True,
) -> None:
    """Check a manifest: every problem with its line and column, or a summary when valid."""
    try:
        loaded = load_manifest(manifest, check_files=check_files)
    except ManifestError as error:
        print_problems(error)
        fail(f"{escape(str(manifest))} is not a valid manifest: {count_problems(error)}")
    print_summary(loaded, path=manifest, checked_files=check_files)


def print_summary(manifest: Manifest, *, path: Path, checked_files: bool) -> None:
    """Rows, subjects and sources, and rows per source × label (also used by ``synth``)."""
    summary = manifest.summary()
    counts = Table(title=f"{summary.rows} rows, {summary.subjects} subjects, "
                         f"{summary.sources} sources")
    counts.add_column("source")
    for label in summary.counts.columns:
        counts.add_column(Text(str(label)), justify="right")
    counts.add_column("total", justify="right", style="bold")
    for source, row in summary.counts.iterrows():
        counts.add_row(Text(str(source)), *(str(v) for v in row), str(row.sum()))
    console.print(counts)
    files = "files checked" if checked_files else "files not checked"
    console.print(f"[bold green]valid[/] ({files}): {escape(str(path))}", highlight=False)


def print_problems(error: TableError) -> None:
    """Every problem of a table file as a line/column/value/problem table on stderr."""
    table = Table(title=Text(f"{error.path}: {count_problems(error)}"))
    table.add_column("line", justify="right", no_wrap=True)
    table.add_column("column", no_wrap=True)
    table.add_column("value", overflow="fold")
    table.add_column("problem", overflow="fold")
    for problem in error.problems[:MAX_PROBLEM_ROWS]:
        table.add_row(
            "-" if problem.line is None else str(problem.line),
            Text("-" if problem.column is None else problem.column),
            Text("" if problem.value is None else repr(problem.value)),
            Text(problem.message),
        )
    err_console.print(table)
    rest = error.problems[MAX_PROBLEM_ROWS:]
    if rest:
        per_column = Counter(p.column or "(file)" for p in rest)
        detail = ", ".join(f"{column}: {count}" for column, count in per_column.most_common())
        err_console.print(Text(f"... and {len(rest)} more ({detail})"))


def count_problems(error: TableError) -> str:
    """'1 problem' / 'N problems'."""
    n = len(error.problems)
    return f"{n} problem{'' if n == 1 else 's'}"


def fail_with(error: NeopainError) -> NoReturn:
    """Exit 1 naming what is wrong: a table's problems line by line, else the error's text."""
    if isinstance(error, TableError):
        print_problems(error)
        fail(f"{escape(str(error.path))}: {count_problems(error)}")
    fail(escape(str(error)))
