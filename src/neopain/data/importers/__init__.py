"""Importers: a dataset's own layout → a validated manifest (``neopain dataset import``).

- ``import_icope_unifesp``: the published iCOPE+UNIFESP table;
- ``import_folder``: a folder tree such as ``root/<label>/<subject>/*.jpg``;
- ``import_csv``: any CSV table, given which column holds what.

Each one reports every bad row at once (``ImportTableError``), looks images up under a root,
maps original classes to ``pain`` / ``nopain`` through a label map, validates the result as a
manifest and only then writes it, and returns an ``ImportResult`` with the counts.
"""

from neopain.data.importers.common import IMAGE_SUFFIXES, ImportResult, ImportTableError, find_image
from neopain.data.importers.coordinates import box_cell, keypoints_cell, parse_nested
from neopain.data.importers.folder import DEFAULT_PATTERN, compile_pattern, import_folder
from neopain.data.importers.icope_unifesp import ICOPE_UNIFESP_COLUMNS, import_icope_unifesp
from neopain.data.importers.labels import (
    DEFAULT_LABEL_MAP,
    LABEL_TARGETS,
    PAIN_VS_REST_LABEL_MAP,
    check_label_map,
    parse_label_map,
)
from neopain.data.importers.table import import_csv, parse_column_map

__all__ = [
    "DEFAULT_LABEL_MAP",
    "DEFAULT_PATTERN",
    "ICOPE_UNIFESP_COLUMNS",
    "IMAGE_SUFFIXES",
    "LABEL_TARGETS",
    "PAIN_VS_REST_LABEL_MAP",
    "ImportResult",
    "ImportTableError",
    "box_cell",
    "check_label_map",
    "compile_pattern",
    "find_image",
    "import_csv",
    "import_folder",
    "import_icope_unifesp",
    "keypoints_cell",
    "parse_column_map",
    "parse_label_map",
    "parse_nested",
]
