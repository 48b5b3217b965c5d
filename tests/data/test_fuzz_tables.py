"""Property: any bytes handed in as a table, manifest or coordinate cell either parse or raise the
package's error (NeopainError for files, ValueError for cells) — never another exception, which
the CLI would show as a traceback (issue 16: RecursionError from a deep face_box, OSError from a
long image name)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from fuzz.inputs import examples
from neopain.data.importers import import_csv
from neopain.data.importers.coordinates import box_cell, keypoints_cell
from neopain.data.manifest import Manifest, load_manifest, parse_box, parse_keypoints
from neopain.data.tables import TableError, read_table
from neopain.errors import NeopainError

FUZZ = examples(150, deadline_ms=5000)

# cells a careless user or a hostile file puts in a manifest
NASTY_CELLS = st.sampled_from([
    "", " ", "nan", "NaN", "inf", "-Infinity", "1e400", "1" * 5000, "[" * 3000 + "]" * 3000,
    '{"a":' * 200 + "1" + "}" * 200, "[1, 2, 3, 4]", "[1, 1, 0, 0]", "[[1, 2]] * 5", "\x00",
    "a" * 300 + ".jpg", "/dev/zero", "..", "/", "\ufeffimage", "pain", "nopain", "\u202e",
    '"', "\r", "\n", ",", "[NaN, 1, 2, 3]", "[1e309, 0, 2, 2]", "[true, 1, 2, 3]",
    "[[1,2],[3,4],[5,6],[7,8],[9,10]]", "[[1,2],[3,4],[5,6],[7,8],[9]]", "NFCS", "-1",
])
CELLS = st.one_of(NASTY_CELLS, st.text(max_size=40))


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """One folder for every example (a function-scoped tmp_path is not reset between them)."""
    return tmp_path_factory.mktemp("fuzz-tables")


def _write(folder: Path, data: bytes) -> Path:
    path = folder / "table.csv"
    path.write_bytes(data)
    return path


@FUZZ
@given(st.binary(max_size=2000))
def test_any_bytes_read_as_a_table_or_raise_table_error(folder, data):
    path = _write(folder, data)
    try:
        table, lines = read_table(path, required_hint="a header")
    except TableError as error:
        assert error.problems and str(path) in str(error)
    else:
        assert len(lines) == len(table) and lines == sorted(lines)
        assert all(isinstance(cell, str) for cell in table.to_numpy().ravel())


HEADERS = st.permutations(["image", "subject", "label", "face_box", "keypoints", "score"]).flatmap(
    lambda known: st.lists(st.sampled_from(["source", "scale", "time_s", "video", "extra"]),
                           max_size=3, unique=True).map(lambda more: [*known, *more]))


@FUZZ
@given(HEADERS.flatmap(lambda header: st.tuples(
    st.just(header), st.lists(st.lists(CELLS, min_size=len(header), max_size=len(header)),
                              max_size=5))), st.booleans())
def test_any_manifest_text_loads_or_raises_neopain_error(folder, table, check_files):
    """Whatever the header and cells, load_manifest returns a manifest whose boxes and keypoints
    parse, or raises NeopainError (files are checked too: long names, NUL, /dev/zero)."""
    header, rows = table

    def line(cells: list[str]) -> str:
        return ",".join('"' + cell.replace('"', '""') + '"' for cell in cells)

    text = "\n".join([line(header), *(line(row) for row in rows)]) + "\n"
    path = _write(folder, text.encode("utf-8", "surrogatepass"))
    try:
        manifest = load_manifest(path, check_files=check_files)
    except NeopainError as error:
        assert str(path) in str(error)
    else:
        assert isinstance(manifest, Manifest)
        boxes, points = manifest.boxes(), manifest.keypoints()
        assert boxes.shape == (len(manifest), 4) and points.shape == (len(manifest), 5, 2)
        filled = ~np.isnan(boxes).any(axis=1)
        assert (boxes[filled, 2] > boxes[filled, 0]).all()


@FUZZ
@given(CELLS)
def test_any_cell_parses_as_box_and_keypoints_or_raises_value_error(text):
    for parse in (parse_box, parse_keypoints):
        try:
            value = parse(text)
        except ValueError as error:
            assert str(error)
        else:
            assert value is None or all(math.isfinite(v) for v in np.ravel(value))


@FUZZ
@given(st.one_of(CELLS, st.text(alphabet="[](),. 0123456789eE+-naryp", max_size=60)))
def test_any_importer_coordinate_text_gives_a_cell_or_a_value_error(text):
    """The importers' coordinate parser (numpy printouts, tuples, np.float64(...)) never raises
    anything but ValueError, and what it writes is a valid manifest cell."""
    for convert, parse in ((box_cell, parse_box), (keypoints_cell, parse_keypoints)):
        try:
            cell = convert(text)
        except ValueError as error:
            assert str(error)
        else:
            assert cell == "" or parse(cell) is not None


@examples(60, deadline_ms=5000)
@given(st.lists(st.tuples(st.one_of(NASTY_CELLS, st.text(max_size=300)), CELLS, CELLS),
                min_size=1, max_size=4), st.booleans())
def test_any_table_imports_or_raises_neopain_error(folder, rows, allow_missing):
    """The importer looks every image name up on disk (too long, NUL, a device, a folder) and
    re-writes coordinates: it writes a manifest or raises NeopainError."""
    lines = "".join(",".join('"' + cell.replace('"', '""') + '"' for cell in row) + "\n"
                    for row in rows)
    path = _write(folder, ("image,label,face_box\n" + lines).encode("utf-8", "surrogatepass"))
    try:
        result = import_csv(path, columns={"image": "image", "subject": "image",
                                           "label": "label", "face_box": "face_box"},
                            out=folder / "manifest.csv", allow_missing=allow_missing)
    except NeopainError as error:
        assert str(path) in str(error)  # the table at fault, by name (not the output's)
    else:
        assert load_manifest(result.manifest, check_files=True).table is not None
