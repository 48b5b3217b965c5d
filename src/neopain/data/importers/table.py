"""Tables → manifest: any CSV with a column mapping (``import_csv``), and the row loop that the
iCOPE+UNIFESP importer shares with it (``import_rows``)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd

from neopain.data.importers.common import (
    Draft,
    ImportResult,
    ImportTableError,
    ProgressHook,
    check_folder,
    check_out,
    extra_column_names,
    finish,
    find_image,
    manifest_path,
)
from neopain.data.importers.coordinates import BOX_FORM, KEYPOINTS_FORM, box_cell, keypoints_cell
from neopain.data.importers.labels import (
    DEFAULT_LABEL_MAP,
    check_label_map,
    class_key,
    unknown_class_message,
)
from neopain.data.manifest import COLUMNS, REQUIRED_COLUMNS, SCALES
from neopain.data.tables import Problem, TableError, read_table
from neopain.errors import NeopainError


def parse_column_map(entries: str | Sequence[str]) -> dict[str, str]:
    """A column mapping from ``MANIFEST_COLUMN=TABLE_COLUMN`` entries (comma-separated).

    >>> parse_column_map("image=file,subject=baby_id,label=class")
    {'image': 'file', 'subject': 'baby_id', 'label': 'class'}

    Raises:
        NeopainError: an entry that is not ``NAME=COLUMN``, or a manifest column named twice.
    """
    texts = [entries] if isinstance(entries, str) else list(entries)
    mapping: dict[str, str] = {}
    for text in texts:
        for entry in filter(None, (part.strip() for part in text.split(","))):
            name, equals, column = entry.partition("=")
            name, column = name.strip(), column.strip()
            if not equals or not name or not column:
                raise NeopainError(f"column map entry {entry!r} is not MANIFEST_COLUMN="
                                   "TABLE_COLUMN; e.g. image=file_path")
            if name in mapping and mapping[name] != column:
                raise NeopainError(f"column map gives {name} twice ({mapping[name]!r} and "
                                   f"{column!r}); keep one")
            mapping[name] = column
    return mapping


def check_columns(
    columns: Mapping[str, str], *, header: Sequence[str], path: Path
) -> dict[str, str]:
    """Check a manifest column → table column mapping against a table's header.

    Raises:
        NeopainError: a manifest column that does not exist, or a required one not mapped.
        ImportTableError: mapped table columns the table does not have (all named at once).
    """
    unknown = [name for name in columns if name not in COLUMNS]
    if unknown:
        raise NeopainError(f"columns names {', '.join(map(repr, unknown))}, which the manifest "
                           f"does not have; valid: {', '.join(COLUMNS)}")
    absent = [name for name in REQUIRED_COLUMNS if name not in columns]
    if absent:
        raise NeopainError(f"columns must map {', '.join(absent)} too; required: "
                           f"{', '.join(REQUIRED_COLUMNS)} (e.g. image=file,subject=id,"
                           "label=class)")
    listed = ", ".join(header)
    problems = [
        Problem(None, column, None, f"is not a column of the table (mapped to {name}); "
                                    f"the table's columns: {listed}")
        for name, column in columns.items()
        if column not in header
    ]
    if problems:
        raise ImportTableError(path, problems)
    return dict(columns)


def _image_cell(
    row: Mapping[str, str], line: int, *, image_columns: Sequence[str], root: Path,
    out_dir: Path, subfolder: str
) -> tuple[str, Problem | None]:
    """A row's manifest image cell, and the problem when its image is not found ("" and a
    problem when every image column is empty)."""
    texts = [(column, row[column].strip()) for column in image_columns if row[column].strip()]
    for _, text in texts:
        if (found := find_image(text, root=root, subfolder=subfolder)) is not None:
            return manifest_path(found, out_dir=out_dir), None
    if not texts:
        others = "".join(f" and so is {column}" for column in image_columns[1:])
        return "", Problem(line, image_columns[0], None,
                           f"is empty{others}; every row needs the path of its image")
    (column, text), *rest = texts
    also = "".join(f", nor {other} '{other_text}'" for other, other_text in rest)
    return text.replace("\\", "/"), Problem(
        line, column, text,
        f"image not found under {root}{also}, nor under any shorter end of the path")


def import_rows(
    path: Path,
    table: pd.DataFrame,
    lines: Sequence[int],
    *,
    columns: Mapping[str, str],
    image_columns: Sequence[str],
    root: Path,
    out: Path,
    label_map: Mapping[str, str],
    allow_missing: bool,
    scale: str | None = None,
    subfolder_column: str | None = None,
    on_progress: ProgressHook | None = None,
) -> ImportResult:
    """Turn checked table rows into a manifest (the loop ``import_csv`` and
    ``import_icope_unifesp`` share).

    Args:
        path: the source table, named in problems.
        table: its cells as text; ``lines`` the file line of each row.
        columns: manifest column → table column, without ``image``; ``label`` is required.
        image_columns: table columns holding the image path, tried in order (empty cells skipped).
        root: folder the image paths are looked up under (see ``find_image``).
        out: the manifest to write.
        label_map: class → pain, nopain or drop (``check_label_map`` form).
        allow_missing: drop rows whose image is missing instead of failing.
        scale: the scale of every non-empty score, when no table column gives it.
        subfolder_column: a column naming a subfolder of ``root`` that images may also lie in.
        on_progress: called as ``on_progress(done, total)`` after each row.
    """
    kept = [name for name in table.columns
            if name not in columns.values() or name in image_columns
            or (name == columns["label"] and "stimulus" in columns)]
    extras = extra_column_names(kept)
    draft = Draft(source=path)
    total = len(table)
    for i, (line, row) in enumerate(zip(lines, table.to_dict("records"))):
        if on_progress is not None:
            on_progress(i, total)
        cells = _row_cells(draft, line, row, columns=columns, label_map=label_map, scale=scale)
        if cells is None:
            continue
        cells["image"], image_problem = _image_cell(
            row, line, image_columns=image_columns, root=root, out_dir=out.parent,
            subfolder=row[subfolder_column] if subfolder_column else "")
        missing = image_problem if cells["image"] else None
        if image_problem is not None and missing is None:
            draft.problems.append(image_problem)
        cells.update({extras[name]: row[name] for name in kept})
        draft.add(line, {name: cells.get(name, "") for name in [*COLUMNS, *extras.values()]},
                  missing=missing)
    if on_progress is not None:
        on_progress(total, total)
    return finish(draft, out=out, rows_read=total, allow_missing=allow_missing,
                  source_columns={**columns, "image": image_columns[0]},
                  column_order=list(table.columns))


def _row_cells(draft: Draft, line: int, row: Mapping[str, str], *, columns: Mapping[str, str],
               label_map: Mapping[str, str], scale: str | None) -> dict[str, str] | None:
    """A row's manifest cells but the image, with its problems added to ``draft``; None when
    the label map drops the row (counted in ``draft.dropped``)."""
    label_column = columns["label"]
    original = row[label_column].strip()
    target = label_map.get(class_key(original))
    if not original:
        draft.problem(line, label_column, None, "is empty; every row needs a class")
    elif target is None:
        draft.problem(line, label_column, original, unknown_class_message(original, label_map))
    elif target == "drop":
        draft.dropped[class_key(original)] += 1
        return None
    cells = {name: row[column].strip() for name, column in columns.items()}
    cells["label"] = target or ""
    cells.setdefault("stimulus", original)
    if scale and cells.get("score") and not cells.get("scale"):
        cells["scale"] = scale
    for name, parse, form in (("face_box", box_cell, BOX_FORM),
                              ("keypoints", keypoints_cell, KEYPOINTS_FORM)):
        if name in cells:
            try:
                cells[name] = parse(cells[name])
            except ValueError as error:
                draft.problem(line, columns[name], row[columns[name]],
                              f"is not valid ({error}); valid: {form}")
                cells[name] = ""
    return cells


def read_source_table(
    path: str | os.PathLike[str], *, required_hint: str, what: str
) -> tuple[pd.DataFrame, list[int]]:
    """``read_table`` raising the importers' error type."""
    try:
        return read_table(path, required_hint=required_hint, what=what)
    except TableError as error:
        raise ImportTableError(error.path, error.problems) from None


def import_csv(
    table_path: str | os.PathLike[str],
    *,
    columns: Mapping[str, str],
    out: str | os.PathLike[str],
    root: str | os.PathLike[str] | None = None,
    label_map: Mapping[str, str] = DEFAULT_LABEL_MAP,
    scale: str | None = None,
    allow_missing: bool = False,
    on_progress: ProgressHook | None = None,
) -> ImportResult:
    """Import any CSV table given which of its columns hold the manifest's columns.

    Labels go through ``label_map`` (the original class is kept as ``stimulus`` unless a column
    is mapped to it); ``face_box`` and ``keypoints`` cells are re-written from any form
    ``coordinates`` accepts; unmapped columns are kept. Image paths are looked up as
    ``find_image`` says.

    >>> import_csv("scores.csv", columns={"image": "file", "subject": "baby", "label": "class",
    ...            "score": "nfcs"}, scale="NFCS", out="manifest.csv")  # doctest: +SKIP

    Args:
        table_path: the CSV (UTF-8, comma-separated, a header line first).
        columns: manifest column → table column; image, subject and label are required.
        out: the manifest to write; image paths in it are relative to its folder.
        root: folder image paths start from; default: the table's folder.
        label_map: class → pain, nopain or drop; unknown classes are errors.
        scale: the pain scale of the scores (NFCS, DAN, FLACC, NIPS) when no column gives it.
        allow_missing: drop rows whose image is missing (counted) instead of failing.
        on_progress: called as ``on_progress(done, total)`` while images are looked up.

    Raises:
        NeopainError: bad arguments. ImportTableError: every bad row, with its line.
    """
    path = Path(table_path)
    if scale is not None and scale not in SCALES:
        raise NeopainError(f"scale={scale!r} is not a known scale; valid: {', '.join(SCALES)}")
    label_map = check_label_map(label_map)
    table, lines = read_source_table(
        path, required_hint="a header line naming the columns comes first", what="a CSV table")
    columns = check_columns(columns, header=list(table.columns), path=path)
    root_path = check_folder(path.absolute().parent if root is None else root, name="root")
    out_path = check_out(out, source=path)
    rest = {name: column for name, column in columns.items() if name != "image"}
    return import_rows(path, table, lines, columns=rest, image_columns=[columns["image"]],
                       root=root_path, out=out_path, label_map=label_map,
                       allow_missing=allow_missing, scale=scale, on_progress=on_progress)
