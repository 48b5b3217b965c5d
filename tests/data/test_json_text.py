"""JSON a user hands in (manifest cells, folds.json, a model's metadata, metrics.json) is parsed
with its nesting bounded: json.loads recursed once per level, so 3,000 nested lists raised
RecursionError, which no caller caught (a traceback from ``dataset validate`` and ``assess``)."""

from __future__ import annotations

import json

import pytest

from neopain.data.folds import FoldsError, load_folds
from neopain.data.json_text import MAX_DEPTH, parse_json
from neopain.export.metadata import ExportedCfg, ModelFileError


@pytest.mark.parametrize("text", ["[" * 3000 + "]" * 3000, '{"a":' * 3000 + "1" + "}" * 3000,
                                  "[" * 100_000])
def test_deep_json_is_a_decode_error_naming_the_depth(text):
    with pytest.raises(json.JSONDecodeError, match=f"nested deeper than {MAX_DEPTH} levels"):
        parse_json(text)


def test_brackets_inside_strings_do_not_count_and_shallow_json_parses():
    text = json.dumps({"note": "[" * 100 + '\\"[{', "list": [[1, 2], [3, 4]]})
    assert parse_json(text) == json.loads(text)
    assert parse_json("[[[1]]]", max_depth=3) == [[[1]]]
    with pytest.raises(json.JSONDecodeError, match="nested deeper than 2 levels"):
        parse_json("[[[1]]]", max_depth=2)


def test_long_text_and_long_numbers_are_decode_errors():
    with pytest.raises(json.JSONDecodeError, match="longer than 10 characters"):
        parse_json("[1, 2, 3, 4, 5]", max_chars=10)
    # int() refuses over 4,300 digits with a ValueError that is no JSONDecodeError
    with pytest.raises(json.JSONDecodeError, match="a number has more than 4,300 digits"):
        parse_json("[1" + "0" * 5000 + "]")


def test_a_deep_folds_json_is_a_folds_error(tmp_path):
    path = tmp_path / "folds.json"
    path.write_text('{"folds": ' + "[" * 3000 + "]" * 3000 + "}")
    with pytest.raises(FoldsError, match="not valid JSON \\(nested deeper than 32 levels\\)"):
        load_folds(path)


def test_a_deep_model_metadata_is_a_model_file_error():
    with pytest.raises(ModelFileError, match="nested deeper than 32 levels"):
        ExportedCfg.from_json("[" * 3000 + "]" * 3000, source="model.onnx")
