"""What every importer shares: the result, the error, image lookup, and the checked write.

An importer reads its source into a ``Draft`` (output rows, where each came from, problems,
drops), then ``finish`` validates the rows as a manifest, names every problem at its place in
the source, and writes the manifest only when nothing is wrong.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import pandas as pd

from neopain.data.manifest import COLUMNS, save_manifest, validate_table
from neopain.data.tables import Problem, TableError
from neopain.errors import NeopainError

logger = logging.getLogger(__name__)

ProgressHook = Callable[[int, int], None]

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")


class ImportTableError(TableError):
    """A source that cannot be imported; ``problems`` names every bad row at its source line
    (or, for folders, the file's path under the root)."""


@dataclass(frozen=True)
class ImportResult:
    """What an import did. ``rows_read`` = ``rows_written`` + ``dropped_missing`` + dropped by
    class. ``missing`` holds the problems of rows dropped for a missing image (with
    ``allow_missing``); ``unmatched`` the image files a folder pattern did not match."""

    manifest: Path
    rows_read: int
    rows_written: int
    dropped_by_class: Mapping[str, int]
    missing: tuple[Problem, ...] = ()
    unmatched: tuple[str, ...] = ()

    @property
    def dropped_missing(self) -> int:
        """Rows left out because their image was not found."""
        return len(self.missing)


def check_folder(folder: str | os.PathLike[str], *, name: str) -> Path:
    """``folder`` as a Path; NeopainError naming ``name`` when it is not an existing folder."""
    path = Path(folder)
    if not os.path.isdir(path):
        what = "does not exist" if not os.path.lexists(path) else "is not a folder"
        raise NeopainError(f"{name}={str(path)!r} {what}; give the folder the images are in")
    return path


def check_out(out: str | os.PathLike[str], *, source: Path) -> Path:
    """The output manifest path; refuses to overwrite the source table or a folder."""
    path = Path(out)
    if os.path.isdir(path):
        raise NeopainError(f"out={str(path)!r} is a folder; give a file name like manifest.csv")
    if os.path.isfile(path) and os.path.isfile(source) and os.path.samefile(path, source):
        raise NeopainError(f"out={str(path)!r} is the source table; write the manifest to "
                           "another file")
    return path


def path_parts(text: str) -> list[str]:
    """A path written on any system as parts: backslashes count as ``/``, a drive (``C:``),
    empty parts and ``.`` are dropped."""
    parts = PurePosixPath(text.strip().replace("\\", "/")).parts
    return [p for p in parts if p not in ("/", ".") and not (len(p) == 2 and p[1] == ":")]


def find_image(text: str, *, root: Path, subfolder: str = "") -> Path | None:
    """The existing regular file a path from a table points to, or None (also for names the
    file system refuses, such as one longer than it allows).

    Tried in order: an absolute path as written; then under ``root`` the whole relative path and
    each shorter end of it (``Datasets/Originais/iCOPE/x.jpg``, ``Originais/iCOPE/x.jpg``, ...,
    ``x.jpg``), each also under ``root / subfolder`` when a subfolder is given.
    """
    if os.path.isabs(text.strip()) and os.path.isfile(text.strip()):
        return Path(text.strip())
    parts = path_parts(text)
    bases = [root, root / subfolder.strip()] if subfolder.strip() else [root]
    for start in range(len(parts)):
        for base in bases:
            candidate = base.joinpath(*parts[start:])
            if os.path.isfile(candidate):  # never raises, unlike Path.is_file
                return candidate
    return None


def manifest_path(image: Path, *, out_dir: Path) -> str:
    """An image path as the manifest stores it: relative to the manifest's folder, with ``/``;
    absolute only when no relative path exists (another drive)."""
    absolute = os.path.abspath(image)
    try:
        return Path(os.path.relpath(absolute, os.path.abspath(out_dir))).as_posix()
    except ValueError:
        return Path(absolute).as_posix()


def extra_column_names(names: Sequence[str]) -> dict[str, str]:
    """Source column → output name for columns kept as they are: ``original_`` is put in front
    of names the manifest uses (a table's own ``subject`` becomes ``original_subject``)."""
    taken = set(COLUMNS) | set(names)
    renamed = {}
    for name in names:
        new = name
        while new in COLUMNS or (new != name and new in taken):
            new = f"original_{new}"
        taken.add(new)
        renamed[name] = new
    return renamed


Place = int | str
"""Where a row came from: its line in a source table, or a file's path under a folder."""


def problem_at(place: Place, column: str | None, value: str | None, message: str) -> Problem:
    """A problem at a table line, or for a folder import at a file (its path is the value)."""
    if isinstance(place, int):
        return Problem(place, column, value or None, message)
    what = message if not value else f"{value!r} {message}"
    return Problem(None, column, place, what)


@dataclass
class Draft:
    """Rows on their way into a manifest, with where each came from and what went wrong."""

    source: Path
    rows: list[dict[str, str]] = field(default_factory=list)
    places: list[Place] = field(default_factory=list)
    row_missing: list[bool] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    missing: list[Problem] = field(default_factory=list)
    dropped: Counter[str] = field(default_factory=Counter)

    def add(self, place: Place, row: dict[str, str], *, missing: Problem | None = None) -> None:
        """Add an output row; ``missing`` is the problem of an image that was not found."""
        self.rows.append(row)
        self.places.append(place)
        self.row_missing.append(missing is not None)
        if missing is not None:
            self.missing.append(missing)

    def problem(self, place: Place, column: str | None, value: str | None, message: str) -> None:
        """Record a problem with a source row."""
        self.problems.append(problem_at(place, column, value, message))


def _key(problem: Problem) -> tuple[int | None, str | None, str | None]:
    """What makes two problems the same: the line (or a folder file) and the column."""
    return problem.line, problem.value if problem.line is None else None, problem.column


def _manifest_problems(table: pd.DataFrame, places: Sequence[Place], *, out: Path,
                       source_columns: Mapping[str, str],
                       known: Sequence[Problem]) -> list[Problem]:
    """What the manifest check finds in the rows, named at their place in the source and by
    the source's column; a problem already ``known`` for that place and column is left out."""
    if not len(table.columns):
        return []
    seen = {_key(p) for p in known}
    lines = [place if isinstance(place, int) else n + 2 for n, place in enumerate(places)]
    at = dict(zip(lines, places))  # a table row's own line, so "duplicates line N" is true
    problems = []
    for found in validate_table(table, root=out.parent, lines=lines):
        place = at[found.line or 0]
        column = source_columns.get(found.column or "", found.column)
        if isinstance(place, str) and found.column is not None:
            message = f"{found.column} {found.message}"
            problem = problem_at(place, column, found.value, message)
        else:
            problem = problem_at(place, column, found.value, found.message)
        if _key(problem) not in seen:
            problems.append(problem)
    return problems


def finish(
    draft: Draft,
    *,
    out: Path,
    rows_read: int,
    allow_missing: bool,
    source_columns: Mapping[str, str] | None = None,
    unmatched: Sequence[str] = (),
    column_order: Sequence[str] = (),
) -> ImportResult:
    """Validate the draft as a manifest and write it, or raise with every problem.

    Args:
        draft: the rows and problems an importer collected.
        out: where the manifest goes; image paths are made relative to its folder.
        rows_read: rows (or image files) in the source.
        allow_missing: leave out rows whose image was not found instead of failing.
        source_columns: manifest column → the source column it came from, so that a problem
            the manifest check finds is named by the column the user knows.
        unmatched: image files a folder pattern did not match, passed on to the result.
        column_order: the source's columns, to list a row's problems in this order.

    Raises:
        ImportTableError: anything wrong in the source, or no row left to write.
    """
    keep = [i for i, gone in enumerate(draft.row_missing) if not (gone and allow_missing)]
    table = pd.DataFrame([draft.rows[i] for i in keep], dtype=str)
    problems = list(draft.problems) + ([] if allow_missing else list(draft.missing))
    problems += _manifest_problems(table, [draft.places[i] for i in keep], out=out,
                                   source_columns=source_columns or {}, known=problems)
    if problems:
        order = {name: i for i, name in enumerate(column_order)}
        problems.sort(key=lambda p: (p.line or 0, p.value if p.line is None else "",
                                     order.get(p.column or "", len(order))))
        raise ImportTableError(draft.source, problems)
    if table.empty:
        gone = sum(draft.dropped.values())
        message = (f"no rows left to write: {rows_read} read, {len(draft.missing)} with a "
                   f"missing image, {gone} dropped by the label map")
        raise ImportTableError(draft.source, [Problem(None, None, None, message)])
    save_manifest(table, out)
    logger.info("imported %s: %d of %d rows written to %s", draft.source, len(table), rows_read,
                out)
    return ImportResult(
        manifest=out,
        rows_read=rows_read,
        rows_written=len(table),
        dropped_by_class=dict(sorted(draft.dropped.items())),
        missing=tuple(draft.missing) if allow_missing else (),
        unmatched=tuple(unmatched),
    )
