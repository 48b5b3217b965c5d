"""Text tables from CSV files with true line numbers: read, write, and the problems found.

Files are read with the ``csv`` module rather than ``pandas.read_csv`` so that each row keeps the
line an editor shows (cells spanning lines and blank lines counted) and every bad row is reported
at once instead of the first one stopping the read.
"""

from __future__ import annotations

import csv
import io
import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from neopain.data.files import FileReadError, read_regular
from neopain.errors import NeopainError

_MAX_VALUE_CHARS = 60
_MAX_LISTED = 50
MAX_TABLE_BYTES = 2**30
"""The largest table file read (about 5 million manifest rows)."""


def _shorten(text: str) -> str:
    return text if len(text) <= _MAX_VALUE_CHARS else text[: _MAX_VALUE_CHARS - 3] + "..."


@dataclass(frozen=True)
class Problem:
    """One thing wrong in a table file.

    ``line`` is the line in the CSV file as an editor shows it (the header is usually line 1;
    blank lines and cells spanning lines are counted), None for problems of the whole file or
    header. ``value`` is the offending cell, shortened to 60 characters; None when empty.
    """

    line: int | None
    column: str | None
    value: str | None
    message: str

    def __post_init__(self) -> None:
        if self.value is not None:
            object.__setattr__(self, "value", _shorten(self.value))

    def __str__(self) -> str:
        where = []
        if self.line is not None:
            where.append(f"line {self.line}")
        if self.column is not None:
            where.append(f"column {self.column!r}")
        what = self.message if self.value is None else f"{self.value!r} {self.message}"
        return f"{', '.join(where)}: {what}" if where else what


class TableError(NeopainError):
    """A table file that cannot be used; ``problems`` lists everything wrong with it.

    The message names the file and the problem count, then lists up to 50 problems.
    """

    def __init__(self, path: str | os.PathLike[str], problems: Sequence[Problem]) -> None:
        self.path = Path(path)
        self.problems = list(problems)
        n = len(self.problems)
        lines = [f"{self.path}: {n} problem{'' if n == 1 else 's'}"]
        lines += [f"  {problem}" for problem in self.problems[:_MAX_LISTED]]
        if n > _MAX_LISTED:
            lines.append(f"  ... and {n - _MAX_LISTED} more")
        super().__init__("\n".join(lines))

    def __reduce__(self) -> tuple[type[TableError], tuple[Path, list[Problem]],
                                  dict[str, object]]:
        # rebuilt from (path, problems) and its attributes when it crosses a process boundary
        # (a worker process, a Ray task): the default rebuild passes the message alone
        return (type(self), (self.path, self.problems), self.__dict__)


def _read_text(path: Path, *, what: str) -> str:
    """The file's text (UTF-8, a BOM dropped); unreadable files raise TableError."""

    def error(message: str, line: int | None = None) -> TableError:
        return TableError(path, [Problem(line, None, None, message)])

    try:
        data = read_regular(path, what=what, max_bytes=MAX_TABLE_BYTES)
    except FileReadError as exc:
        raise error(exc.reason) from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        message = f"is not UTF-8 text (byte 0x{data[exc.start]:02x}); save it as CSV UTF-8"
        raise error(message, line) from None
    if (nul := data.find(b"\0")) >= 0:  # a binary file, or UTF-16 text without its BOM
        line = data.count(b"\n", 0, nul) + 1
        raise error("holds a NUL byte, so it is no text file (UTF-16 text?); save it as CSV "
                    "UTF-8", line)
    return text


def read_table(
    path: str | os.PathLike[str], *, required_hint: str, what: str = "a CSV file"
) -> tuple[pd.DataFrame, list[int]]:
    """Read a CSV file into a text table and the file line of each row.

    Blank rows are skipped; the first non-blank row is the header (names stripped). Short rows
    are padded with empty cells; columns with an empty name are dropped when all their cells are.

    Args:
        path: the CSV file (UTF-8, comma-separated).
        required_hint: what the header must hold, said when the file is empty or has no header.
        what: what the file should be, said when ``path`` is a folder.

    Raises:
        TableError: with the problems found (unreadable file, bad CSV, too many cells, values
            under a nameless column, repeated column names).
    """
    path = Path(path)
    text = _read_text(path, what=what)
    if not text.strip():
        raise TableError(path, [Problem(None, None, None, f"file is empty; {required_hint}")])

    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    header: list[str] | None = None
    header_line, last_line = 1, 0
    records: list[list[str]] = []
    lines: list[int] = []
    problems: list[Problem] = []
    try:
        for record in reader:
            start, last_line = last_line + 1, reader.line_num
            if not any(cell.strip() for cell in record):
                continue
            if header is None:
                header, header_line = [cell.strip() for cell in record], start
            else:
                records.append(record)
                lines.append(start)
    except csv.Error as exc:
        if "field limit" in str(exc):
            message = (f"has a cell longer than {csv.field_size_limit():,} characters; is a "
                       "closing quote missing?")
        else:
            message = f"is not valid CSV ({exc}); check the quotes"
        problems.append(Problem(last_line + 1, None, None, message))
    if header is None:
        problems = problems or [Problem(None, None, None, f"no header; {required_hint}")]
        raise TableError(path, problems)

    width = len(header)
    for line, record in zip(lines, records):
        if len(record) > width and any(cell.strip() for cell in record[width:]):
            message = f"has {len(record)} cells but the header has {width}"
            problems.append(Problem(line, None, None, message + "; quote cells with commas"))
        record[:] = (record + [""] * width)[:width]
    keep = [i for i, name in enumerate(header) if name]
    for i in sorted(set(range(width)) - set(keep)):  # nameless columns: dropped when empty
        used = [line for line, record in zip(lines, records) if record[i].strip()]
        if used:
            message = f"header cell {i + 1} is empty but line {used[0]} has a value under it"
            problems.append(Problem(header_line, None, None, message + "; name the column"))
    counts = Counter(header[i] for i in keep)
    for name, n in counts.items():
        if n > 1:
            message = f"appears {n} times in the header; keep one column per name"
            problems.append(Problem(header_line, name, None, message))
    if problems:
        raise TableError(path, sorted(problems, key=lambda p: p.line or 0))
    rows = [[record[i] for i in keep] for record in records]
    table = pd.DataFrame(rows, columns=[header[i] for i in keep], dtype=str)
    return table, lines


def _csv_cell(text: str) -> str:
    """Quote a cell that holds a comma, quote or line break (csv.writer leaves a lone \\r bare)."""
    if any(char in text for char in ',"\r\n'):
        return '"' + text.replace('"', '""') + '"'
    return text


def write_table(table: pd.DataFrame, path: str | os.PathLike[str]) -> Path:
    """Write a table whose names and cells are all ``str`` as UTF-8 CSV with ``\\n`` line ends.

    The header is line 1 and row i is on line i + 2 unless cells hold line breaks. Missing
    parent folders are created; equal tables give identical bytes. Returns the path.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = [table.columns, *table.itertuples(index=False, name=None)]
    text = "".join(",".join(map(_csv_cell, row)) + "\n" for row in rows)
    path.write_bytes(text.encode("utf-8"))
    return path
