"""The manifest schema: lossless round trips; every problem named by its file line and column."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from neopain.data.manifest import (
    COLUMNS,
    LABELS,
    REQUIRED_COLUMNS,
    SCALES,
    Manifest,
    ManifestError,
    Problem,
    format_box,
    format_keypoints,
    load_manifest,
    normalize_table,
    parse_box,
    parse_keypoints,
    save_manifest,
    sha256_file,
    validate_table,
)
from neopain.errors import NeopainError

KEYPOINTS = [[30.0, 40.0], [60.0, 40.0], [45.0, 55.0], [35.0, 70.0], [55.0, 70.0]]


def write_text(path: Path, text: str) -> Path:
    path.write_bytes(text.encode("utf-8"))
    return path


def problems_in(path: Path, *, check_files: bool = False) -> list[Problem]:
    with pytest.raises(ManifestError) as caught:
        load_manifest(path, check_files=check_files)
    assert caught.value.path == path
    return caught.value.problems


def places(problems: list[Problem]) -> set[tuple[int | None, str | None]]:
    return {(problem.line, problem.column) for problem in problems}


def full_table() -> pd.DataFrame:
    """Two valid rows using every known column, plus unknown columns with awkward text."""
    return pd.DataFrame(
        {
            "notes": ['has, comma and "quotes"', "two\nlines and ünïcode"],
            "image": ["faces/a.png", "faces/b.png"],
            "subject": ["s01", "s02"],
            "label": ["pain", "nopain"],
            "source": ["icope", "unifesp"],
            "stimulus": ["puncture", "rest"],
            "score": ["5", "0.5"],
            "scale": ["NFCS", "DAN"],
            "video": ["v/a.mp4", ""],
            "time_s": ["1.25", ""],
            "face_box": [format_box((10, 20, 90.123, 110)), ""],
            "keypoints": [format_keypoints(KEYPOINTS), ""],
            "landmarks": ["lm/a.npy", ""],
            "site": ["ward 3", ""],
        }
    )


# --- round trip -------------------------------------------------------------------------------


def test_save_then_load_gives_back_the_table_with_unknown_columns_after_known(tmp_path):
    path = save_manifest(full_table(), tmp_path / "manifest.csv")
    manifest = load_manifest(path)
    assert list(manifest.table.columns) == [*COLUMNS, "notes", "site"]
    pd.testing.assert_frame_equal(manifest.table, normalize_table(full_table()))
    assert manifest.table.loc[1, "notes"] == "two\nlines and ünïcode"


def test_saving_equal_tables_gives_identical_bytes_with_newline_endings(tmp_path):
    first = save_manifest(full_table(), tmp_path / "first.csv")
    reloaded = load_manifest(first)
    second = save_manifest(reloaded, tmp_path / "second.csv")
    assert first.read_bytes() == second.read_bytes()
    assert b"\r\n" not in first.read_bytes()
    assert first.read_bytes().startswith(b"image,subject,label,source,")


def test_round_trip_keeps_a_lone_carriage_return_inside_a_cell(tmp_path):
    table = pd.DataFrame({"image": ["a\rb.png"], "subject": ["s"], "label": ["pain"]})
    manifest = load_manifest(save_manifest(table, tmp_path / "m.csv"))
    assert manifest.table.loc[0, "image"] == "a\rb.png"


def test_absent_optional_columns_are_added_empty(tmp_path):
    path = write_text(tmp_path / "m.csv", "label,image,subject,ward\npain,a.png,s1,3\n")
    manifest = load_manifest(path)
    assert list(manifest.table.columns) == [*COLUMNS, "ward"]
    assert manifest.table.loc[0, "score"] == ""
    assert (manifest.table.dtypes.map(str).isin(["object", "str", "string"])).all()


def test_header_names_are_stripped_and_a_utf8_bom_is_ignored(tmp_path):
    path = tmp_path / "m.csv"
    path.write_bytes("\ufeff image , subject,label \na.png,s1,pain\n".encode("utf-8"))
    assert load_manifest(path).table.loc[0, "image"] == "a.png"


def test_non_string_cells_are_written_as_text_and_nan_as_empty(tmp_path):
    table = pd.DataFrame(
        {"image": ["a.png", "b.png"], "subject": [1, 2], "label": LABELS, "score": [3, None]}
    )
    manifest = load_manifest(save_manifest(table, tmp_path / "m.csv"))
    assert manifest.table["subject"].tolist() == ["1", "2"]
    assert manifest.table["score"].tolist() == ["3.0", ""]


# --- problems: one per kind, with the line an editor shows ------------------------------------

VALID_ROW = {
    "image": "b.png",
    "subject": "s2",
    "label": "nopain",
    "score": "2",
    "scale": "NFCS",
    "time_s": "0.5",
    "face_box": "[1, 2, 30, 40]",
    "keypoints": json.dumps(KEYPOINTS),
}


@pytest.mark.parametrize(
    ("column", "value", "says"),
    [
        ("image", "", "is empty"),
        ("subject", " ", "is empty"),
        ("label", "", "valid: pain, nopain"),
        ("label", "Pain?", "is not a valid label; valid: pain, nopain"),
        ("score", "-1", "valid: a number >= 0"),
        ("score", "abc", "valid: a number >= 0"),
        ("score", "nan", "valid: a number >= 0"),
        ("scale", "nfcs", "valid: NFCS, DAN, FLACC, NIPS"),
        ("time_s", "-0.1", "valid: a number >= 0"),
        ("time_s", "inf", "valid: a number >= 0"),
        ("face_box", "1,2,3,4", "not JSON"),
        ("face_box", "[1, 2, 3]", "list of 4 numbers"),
        ("face_box", "[5, 2, 3, 40]", "x2 must be greater than x1"),
        ("face_box", "[1, NaN, 3, 4]", "finite"),
        ("keypoints", "[[1, 2]]", "5 [x, y] pairs"),
        ("keypoints", '[[1, 2], [1, 2], [1, 2], [1, 2], [1, "x"]]', "[x, y]"),
    ],
)
def test_each_bad_cell_is_reported_at_its_line_and_column(tmp_path, column, value, says):
    good = {**VALID_ROW, "image": "a.png", "subject": "s1"}
    bad = {**VALID_ROW, column: value}
    path = save_manifest(pd.DataFrame([good, bad]), tmp_path / "m.csv")
    [problem] = problems_in(path)
    assert (problem.line, problem.column) == (3, column)
    assert says in problem.message
    assert problem.value == (None if not value.strip() else value)


def test_unparseable_face_box_message_gives_the_reason_and_the_valid_form(tmp_path):
    path = write_text(tmp_path / "m.csv", 'image,subject,label,face_box\na.png,s,pain,"[1, 2]"\n')
    [problem] = problems_in(path)
    assert "list of 4 numbers" in problem.message
    assert "[x1, y1, x2, y2]" in problem.message


def test_each_missing_required_column_is_one_problem_without_a_line(tmp_path):
    path = write_text(tmp_path / "m.csv", "image,source\na.png,icope\n")
    problems = problems_in(path)
    assert places(problems) == {(None, "subject"), (None, "label")}
    assert all(", ".join(REQUIRED_COLUMNS) in problem.message for problem in problems)


def test_a_semicolon_separated_file_gets_a_hint(tmp_path):
    path = write_text(tmp_path / "m.csv", "image;subject;label\na.png;s;pain\n")
    assert any("';'" in problem.message for problem in problems_in(path))


def test_several_different_problems_are_all_reported_not_only_the_first(tmp_path):
    text = (
        "image,subject,label,score,face_box,keypoints\n"
        "a.png,s1,pain,3,,\n"
        "b.png,,nopain,,,\n"  # line 3: empty subject
        "c.png,s2,Pain,x,,\n"  # line 4: bad label and bad score
        'd.png,s2,pain,,"[1,2,3]","[[1,2]]"\n'  # line 5: bad box and keypoints
        "a.png,s3,nopain,,,\n"  # line 6: duplicate image
    )
    problems = problems_in(write_text(tmp_path / "m.csv", text))
    assert places(problems) == {
        (3, "subject"),
        (4, "label"),
        (4, "score"),
        (5, "face_box"),
        (5, "keypoints"),
        (6, "image"),
    }
    assert [p.line for p in problems] == sorted(p.line for p in problems)


def test_duplicate_image_names_the_line_of_the_first_occurrence(tmp_path):
    text = "image,subject,label\na.png,s1,pain\nb.png,s1,pain\n./a.png,s2,nopain\n"
    [problem] = problems_in(write_text(tmp_path / "m.csv", text))
    assert (problem.line, problem.column, problem.value) == (4, "image", "./a.png")
    assert "line 2" in problem.message


def test_line_numbers_count_blank_lines_and_cells_spanning_lines(tmp_path):
    text = 'image,subject,label,notes\na.png,s1,pain,"two\nlines"\n\nb.png,s2,sore,\n'
    [problem] = problems_in(write_text(tmp_path / "m.csv", text))
    assert (problem.line, problem.column) == (5, "label")


def test_empty_optional_cells_and_unknown_columns_are_valid(tmp_path):
    text = "image,subject,label,score,scale,face_box,keypoints,my col\na.png,s1,pain,,,,,anything\n"
    assert len(load_manifest(write_text(tmp_path / "m.csv", text))) == 1


def test_validate_table_in_memory_counts_lines_as_saved_and_nan_as_empty(tmp_path):
    table = pd.DataFrame({"image": ["a", "b"], "subject": ["s", np.nan], "label": ["pain", None]})
    problems = validate_table(table, root=tmp_path)
    assert places(problems) == {(3, "subject"), (3, "label")}


def test_duplicate_column_names_in_a_dataframe_are_a_problem_not_a_crash(tmp_path):
    columns = ["image", "subject", "label", "label"]
    table = pd.DataFrame([["a.png", "s", "pain", "pain"]], columns=columns)
    assert places(validate_table(table, root=tmp_path)) == {(None, "label")}


# --- check_files --------------------------------------------------------------------------------


def test_check_files_finds_files_relative_to_the_manifest_not_the_cwd(tmp_path, monkeypatch):
    folder = tmp_path / "data"
    (folder / "faces").mkdir(parents=True)
    cv2.imwrite(str(folder / "faces" / "a.png"), np.zeros((8, 8, 3), np.uint8))
    np.save(folder / "a.npy", np.zeros((3, 2)))
    absolute = tmp_path / "elsewhere.png"
    absolute.write_bytes(b"\x89PNG")
    text = (
        "image,subject,label,video,landmarks\n"
        "faces/a.png,s1,pain,,a.npy\n"
        f"{absolute},s1,nopain,,\n"
        "faces/gone.png,s2,pain,missing.mp4,missing.npy\n"
    )
    path = write_text(folder / "m.csv", text)
    monkeypatch.chdir(tmp_path)
    assert len(load_manifest(path)) == 3
    problems = problems_in(path, check_files=True)
    assert places(problems) == {(4, "image"), (4, "video"), (4, "landmarks")}
    assert all("not found" in problem.message for problem in problems)


# --- arrays, paths and summary -------------------------------------------------------------------


def test_boxes_and_keypoints_are_arrays_with_nan_rows_for_empty_cells(tmp_path):
    manifest = load_manifest(save_manifest(full_table(), tmp_path / "m.csv"))
    boxes, points = manifest.boxes(), manifest.keypoints()
    assert boxes.shape == (2, 4) and points.shape == (2, 5, 2)
    np.testing.assert_allclose(boxes[0], [10, 20, 90.12, 110])
    np.testing.assert_allclose(points[0], KEYPOINTS)
    assert np.isnan(boxes[1]).all() and np.isnan(points[1]).all()


def test_image_path_is_relative_to_the_manifest_folder_unless_absolute(tmp_path, monkeypatch):
    images = ["faces/a.png", "/abs/b.png"]
    table = pd.DataFrame({"image": images, "subject": ["1", "2"], "label": ["pain"] * 2})
    path = save_manifest(table, tmp_path / "sub" / "m.csv")
    monkeypatch.chdir(tmp_path)
    manifest = load_manifest(Path("sub/m.csv"))
    assert manifest.image_path(0) == tmp_path / "sub" / "faces" / "a.png"
    assert manifest.image_path(1) == Path("/abs/b.png")
    assert path.exists()


def test_summary_counts_rows_per_source_and_label_with_missing_source_as_none():
    table = pd.DataFrame(
        {
            "image": [f"{i}.png" for i in range(6)],
            "subject": ["a", "a", "b", "c", "c", "d"],
            "label": ["pain", "nopain", "pain", "pain", "pain", "nopain"],
            "source": ["icope", "icope", "unifesp", "unifesp", "", "icope"],
        }
    )
    summary = Manifest(table=table, root=Path(".")).summary()
    assert (summary.rows, summary.subjects, summary.sources) == (6, 4, 3)
    assert summary.counts.loc["icope"].to_dict() == {"pain": 1, "nopain": 2}
    assert summary.counts.loc["unifesp"].to_dict() == {"pain": 2, "nopain": 0}
    assert summary.counts.loc["(none)"].to_dict() == {"pain": 1, "nopain": 0}
    assert list(summary.counts.columns) == list(LABELS)
    assert int(summary.counts.to_numpy().sum()) == 6


def test_subjects_are_sorted_and_distinct():
    table = pd.DataFrame({"image": list("123"), "subject": list("bab"), "label": ["pain"] * 3})
    assert Manifest(table=table, root=Path(".")).subjects == ["a", "b"]


# --- parse and format helpers --------------------------------------------------------------------


def test_format_box_rounds_to_two_decimals_in_compact_json():
    assert format_box((12.5, 30, 80.254, 99)) == "[12.5, 30.0, 80.25, 99.0]"
    assert format_box(np.array([-0.001, 0, 1, 2])) == "[0.0, 0.0, 1.0, 2.0]"
    assert format_box(None) == ""


def test_format_keypoints_rounds_and_parse_keypoints_reads_it_back():
    points = np.array(KEYPOINTS) + 0.004
    text = format_keypoints(points)
    assert text == "[[30.0, 40.0], [60.0, 40.0], [45.0, 55.0], [35.0, 70.0], [55.0, 70.0]]"
    np.testing.assert_array_equal(parse_keypoints(text), np.array(KEYPOINTS))
    assert format_keypoints(None) == "" and parse_keypoints("") is None


def test_parse_box_reads_format_box_and_empty_is_none():
    assert parse_box(format_box((1.5, 2, 3, 4.25))) == (1.5, 2.0, 3.0, 4.25)
    assert parse_box("") is None and parse_box("  ") is None


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("[1, 2, 3", "not JSON"),
        ("[1, 2, 3]", "4 numbers"),
        ('{"x1": 1}', "4 numbers"),
        ("[1, 2, true, 4]", "number"),
        ("[1, 2, 1e999, 4]", "finite"),
        ("[3, 2, 3, 4]", "x2 must be greater than x1"),
        ("[1, 4, 3, 4]", "y2 greater than y1"),
    ],
)
def test_parse_box_rejects_bad_text_with_the_reason(text, reason):
    with pytest.raises(ValueError, match=reason):
        parse_box(text)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("nope", "not JSON"),
        ("[[1, 2]]", "5"),
        ("[[1, 2, 3], [1, 2], [1, 2], [1, 2], [1, 2]]", "2 numbers"),
    ],
)
def test_parse_keypoints_rejects_bad_text_with_the_reason(text, reason):
    with pytest.raises(ValueError, match=reason):
        parse_keypoints(text)


def test_format_helpers_refuse_values_that_would_not_load():
    with pytest.raises(ValueError):
        format_box((1, 2, 3))
    with pytest.raises(ValueError):
        format_box((5, 2, 3, 4))
    with pytest.raises(ValueError):
        format_keypoints(np.full((5, 2), np.nan))


# --- unreadable files give ManifestError, never a pandas or codec exception --------------------


@pytest.mark.parametrize(
    ("content", "line", "says"),
    [
        (b"", None, "empty"),
        (b"  \n\n", None, "empty"),
        (b"image,subject,label\na.png,s,pain\nb\xe9.png,s,pain\n", 3, "UTF-8"),
        (b'image,subject,label\na.png,"s,pain\nb.png,s,pain\n', 2, "CSV"),
        (b'image,subject,label\na.png,"s"x,pain\n', 2, "CSV"),
        (b"image,subject,label\na.png,s,pain,extra\n", 2, "4 cells"),
        (b"image,subject,label,label\na.png,s,pain,pain\n", 1, "2 times"),
        (b"image,subject,label,,\na.png,s,pain,,x\n", 1, "name the column"),
    ],
)
def test_unreadable_files_raise_manifest_error_naming_the_line(tmp_path, content, line, says):
    path = tmp_path / "m.csv"
    path.write_bytes(content)
    [problem] = problems_in(path)
    assert problem.line == line
    assert says in problem.message


def test_missing_file_and_folder_raise_manifest_error(tmp_path):
    assert "not found" in problems_in(tmp_path / "absent.csv")[0].message
    assert "folder" in problems_in(tmp_path)[0].message


def test_trailing_empty_cells_and_rows_from_spreadsheets_are_ignored(tmp_path):
    path = write_text(tmp_path / "m.csv", "image,subject,label,\na.png,s,pain,,\n,,,\n")
    manifest = load_manifest(path)
    assert len(manifest) == 1
    assert list(manifest.table.columns) == list(COLUMNS)


# --- error text ----------------------------------------------------------------------------------


def test_problem_text_names_line_column_and_value():
    problem = Problem(5, "label", "Pain?", "is not a valid label; valid: pain, nopain")
    expected = "line 5, column 'label': 'Pain?' is not a valid label; valid: pain, nopain"
    assert str(problem) == expected
    assert str(Problem(None, "subject", None, "required column is missing")) == (
        "column 'subject': required column is missing"
    )


def test_long_values_are_shortened_in_problems(tmp_path):
    path = write_text(tmp_path / "m.csv", f"image,subject,label\na.png,s,{'x' * 500}\n")
    [problem] = problems_in(path)
    assert len(problem.value) <= 60
    assert len(str(problem)) < 200


def test_manifest_error_text_counts_and_lists_every_problem_up_to_fifty(tmp_path):
    rows = "".join(f"{i}.png,s,bad\n" for i in range(70))
    path = write_text(tmp_path / "m.csv", "image,subject,label\n" + rows)
    with pytest.raises(ManifestError) as caught:
        load_manifest(path)
    text = str(caught.value)
    assert isinstance(caught.value, NeopainError)
    assert text.startswith(f"{path}: 70 problems")
    assert "line 51, column 'label'" in text and "line 52," not in text
    assert text.endswith("... and 20 more")
    assert len(caught.value.problems) == 70


def test_sha256_file_matches_hashlib(tmp_path):
    path = save_manifest(full_table(), tmp_path / "m.csv")
    assert sha256_file(path) == hashlib.sha256(path.read_bytes()).hexdigest()


def test_constants_match_the_design():
    assert COLUMNS[:3] == REQUIRED_COLUMNS == ("image", "subject", "label")
    assert LABELS == ("pain", "nopain")
    assert SCALES == ("NFCS", "DAN", "FLACC", "NIPS")
