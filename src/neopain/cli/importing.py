"""``neopain dataset import``: a dataset's own layout → a validated manifest."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from neopain.cli.console import console, err_console, fail, progress_bar
from neopain.cli.dataset import count_problems, print_problems, print_summary
from neopain.data.importers import (
    DEFAULT_LABEL_MAP,
    DEFAULT_PATTERN,
    PAIN_VS_REST_LABEL_MAP,
    ImportResult,
    ImportTableError,
    import_csv,
    import_folder,
    import_icope_unifesp,
    parse_column_map,
    parse_label_map,
)
from neopain.data.manifest import load_manifest
from neopain.errors import NeopainError

MAX_EXAMPLES = 5


class ImportFormat(str, Enum):
    """The source layouts ``neopain dataset import`` reads."""

    icope_unifesp = "icope-unifesp"
    folder = "folder"
    csv = "csv"


def import_dataset(
    src: Annotated[Path, typer.Argument(
        metavar="SRC",
        help="The source: the table (icope-unifesp, csv) or the root folder (folder).")],
    source_format: Annotated[ImportFormat, typer.Option(
        "--format", help="Layout of the source.", case_sensitive=False)],
    out: Annotated[Path, typer.Option(
        "--out", help="Manifest to write; image paths in it are relative to its folder.")],
    root: Annotated[Optional[Path], typer.Option(
        help="Folder image paths are looked up under (icope-unifesp, csv); "
             "default: the table's folder.")] = None,
    label_map: Annotated[Optional[list[str]], typer.Option(
        "--label-map", metavar="CLASS=TARGET,...",
        help="Map classes to pain, nopain or drop, over the default map "
             "(e.g. cry=drop,grimace=pain). Repeatable.")] = None,
    pain_vs_rest: Annotated[bool, typer.Option(
        "--pain-vs-rest", help="Keep only pain and rest (nopain) rows; drop other stimuli.")
    ] = False,
    allow_missing: Annotated[bool, typer.Option(
        "--allow-missing", help="Drop rows whose image is missing (counted) instead of failing.")
    ] = False,
    pattern: Annotated[Optional[str], typer.Option(
        help=f"folder: template like '{DEFAULT_PATTERN}' (the default) or 're:REGEX' with named "
             "groups subject and label, matched against paths under the root.")] = None,
    columns: Annotated[Optional[list[str]], typer.Option(
        "--map", metavar="COLUMN=TABLE_COLUMN,...",
        help="csv: which table column holds each manifest column, e.g. "
             "image=file,subject=baby_id,label=class,score=nfcs. Repeatable.")] = None,
    scale: Annotated[Optional[str], typer.Option(
        help="csv: the pain scale of the scores (NFCS, DAN, FLACC, NIPS).")] = None,
) -> None:
    """Import a dataset (iCOPE+UNIFESP table, folder tree or any CSV) into a manifest.

    Every problem is reported at once, with its line in the source; the manifest is written only
    when it is valid.
    """
    try:
        _check_options(source_format, root=root, allow_missing=allow_missing, pattern=pattern,
                       columns=columns, scale=scale)
        base = PAIN_VS_REST_LABEL_MAP if pain_vs_rest else DEFAULT_LABEL_MAP
        classes = parse_label_map(label_map or [], base=base)
        with progress_bar("finding images") as update:
            if source_format is ImportFormat.icope_unifesp:
                result = import_icope_unifesp(src, out=out, root=root, label_map=classes,
                                              allow_missing=allow_missing, on_progress=update)
            elif source_format is ImportFormat.folder:
                result = import_folder(src, out=out, pattern=pattern or DEFAULT_PATTERN,
                                       label_map=classes, on_progress=update)
            else:
                result = import_csv(src, columns=parse_column_map(columns or []), out=out,
                                    root=root, label_map=classes, scale=scale,
                                    allow_missing=allow_missing, on_progress=update)
    except ImportTableError as error:
        print_problems(error)
        if any("image not found" in problem.message for problem in error.problems):
            err_console.print("hint: --root sets the folder image paths start from; "
                              "--allow-missing drops rows whose image is missing", highlight=False)
        fail(f"nothing written: {escape(str(error.path))} has {count_problems(error)}")
    except NeopainError as error:
        fail(escape(str(error)))
    _print_result(result, source=src, source_format=source_format)
    print_summary(load_manifest(result.manifest, check_files=True), path=result.manifest,
                  checked_files=True)


def _check_options(source_format: ImportFormat, *, root: Path | None, allow_missing: bool,
                   pattern: str | None, columns: list[str] | None, scale: str | None) -> None:
    """Refuse options that do not apply to the format, rather than ignore them."""
    folder = source_format is ImportFormat.folder
    wrong = [
        *(["--root"] if folder and root is not None else []),
        *(["--allow-missing"] if folder and allow_missing else []),
        *(["--pattern"] if not folder and pattern is not None else []),
        *(["--map"] if source_format is not ImportFormat.csv and columns else []),
        *(["--scale"] if source_format is not ImportFormat.csv and scale is not None else []),
    ]
    if wrong:
        raise NeopainError(f"{', '.join(wrong)} do{'es' if len(wrong) == 1 else ''} not apply "
                           f"to --format {source_format.value}")
    if source_format is ImportFormat.csv and not columns:
        raise NeopainError("--format csv needs --map, e.g. --map image=file,subject=id,"
                           "label=class")


def _print_result(result: ImportResult, *, source: Path, source_format: ImportFormat) -> None:
    console.print(Text(f"imported {source_format.value} {source} into {result.manifest}"))
    table = Table(title=f"{result.rows_written} of {result.rows_read} rows written")
    table.add_column("rows")
    table.add_column("count", justify="right")
    table.add_row("read", str(result.rows_read))
    for name, count in result.dropped_by_class.items():
        table.add_row(Text(f"dropped: class {name} (label map)"), str(count))
    if result.missing:
        table.add_row("dropped: image missing", str(result.dropped_missing))
    table.add_row("written", str(result.rows_written), style="bold")
    console.print(table)
    for problem in result.missing[:MAX_EXAMPLES]:
        console.print(Text(f"  missing: {problem}"), style="yellow")
    if result.unmatched:
        examples = ", ".join(result.unmatched[:MAX_EXAMPLES])
        n = len(result.unmatched)
        console.print(Text(f"warning: {n} image{'' if n == 1 else 's'} not matched by the pattern "
                           f"(not imported), e.g. {examples}"), style="yellow")

