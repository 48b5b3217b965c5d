"""The published iCOPE+UNIFESP table → manifest.

Columns: ``file_name, subject, gender, class, dataset, NFCS, new_subject, new_file_name,
face_coordinates, keypoints_coordinates``. ``file_name`` is the original path with Windows
backslashes (``Datasets\\Originais\\iCOPE\\pilot\\S04_M_air_1.jpg``), ``new_file_name`` the
standardized name; ``new_subject`` is the subject id across both datasets; ``NFCS`` is empty
for iCOPE. Boxes and keypoints are ``"[x1, y1, x2, y2]"`` and five ``[x, y]`` pairs.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from neopain.data.importers.common import (
    ImportResult,
    ImportTableError,
    ProgressHook,
    check_folder,
    check_out,
)
from neopain.data.importers.labels import DEFAULT_LABEL_MAP, check_label_map
from neopain.data.importers.table import import_rows, read_source_table
from neopain.data.tables import Problem

ICOPE_UNIFESP_COLUMNS = (
    "file_name", "subject", "gender", "class", "dataset", "NFCS", "new_subject", "new_file_name",
    "face_coordinates", "keypoints_coordinates",
)  # fmt: skip
IMAGE_COLUMNS = ("new_file_name", "file_name")
"""Where the image path is read from, in this order: the first that exists under the root."""

MANIFEST_COLUMNS = {
    "subject": "new_subject",
    "label": "class",
    "source": "dataset",
    "score": "NFCS",
    "face_box": "face_coordinates",
    "keypoints": "keypoints_coordinates",
}
"""Manifest column ← table column. The class is also kept as ``stimulus``; the table's own
``subject`` (per-dataset id) becomes ``original_subject``; all other columns are kept."""

_REQUIRED = ("class", "dataset", "new_subject")
_HINT = f"the iCOPE+UNIFESP table starts with its header: {', '.join(ICOPE_UNIFESP_COLUMNS)}"


def import_icope_unifesp(
    table_path: str | os.PathLike[str],
    *,
    out: str | os.PathLike[str],
    root: str | os.PathLike[str] | None = None,
    label_map: Mapping[str, str] = DEFAULT_LABEL_MAP,
    allow_missing: bool = False,
    on_progress: ProgressHook | None = None,
) -> ImportResult:
    """Import the iCOPE+UNIFESP table into a manifest and write it to ``out``.

    Each row's image is looked up under ``root`` by ``new_file_name``, then ``file_name``
    (backslashes read as ``/``): the whole path, then each shorter end of it, each also under
    ``root/<dataset>`` (see ``find_image``). ``NFCS`` becomes ``score`` with scale ``NFCS``.

    >>> import_icope_unifesp("iCOPE+UNIFESP_data.csv", root="Datasets/Originais",
    ...                      out="icope_unifesp.csv",
    ...                      label_map=PAIN_VS_REST_LABEL_MAP)  # doctest: +SKIP

    Args:
        table_path: the published CSV.
        out: the manifest to write; image paths in it are relative to its folder.
        root: folder the image paths are looked up under; default: the table's folder.
        label_map: class → pain, nopain or drop (default ``DEFAULT_LABEL_MAP``;
            ``PAIN_VS_REST_LABEL_MAP`` keeps pain and rest only).
        allow_missing: drop rows whose image is missing (counted) instead of failing.
        on_progress: called as ``on_progress(done, total)`` while images are looked up.

    Raises:
        NeopainError: bad arguments. ImportTableError: every bad row at its file line (unknown
            class, coordinates that do not parse, empty subject, missing image, ...).
    """
    path = Path(table_path)
    label_map = check_label_map(label_map)
    table, lines = read_source_table(path, required_hint=_HINT, what="the iCOPE+UNIFESP table")
    header = list(table.columns)
    absent = [name for name in _REQUIRED if name not in header]
    images = [name for name in IMAGE_COLUMNS if name in header]
    if not images:
        absent.append(" or ".join(IMAGE_COLUMNS))
    if absent:
        found = ", ".join(header)
        raise ImportTableError(path, [
            Problem(None, name, None, f"required column is missing; the table has: {found}")
            for name in absent
        ])
    columns = {name: column for name, column in MANIFEST_COLUMNS.items() if column in header}
    root_path = check_folder(path.absolute().parent if root is None else root, name="root")
    return import_rows(path, table, lines, columns=columns, image_columns=images,
                       root=root_path, out=check_out(out, source=path), label_map=label_map,
                       allow_missing=allow_missing, scale="NFCS", subfolder_column="dataset",
                       on_progress=on_progress)
