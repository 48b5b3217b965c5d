"""CSV text tables: write_table and read_table round trip, rows keep their true file lines."""

from __future__ import annotations

import pandas as pd
import pytest

from neopain.data.manifest import ManifestError
from neopain.data.tables import Problem, TableError, read_table, write_table
from neopain.errors import NeopainError

HINT = "a table starts with a header naming at least: id"


def test_write_then_read_gives_the_table_back_with_file_lines(tmp_path):
    table = pd.DataFrame(
        {"id": ["a", "b", "c"], "note": ['x, "y"', "two\nlines", "ünï\r"]}, dtype=str
    )
    path = write_table(table, tmp_path / "sub" / "t.csv")
    assert path.read_bytes().startswith(b"id,note\n")
    back, lines = read_table(path, required_hint=HINT)
    pd.testing.assert_frame_equal(back, table)
    assert lines == [2, 3, 5]  # row b's cell spans lines 3 and 4


def test_blank_lines_are_skipped_but_counted(tmp_path):
    path = tmp_path / "t.csv"
    path.write_bytes(b"\nid,score\n\na,1\n  \nb,2\n")
    table, lines = read_table(path, required_hint=HINT)
    assert table.to_dict("list") == {"id": ["a", "b"], "score": ["1", "2"]}
    assert lines == [4, 6]


def test_every_bad_row_is_reported_at_once(tmp_path):
    path = tmp_path / "t.csv"
    path.write_bytes(b"id,score\na,1,x\nb,2\nc,3,y\n")
    with pytest.raises(TableError) as caught:
        read_table(path, required_hint=HINT)
    assert [p.line for p in caught.value.problems] == [2, 4]
    assert str(caught.value).startswith(f"{path}: 2 problems\n  line 2: has 3 cells")


def test_empty_file_and_folder_messages_use_the_hint_and_what(tmp_path):
    path = tmp_path / "t.csv"
    path.write_bytes(b"")
    with pytest.raises(TableError) as caught:
        read_table(path, required_hint=HINT)
    assert caught.value.problems == [Problem(None, None, None, f"file is empty; {HINT}")]
    with pytest.raises(TableError) as caught:
        read_table(tmp_path, required_hint=HINT, what="a pain-score CSV file")
    assert caught.value.problems[0].message == "is a folder; expected a pain-score CSV file"


def test_manifest_error_is_a_table_error():
    assert issubclass(ManifestError, TableError)
    assert issubclass(TableError, NeopainError)
