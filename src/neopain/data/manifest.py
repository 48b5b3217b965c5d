"""The manifest: one CSV row per image. Load, validate (problems name line and column), save.

All cells are text; an empty cell means "not known". ``image``, ``subject`` and ``label`` are
required; paths are relative to the manifest's folder or absolute; ``face_box`` is JSON
``[x1, y1, x2, y2]`` and ``keypoints`` JSON ``[[x, y], ...]`` (5 pairs). Unknown columns are
kept and written back after the known ones.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from neopain.data.files import regular_file_error
from neopain.data.json_text import JSONLimitError, parse_json
from neopain.data.tables import Problem, TableError, read_table, write_table

logger = logging.getLogger(__name__)

COLUMNS = (
    "image", "subject", "label", "source", "stimulus", "score", "scale",
    "video", "time_s", "face_box", "keypoints", "landmarks",
)  # fmt: skip
REQUIRED_COLUMNS = ("image", "subject", "label")
LABELS = ("pain", "nopain")
SCALES = ("NFCS", "DAN", "FLACC", "NIPS")
N_KEYPOINTS = 5
NO_SOURCE = "(none)"

_FILE_COLUMNS = {"image": "an image file", "video": "a video file",
                 "landmarks": "a landmarks .npy file"}
_BOX_FORM = "JSON [x1, y1, x2, y2] with x2 > x1 and y2 > y1"
_KEYPOINTS_FORM = f"JSON list of {N_KEYPOINTS} [x, y] pairs"
_MAX_CELL_DEPTH = 4  # face_box and keypoints nest 1 and 2 lists
_MAX_CELL_CHARS = 10_000
_NO_HEADER = f"a manifest starts with a header naming at least: {', '.join(REQUIRED_COLUMNS)}"


class ManifestError(TableError):
    """A manifest that cannot be used; ``problems`` lists everything wrong with it."""


def _is_empty(text: str) -> bool:
    return not text.strip()


def _cell_text(value: object) -> str:
    if isinstance(value, str):
        return value
    if value is None or (pd.api.types.is_scalar(value) and pd.isna(value)):
        return ""
    return str(value)


def normalize_table(table: pd.DataFrame) -> pd.DataFrame:
    """Return a copy with every known column (missing ones empty), all cells text.

    Known columns come first in ``COLUMNS`` order, then unknown ones in their order; the
    index is reset. Raises ValueError on duplicate column names.
    """
    names = [str(name) for name in table.columns]
    duplicated = sorted({name for name in names if names.count(name) > 1})
    if duplicated:
        raise ValueError(f"duplicate column names: {', '.join(duplicated)}; keep one of each")
    table = table.set_axis(names, axis=1)
    order = [*COLUMNS, *(name for name in names if name not in COLUMNS)]
    data = {
        name: [_cell_text(v) for v in table[name]] if name in names else [""] * len(table)
        for name in order
    }
    return pd.DataFrame(data, columns=order, dtype=str)


def _numbers(value: object, *, count: int) -> list[float]:
    if not isinstance(value, list) or len(value) != count:
        raise ValueError(f"expected a list of {count} numbers")
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
        raise ValueError("every entry must be a number")
    numbers = [float(v) if abs(v) < 1e300 else math.inf for v in value]
    if not all(math.isfinite(v) for v in numbers):
        raise ValueError("numbers must be finite")
    return numbers


def _json(text: str) -> object:
    try:
        return parse_json(text, max_depth=_MAX_CELL_DEPTH, max_chars=_MAX_CELL_CHARS)
    except JSONLimitError as error:
        raise ValueError(error.msg) from None
    except json.JSONDecodeError:
        raise ValueError("not JSON") from None


def parse_box(text: str) -> tuple[float, float, float, float] | None:
    """Parse a ``face_box`` cell (JSON ``[x1, y1, x2, y2]``); None for an empty cell.

    Raises:
        ValueError: not JSON, not 4 finite numbers, or x2 <= x1 or y2 <= y1.
    """
    if _is_empty(text):
        return None
    x1, y1, x2, y2 = _numbers(_json(text), count=4)
    if x2 <= x1 or y2 <= y1:
        raise ValueError("x2 must be greater than x1 and y2 greater than y1")
    return (x1, y1, x2, y2)


def parse_keypoints(text: str) -> np.ndarray | None:
    """Parse a ``keypoints`` cell (JSON list of 5 ``[x, y]``) into a (5, 2) array; None if empty.

    Raises:
        ValueError: not JSON, not 5 pairs, or a coordinate that is not a finite number.
    """
    if _is_empty(text):
        return None
    value = _json(text)
    if not isinstance(value, list) or len(value) != N_KEYPOINTS:
        raise ValueError(f"expected a list of {N_KEYPOINTS} [x, y] pairs")
    try:
        pairs = [_numbers(pair, count=2) for pair in value]
    except ValueError as error:
        raise ValueError(f"each keypoint must be [x, y]: {error}") from None
    return np.array(pairs, dtype=float)


def _rounded(values: np.ndarray) -> list:
    return (np.round(values.astype(float), 2) + 0.0).tolist()  # + 0.0 turns -0.0 into 0.0


def format_box(box: Sequence[float] | np.ndarray | None) -> str:
    """Write a box as the cell text ``[x1, y1, x2, y2]`` rounded to 2 decimals; "" for None.

    >>> format_box((12.5, 30, 80.254, 99))
    '[12.5, 30.0, 80.25, 99.0]'
    """
    if box is None:
        return ""
    values = np.asarray(box, dtype=float)
    if values.shape != (4,):
        raise ValueError(f"a box has 4 numbers [x1, y1, x2, y2], got shape {values.shape}")
    text = json.dumps(_rounded(values))
    parse_box(text)
    return text


def format_keypoints(keypoints: Sequence[Sequence[float]] | np.ndarray | None) -> str:
    """Write 5 ``[x, y]`` keypoints as cell text rounded to 2 decimals; "" for None."""
    if keypoints is None:
        return ""
    values = np.asarray(keypoints, dtype=float)
    if values.shape != (N_KEYPOINTS, 2):
        raise ValueError(f"keypoints have shape ({N_KEYPOINTS}, 2), got {values.shape}")
    if not np.isfinite(values).all():
        raise ValueError("keypoints must be finite numbers")
    return json.dumps(_rounded(values))


@dataclass(frozen=True)
class ManifestSummary:
    """Row, subject and source counts; ``counts`` is rows per source (index) and label."""

    rows: int
    subjects: int
    sources: int
    counts: pd.DataFrame


@dataclass(frozen=True, eq=False)
class Manifest:
    """A manifest table (all cells text, known columns first) and the folder paths start from.

    The table is normalized on construction (see ``normalize_table``); it is not validated:
    use ``load_manifest`` or ``validate_table`` for that.
    """

    table: pd.DataFrame
    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "table", normalize_table(self.table))
        object.__setattr__(self, "root", Path(self.root))

    def __len__(self) -> int:
        return len(self.table)

    def image_path(self, i: int) -> Path:
        """Path of row ``i``'s image: ``root / image`` unless the image path is absolute."""
        return self.root / str(self.table["image"].iat[i])

    @property
    def subjects(self) -> list[str]:
        """Sorted distinct subject ids."""
        return sorted(set(self.table["subject"]))

    def boxes(self) -> np.ndarray:
        """Face boxes as an (n, 4) float array, NaN rows where the cell is empty."""
        out = np.full((len(self), 4), np.nan)
        for i, text in enumerate(self.table["face_box"]):
            box = parse_box(text)
            if box is not None:
                out[i] = box
        return out

    def keypoints(self) -> np.ndarray:
        """Keypoints as an (n, 5, 2) float array, NaN where the cell is empty."""
        out = np.full((len(self), N_KEYPOINTS, 2), np.nan)
        for i, text in enumerate(self.table["keypoints"]):
            points = parse_keypoints(text)
            if points is not None:
                out[i] = points
        return out

    def summary(self) -> ManifestSummary:
        """Counts of rows, subjects, sources, and rows per source and label."""
        sources = [NO_SOURCE if _is_empty(s) else s for s in self.table["source"]]
        named = sorted(set(sources) - {NO_SOURCE})
        index = named + [NO_SOURCE] * (NO_SOURCE in sources)
        labels = [*LABELS, *sorted(set(self.table["label"]) - set(LABELS))]
        pairs = Counter(zip(sources, self.table["label"]))
        counts = pd.DataFrame(
            [[pairs[source, label] for label in labels] for source in index],
            index=pd.Index(index, name="source"),
            columns=pd.Index(labels, name="label"),
            dtype=int,
        )
        return ManifestSummary(
            rows=len(self), subjects=len(self.subjects), sources=len(index), counts=counts
        )


def _cell_problem(column: str, text: str) -> str | None:
    """What is wrong with a non-empty cell of a known column, or None."""
    if column in ("label", "scale"):
        valid = LABELS if column == "label" else SCALES
        return None if text in valid else f"is not a valid {column}; valid: {', '.join(valid)}"
    if column in ("score", "time_s"):
        try:
            number = float(text)
        except ValueError:
            number = math.nan
        what = "score" if column == "score" else "time in seconds"
        ok = math.isfinite(number) and number >= 0
        return None if ok else f"is not a valid {what}; valid: a number >= 0"
    parse, what, form = {
        "face_box": (parse_box, "face box", _BOX_FORM),
        "keypoints": (parse_keypoints, "keypoints value", _KEYPOINTS_FORM),
    }.get(column, (None, "", ""))
    try:
        if parse is not None:
            parse(text)
    except ValueError as error:
        return f"is not a valid {what} ({error}); valid: {form}"
    return None


_EMPTY_MESSAGES = {
    "image": "is empty; every row needs the path of its image",
    "subject": "is empty; every row needs a subject id (one id per infant)",
    "label": f"is empty; valid: {', '.join(LABELS)}",
}


def validate_table(
    table: pd.DataFrame,
    *,
    root: str | os.PathLike[str],
    check_files: bool = False,
    lines: Sequence[int] | None = None,
) -> list[Problem]:
    """Every problem in a manifest table, sorted by line; an empty list means valid.

    Args:
        table: the manifest table (cells as text; NaN and None count as empty).
        root: folder that relative paths start from (the manifest's folder).
        check_files: also report image, video and landmarks files that do not exist or are
            no regular file (a folder, FIFO or device); nothing is opened.
        lines: file line of each row; by default row i is on line i + 2, as saved.
    """
    names = [str(name) for name in table.columns]
    required = ", ".join(REQUIRED_COLUMNS)
    problems = [
        Problem(None, name, None, f"required column is missing; required: {required}")
        for name in REQUIRED_COLUMNS
        if name not in names
    ]
    separator = next((char for char in ";\t|" if len(names) == 1 and char in names[0]), None)
    if problems and separator:
        message = f"the header is one column: cells seem separated by {separator!r}; use commas"
        problems.append(Problem(None, None, None, message))
    counts = Counter(names)
    problems += [
        Problem(None, name, None, f"appears {n} times in the header; keep one column per name")
        for name, n in counts.items()
        if n > 1
    ]
    if any(n > 1 for n in counts.values()):
        return problems
    table = normalize_table(table)
    lines = list(range(2, len(table) + 2)) if lines is None else list(lines)
    if len(lines) != len(table):
        raise ValueError(f"lines has {len(lines)} entries for {len(table)} rows")
    root = Path(root)
    present = [name for name in COLUMNS if name in names]
    found: dict[Path, str | None] = {}
    first_line: dict[str, int] = {}
    for line, row in zip(lines, table[present].itertuples(index=False, name=None)):
        for column, text in zip(present, row):
            if _is_empty(text):
                if column in _EMPTY_MESSAGES:
                    problems.append(Problem(line, column, None, _EMPTY_MESSAGES[column]))
                continue
            if (message := _cell_problem(column, text)) is not None:
                problems.append(Problem(line, column, text, message))
            if column == "image":
                key = os.path.normpath(text)
                if key in first_line:
                    message = f"duplicates line {first_line[key]}; each image appears once"
                    problems.append(Problem(line, column, text, message))
                first_line.setdefault(key, line)
            if check_files and column in _FILE_COLUMNS:
                path = root / text
                if path not in found:
                    found[path] = regular_file_error(path, what=_FILE_COLUMNS[column])
                if (error := found[path]) is not None:
                    message = error.reason
                    if error.missing:
                        message += "; relative paths start at the manifest's folder"
                    problems.append(Problem(line, column, text, message))
    order = {name: i for i, name in enumerate(COLUMNS)}
    problems.sort(key=lambda p: (p.line or 0, order.get(p.column or "", len(order))))
    return problems


def load_manifest(path: str | os.PathLike[str], *, check_files: bool = False) -> Manifest:
    """Read and validate a manifest CSV (UTF-8, comma-separated, a header line first).

    Args:
        path: the manifest; relative paths in it start at its folder.
        check_files: also require the image, video and landmarks files to exist as regular
            files.

    Raises:
        ManifestError: with every problem found (unreadable file, bad CSV, bad cells).
    """
    path = Path(path)
    try:
        table, lines = read_table(path, required_hint=_NO_HEADER, what="a manifest CSV file")
    except TableError as error:
        raise ManifestError(error.path, error.problems) from None
    root = path.absolute().parent
    problems = validate_table(table, root=root, check_files=check_files, lines=lines)
    if problems:
        raise ManifestError(path, problems)
    logger.debug("loaded manifest %s: %d rows", path, len(table))
    return Manifest(table=table, root=root)


def save_manifest(manifest: Manifest | pd.DataFrame, path: str | os.PathLike[str]) -> Path:
    """Write a manifest (or a table) as UTF-8 CSV with ``\\n`` line ends; returns the path.

    The table is normalized first (known columns first, cells as text); it is not validated.
    Equal tables give identical bytes, and ``load_manifest`` reads a valid one back equal.
    """
    table = manifest.table if isinstance(manifest, Manifest) else normalize_table(manifest)
    path = write_table(table, path)
    logger.debug("saved manifest %s: %d rows", path, len(table))
    return path


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of a file's bytes (folds.json records the manifest's)."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as file:
        for chunk in iter(lambda: file.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
