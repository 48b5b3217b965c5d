"""data.files: the regular-file check answers with a structured error, not text to compare."""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import pytest

from neopain.data.files import FileReadError, open_regular, regular_file_error
from neopain.data.images import ImageReadError, read_image
from neopain.data.json_text import JSONLimitError, parse_json


def test_missing_is_a_flag_not_a_reason_text(tmp_path: Path):
    """Five callers compared reason == "file not found" to tell a missing file from a bad one;
    a reworded reason would have turned every missing file into a hard error."""
    missing = regular_file_error(tmp_path / "none.csv")
    assert missing is not None and missing.missing and missing.reason == "file not found"
    folder = regular_file_error(tmp_path, what="a table")
    assert folder is not None and not folder.missing
    assert folder.reason == "is a folder; expected a table"
    (tmp_path / "ok.csv").write_text("a\n")
    assert regular_file_error(tmp_path / "ok.csv") is None
    with pytest.raises(FileReadError) as caught:
        open_regular(tmp_path / "none.csv")
    assert caught.value.missing
    with pytest.raises(ImageReadError) as image_error:
        read_image(tmp_path / "none.png")
    assert image_error.value.missing


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_a_fifo_is_not_missing(tmp_path: Path):
    os.mkfifo(tmp_path / "fifo")
    error = regular_file_error(tmp_path / "fifo")
    assert error is not None and not error.missing and "FIFO" in error.reason


def test_file_read_error_pickles_with_its_flag():
    error = pickle.loads(pickle.dumps(FileReadError("a.csv", "file not found", missing=True)))
    assert (error.path, error.reason, error.missing) == ("a.csv", "file not found", True)
    assert str(error) == "a.csv: file not found"
    image = pickle.loads(pickle.dumps(ImageReadError("b.png", "file not found", missing=True)))
    assert image.missing and image.source == "b.png"


def test_json_limits_are_their_own_error_class():
    """manifest.py told a limit from bad syntax by the message's first word."""
    with pytest.raises(JSONLimitError, match="nested deeper than 2 levels"):
        parse_json("[[[1]]]", max_depth=2)
    with pytest.raises(JSONLimitError, match="longer than 3 characters"):
        parse_json("[1, 2]", max_chars=3)
    with pytest.raises(json.JSONDecodeError) as caught:
        parse_json("[1,")
    assert not isinstance(caught.value, JSONLimitError)
