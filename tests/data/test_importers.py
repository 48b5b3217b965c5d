"""Importers: the published iCOPE+UNIFESP table, folder trees and any CSV become valid manifests;
every bad row is named at its file line; missing images are all reported or dropped with a count."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from neopain.data.importers import (
    DEFAULT_LABEL_MAP,
    PAIN_VS_REST_LABEL_MAP,
    ImportTableError,
    box_cell,
    compile_pattern,
    find_image,
    import_csv,
    import_folder,
    import_icope_unifesp,
    keypoints_cell,
    parse_column_map,
    parse_label_map,
)
from neopain.data.manifest import load_manifest, parse_keypoints
from neopain.errors import NeopainError

HEADER = ("file_name,subject,gender,class,dataset,NFCS,new_subject,new_file_name,"
          "face_coordinates,keypoints_coordinates")

# The published format, written literally: Windows backslashes, quoted Python lists, NFCS empty
# for iCOPE. Keypoints come in the three textual forms published copies use.
ICOPE_UNIFESP_ROWS = [
    r'Datasets\Originais\iCOPE\pilot\S04_M_air_1.jpg,S04,M,air,iCOPE,,4,0001_iCOPE_4_air.jpg,'
    r'"[10, 12, 50, 60]","[[20, 30], [40, 30], [30, 40], [22, 50], [38, 50]]"',
    r'Datasets\Originais\iCOPE\pilot\S04_M_pain_1.jpg,S04,M,pain,iCOPE,,4,0002_iCOPE_4_pain.jpg,'
    r'"[11, 12, 51, 60]","[(21, 30), (41, 30), (31, 40), (23, 50), (39, 50)]"',
    r'Datasets\Originais\iCOPE\pilot\S04_M_rest_1.jpg,S04,M,nopain,iCOPE,,4,0003_iCOPE_4_nopain.jpg,'
    '"[12, 12, 52, 60]","[[22 30]\n [42 30]\n [32 40]\n [24 50]\n [40 50]]"',
    r'Datasets\Originais\iCOPE\S05_F_cry_2.jpg,S05,F,cry,iCOPE,,5,0004_iCOPE_5_cry.jpg,'
    r'"[13, 12, 53, 60]","[[20, 30], [40, 30], [30, 40], [22, 50], [38, 50]]"',
    r'Datasets\Originais\iCOPE\S05_F_ps_1.jpg,S05,F,pain_post_sucrose,iCOPE,,5,0005_iCOPE_5_pps.jpg,'
    r'"[14, 12, 54, 60]","[[20, 30], [40, 30], [30, 40], [22, 50], [38, 50]]"',
    r'Datasets\Originais\UNIFESP\ID1\img_1.jpg,ID1,F,pain,UNIFESP,5,31,0006_UNIFESP_31_pain.jpg,'
    r'"[15, 12, 55, 60]","[[20, 30], [40, 30], [30, 40], [22, 50], [38, 50]]"',
    r'Datasets\Originais\UNIFESP\ID1\img_2.jpg,ID1,F,nopain,UNIFESP,1,31,0007_UNIFESP_31_np.jpg,'
    r'"[16, 12, 56, 60]","[[20.5, 30.25], [40, 30], [30, 40], [22, 50], [38, 50]]"',
]
STIMULI = ["air", "pain", "nopain", "cry", "pain_post_sucrose", "pain", "nopain"]
DEFAULT_LABELS = ["nopain", "pain", "nopain", "nopain", "pain", "pain", "nopain"]


def write_image(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), np.full((64, 64, 3), 120, np.uint8))


def icope_dataset(folder: Path, rows: list[str] = ICOPE_UNIFESP_ROWS, *,
                  skip_images: tuple[int, ...] = ()) -> Path:
    """Write the table at folder/iCOPE+UNIFESP_data.csv and the images under folder/Datasets."""
    for i, row in enumerate(rows):
        if i not in skip_images and row.split(",")[0]:
            write_image(folder / row.split(",")[0].replace("\\", "/"))
    table = folder / "iCOPE+UNIFESP_data.csv"
    table.write_bytes(("\n".join([HEADER, *rows]) + "\n").encode("utf-8"))
    return table


# --- iCOPE+UNIFESP ------------------------------------------------------------------------------


def test_the_published_format_imports_into_a_valid_manifest(tmp_path):
    table = icope_dataset(tmp_path / "data")
    out = tmp_path / "work" / "manifest.csv"
    result = import_icope_unifesp(table, root=tmp_path / "data", out=out)

    manifest = load_manifest(out, check_files=True)
    t = manifest.table
    assert (result.rows_read, result.rows_written, result.dropped_missing) == (7, 7, 0)
    assert t["image"].iloc[0] == "../data/Datasets/Originais/iCOPE/pilot/S04_M_air_1.jpg"
    assert t["label"].tolist() == DEFAULT_LABELS
    assert t["stimulus"].tolist() == STIMULI
    assert t["subject"].tolist() == ["4", "4", "4", "5", "5", "31", "31"]
    assert t["original_subject"].tolist() == ["S04"] * 3 + ["S05"] * 2 + ["ID1"] * 2
    assert t["source"].tolist() == ["iCOPE"] * 5 + ["UNIFESP"] * 2
    assert t["score"].tolist() == [""] * 5 + ["5", "1"]
    assert t["scale"].tolist() == [""] * 5 + ["NFCS", "NFCS"]
    assert t["gender"].tolist() == list("MMMFFFF")
    assert t["file_name"].iloc[0] == r"Datasets\Originais\iCOPE\pilot\S04_M_air_1.jpg"
    assert t["new_file_name"].iloc[5] == "0006_UNIFESP_31_pain.jpg"
    boxes = manifest.boxes()
    assert boxes[:, 0].tolist() == [10, 11, 12, 13, 14, 15, 16]
    assert boxes[0].tolist() == [10, 12, 50, 60]
    keypoints = manifest.keypoints()
    assert keypoints[1].tolist() == [[21, 30], [41, 30], [31, 40], [23, 50], [39, 50]]
    assert keypoints[2].tolist() == [[22, 30], [42, 30], [32, 40], [24, 50], [40, 50]]
    assert keypoints[6, 0].tolist() == [20.5, 30.25]
    for i in range(len(manifest)):
        assert manifest.image_path(i).resolve() == (
            tmp_path / "data" / ICOPE_UNIFESP_ROWS[i].split(",")[0].replace("\\", "/")).resolve()


def test_a_copy_rooted_lower_or_flat_by_new_file_name_is_found(tmp_path):
    table = icope_dataset(tmp_path)
    lower = import_icope_unifesp(table, root=tmp_path / "Datasets" / "Originais",
                                 out=tmp_path / "a.csv")
    assert lower.rows_written == 7
    flat = tmp_path / "NewDataset" / "Images"
    for row in ICOPE_UNIFESP_ROWS:
        write_image(flat / row.split(",")[7])
    by_new_name = import_icope_unifesp(table, root=flat, out=tmp_path / "b.csv")
    images = load_manifest(by_new_name.manifest, check_files=True).table["image"]
    assert images.iloc[0] == "NewDataset/Images/0001_iCOPE_4_air.jpg"


def test_pain_vs_rest_keeps_pain_and_rest_and_counts_the_dropped_per_class(tmp_path):
    table = icope_dataset(tmp_path)
    result = import_icope_unifesp(table, out=tmp_path / "m.csv", label_map=PAIN_VS_REST_LABEL_MAP)
    t = load_manifest(result.manifest, check_files=True).table
    assert t["stimulus"].tolist() == ["pain", "nopain", "pain", "nopain"]
    assert t["label"].tolist() == ["pain", "nopain", "pain", "nopain"]
    assert result.dropped_by_class == {"air": 1, "cry": 1, "pain_post_sucrose": 1}
    assert result.rows_read == result.rows_written + sum(result.dropped_by_class.values())


def test_a_label_map_entry_overrides_the_default_and_drop_leaves_the_row_out(tmp_path):
    table = icope_dataset(tmp_path)
    label_map = parse_label_map("cry=drop, air=pain")
    result = import_icope_unifesp(table, out=tmp_path / "m.csv", label_map=label_map)
    t = load_manifest(result.manifest).table
    assert "cry" not in set(t["stimulus"])
    assert t.loc[t["stimulus"] == "air", "label"].tolist() == ["pain"]
    assert result.dropped_by_class == {"cry": 1}


def test_every_missing_image_is_reported_with_its_line_and_nothing_is_written(tmp_path):
    table = icope_dataset(tmp_path, skip_images=(1, 4, 6))
    out = tmp_path / "m.csv"
    with pytest.raises(ImportTableError) as caught:
        import_icope_unifesp(table, out=out)
    problems = caught.value.problems
    # row 3's keypoints cell spans lines 4-8: lines are the file's, as an editor shows them
    assert [(p.line, p.column) for p in problems] == [(3, "new_file_name"), (10, "new_file_name"),
                                                      (12, "new_file_name")]
    assert all("image not found" in p.message for p in problems)
    assert problems[0].value == "0002_iCOPE_4_pain.jpg"
    assert r"file_name 'Datasets\Originais\iCOPE\pilot\S04_M_pain_1.jpg'" in problems[0].message
    assert not out.exists()


def test_allow_missing_drops_the_missing_rows_with_a_count(tmp_path):
    table = icope_dataset(tmp_path, skip_images=(1, 4, 6))
    result = import_icope_unifesp(table, out=tmp_path / "m.csv", allow_missing=True)
    assert (result.rows_read, result.rows_written, result.dropped_missing) == (7, 4, 3)
    assert [p.line for p in result.missing] == [3, 10, 12]
    t = load_manifest(result.manifest, check_files=True).table
    assert t["stimulus"].tolist() == ["air", "nopain", "cry", "pain"]


def test_a_class_dropped_by_the_map_needs_no_image(tmp_path):
    table = icope_dataset(tmp_path, skip_images=(0, 3))  # the air and cry rows
    result = import_icope_unifesp(table, out=tmp_path / "m.csv",
                                  label_map=PAIN_VS_REST_LABEL_MAP)
    assert result.dropped_missing == 0 and result.rows_written == 4


BAD_ROWS = [
    # line 2: fine
    ICOPE_UNIFESP_ROWS[0],
    # line 3: unknown class and a box with x2 < x1
    ICOPE_UNIFESP_ROWS[1].replace(",pain,", ",grimace,").replace("[11, 12, 51", "[61, 12, 51"),
    # line 4: keypoints as one flat list, and an empty subject
    ICOPE_UNIFESP_ROWS[2].replace(",4,0003", ",,0003").replace(
        "[[22 30]\n [42 30]\n [32 40]\n [24 50]\n [40 50]]", "[1, 2, 3, 4, 5, 6, 7, 8, 9, 10]"),
    # line 5: an unparseable box
    ICOPE_UNIFESP_ROWS[3].replace('"[13, 12, 53, 60]"', '"[13, 12, 53"'),
    # line 6: a negative NFCS
    ICOPE_UNIFESP_ROWS[5].replace(",5,31,", ",-2,31,"),
    # line 7: no image path at all
    ",ID1,F,nopain,UNIFESP,1,31,,,",
]


def test_every_bad_row_is_reported_at_once_with_its_file_line(tmp_path):
    table = icope_dataset(tmp_path, BAD_ROWS)
    with pytest.raises(ImportTableError) as caught:
        import_icope_unifesp(table, out=tmp_path / "m.csv")
    problems = caught.value.problems
    assert [(p.line, p.column) for p in problems] == [
        (3, "class"), (3, "face_coordinates"),
        (4, "new_subject"), (4, "keypoints_coordinates"),
        (5, "face_coordinates"),
        (6, "NFCS"),
        (7, "new_file_name"),
    ]
    unknown = problems[0]
    assert unknown.value == "grimace"
    assert "air, cry, friction" in unknown.message and "--label-map grimace=" in unknown.message
    assert "[x1, y1, x2, y2]" in problems[1].message
    assert "flat list" in problems[3].message
    assert problems[6].message.startswith("is empty and so is file_name")


def test_lines_count_cells_that_span_lines(tmp_path):
    rows = [*ICOPE_UNIFESP_ROWS[2:4], ICOPE_UNIFESP_ROWS[4].replace(",pain_post_sucrose,", ",x,")]
    table = icope_dataset(tmp_path, rows)
    with pytest.raises(ImportTableError) as caught:
        import_icope_unifesp(table, out=tmp_path / "m.csv")
    assert [(p.line, p.column) for p in caught.value.problems] == [(8, "class")]


def test_two_rows_with_one_image_are_reported_as_duplicates(tmp_path):
    rows = [ICOPE_UNIFESP_ROWS[0], ICOPE_UNIFESP_ROWS[0].replace("0001_", "0009_")]
    table = icope_dataset(tmp_path, rows)
    with pytest.raises(ImportTableError) as caught:
        import_icope_unifesp(table, out=tmp_path / "m.csv")
    (problem,) = caught.value.problems
    assert (problem.line, problem.column) == (3, "new_file_name")
    assert "duplicates line 2" in problem.message


def test_a_missing_required_column_is_named_with_the_columns_found(tmp_path):
    table = tmp_path / "t.csv"
    table.write_text("file_name,class,dataset\nx.jpg,pain,iCOPE\n", encoding="utf-8")
    with pytest.raises(ImportTableError) as caught:
        import_icope_unifesp(table, out=tmp_path / "m.csv")
    (problem,) = caught.value.problems
    assert problem.column == "new_subject"
    assert "file_name, class, dataset" in problem.message


def test_bad_arguments_name_the_parameter(tmp_path):
    table = icope_dataset(tmp_path)
    with pytest.raises(NeopainError, match="valid targets: pain, nopain, drop"):
        import_icope_unifesp(table, out=tmp_path / "m.csv", label_map={"pain": "hurts"})
    with pytest.raises(NeopainError, match="root='.*absent' does not exist"):
        import_icope_unifesp(table, out=tmp_path / "m.csv", root=tmp_path / "absent")
    with pytest.raises(NeopainError, match="is the source table"):
        import_icope_unifesp(table, out=table)
    with pytest.raises(NeopainError, match="is not CLASS=TARGET"):
        parse_label_map("cry")


# --- coordinates and lookup ---------------------------------------------------------------------


@pytest.mark.parametrize("text", [
    "[10, 20, 30, 40]", "(10, 20, 30, 40)", "[ 10  20  30  40]", "[10. 20. 30. 40.]",
    "[np.float64(10.0), np.int64(20), 30, 40]", "array([10, 20, 30, 40], dtype=int32)",
    "10, 20, 30, 40",
])
def test_box_text_forms_that_are_accepted(text):
    assert box_cell(text) == "[10.0, 20.0, 30.0, 40.0]"


@pytest.mark.parametrize("text", [
    "[10, 20, 30]", "[10, 20, 30, 40, 0.99]", "[10,, 20, 30, 40]", "[10, 20, 30, 40",
    "[10, 20, 30, 40)", "[10.5.20, 30, 40]", "[10 20 30 40][1]", "[30, 20, 10, 40]",
    "[10, 20, 30, nan]", "box",
])
def test_box_text_forms_that_are_refused(text):
    with pytest.raises(ValueError):
        box_cell(text)


@pytest.mark.parametrize("text", [
    "[[1, 2], [3, 4], [5, 6], [7, 8], [9, 10]]",
    "[(1, 2), (3, 4), (5, 6), (7, 8), (9, 10)]",
    "[[ 1  2]\n [ 3  4]\n [ 5  6]\n [ 7  8]\n [ 9 10]]",
    "((1.0, 2.0), (3.0, 4.0), (5.0, 6.0), (7.0, 8.0), (9.0, 10.0))",
])
def test_keypoint_text_forms_that_are_accepted(text):
    assert parse_keypoints(keypoints_cell(text)).tolist() == [[1, 2], [3, 4], [5, 6], [7, 8],
                                                              [9, 10]]


@pytest.mark.parametrize("text", [
    "[1, 2, 3, 4, 5, 6, 7, 8, 9, 10]", "[[1, 2], [3, 4], [5, 6], [7, 8]]",
    "[[1, 2], [3, 4], [5, 6], [7, 8], [9]]", "[[1, 2, 0.9], [3, 4, 0.9], [5, 6, 0.9], [7, 8, 0.9], "
    "[9, 10, 0.9]]",
])
def test_keypoint_text_forms_that_are_refused(text):
    with pytest.raises(ValueError):
        keypoints_cell(text)


@pytest.mark.parametrize("text", ["", "  ", "[]", "None", "nan"])
def test_empty_coordinates_mean_none(text):
    assert box_cell(text) == "" and keypoints_cell(text) == ""


def test_find_image_tries_shorter_ends_of_the_path_longest_first(tmp_path):
    write_image(tmp_path / "iCOPE" / "pilot" / "a.jpg")
    write_image(tmp_path / "a.jpg")
    found = find_image(r"C:\Datasets\Originais\iCOPE\pilot\a.jpg", root=tmp_path)
    assert found == tmp_path / "iCOPE" / "pilot" / "a.jpg"
    assert find_image(r"Datasets\other\a.jpg", root=tmp_path) == tmp_path / "a.jpg"
    assert find_image("pilot/b.jpg", root=tmp_path) is None
    write_image(tmp_path / "UNIFESP" / "ID1" / "b.jpg")
    assert find_image("ID1/b.jpg", root=tmp_path, subfolder="UNIFESP") == (
        tmp_path / "UNIFESP" / "ID1" / "b.jpg")


# --- folder -------------------------------------------------------------------------------------


def folder_dataset(root: Path) -> None:
    for relative in ["pain/S01/a.jpg", "nopain/S01/b.PNG", "pain/S02/c.jpeg", "nopain/S02/d.bmp",
                     "stray.jpg", "pain/.hidden/e.jpg", "pain/S02/._c.jpeg"]:
        write_image(root / relative)
    (root / "pain" / "S01" / "notes.txt").write_text("not an image", encoding="utf-8")


def test_folder_default_layout_is_sorted_and_reports_unmatched_files(tmp_path):
    folder_dataset(tmp_path / "data")
    out = tmp_path / "data" / "manifest.csv"
    result = import_folder(tmp_path / "data", out=out)
    t = load_manifest(out, check_files=True).table
    assert t["image"].tolist() == ["nopain/S01/b.PNG", "nopain/S02/d.bmp", "pain/S01/a.jpg",
                                   "pain/S02/c.jpeg"]
    assert t["label"].tolist() == ["nopain", "nopain", "pain", "pain"]
    assert t["subject"].tolist() == ["S01", "S02", "S01", "S02"]
    assert result.unmatched == ("stray.jpg",)
    first = out.read_bytes()
    import_folder(tmp_path / "data", out=out)
    assert out.read_bytes() == first


def test_folder_template_and_regex_patterns_capture_fields(tmp_path):
    for relative in ["iCOPE/S04_M_air_1.jpg", "iCOPE/S04_M_pain_2.jpg", "UNIFESP/S31_F_pain_1.jpg"]:
        write_image(tmp_path / "d" / relative)
    result = import_folder(tmp_path / "d", out=tmp_path / "m.csv",
                           pattern="{source}/{subject}_{gender}_{label}_{*}.jpg")
    t = load_manifest(result.manifest, check_files=True).table
    assert t[["source", "subject", "gender", "label", "stimulus"]].values.tolist() == [
        ["UNIFESP", "S31", "F", "pain", "pain"],
        ["iCOPE", "S04", "M", "nopain", "air"],
        ["iCOPE", "S04", "M", "pain", "pain"],
    ]
    regex = import_folder(tmp_path / "d", out=tmp_path / "r.csv",
                          pattern=r"re:iCOPE/(?P<subject>S\d+)_._(?P<label>[a-z]+)_\d\.jpg")
    assert load_manifest(regex.manifest).table["subject"].tolist() == ["S04", "S04"]
    assert regex.unmatched == ("UNIFESP/S31_F_pain_1.jpg",)


def test_folder_unknown_classes_are_all_reported_by_file(tmp_path):
    for relative in ["pain/S01/a.jpg", "ouch/S01/b.jpg", "ouch/S02/c.jpg"]:
        write_image(tmp_path / relative)
    with pytest.raises(ImportTableError) as caught:
        import_folder(tmp_path, out=tmp_path / "m.csv")
    assert [(p.column, p.value) for p in caught.value.problems] == [
        ("label", "ouch/S01/b.jpg"), ("label", "ouch/S02/c.jpg")]
    assert "'ouch' is not a class of the label map" in caught.value.problems[0].message
    assert not (tmp_path / "m.csv").exists()


@pytest.mark.parametrize("pattern, message", [
    ("{label}/{*}", "does not capture subject"),
    ("{label}/{subject}/{label}", "repeats {label}"),
    ("{label}/{subject}/{image}", "captures image"),
    ("{label}/{subject/{*}", "unmatched brace"),
    ("re:(?P<label>[a-z", "not a valid regular expression"),
])
def test_bad_patterns_are_refused_with_the_reason(pattern, message):
    with pytest.raises(NeopainError, match=message.replace("{", r"\{").replace("}", r"\}")):
        compile_pattern(pattern)


def test_a_folder_where_nothing_matches_is_an_error_with_examples(tmp_path):
    write_image(tmp_path / "a.jpg")
    with pytest.raises(ImportTableError, match="no image path matches .* e.g. a.jpg"):
        import_folder(tmp_path, out=tmp_path / "m.csv")


# --- csv ----------------------------------------------------------------------------------------


def test_csv_with_a_column_mapping_and_a_label_map(tmp_path):
    write_image(tmp_path / "imgs" / "a.jpg")
    write_image(tmp_path / "imgs" / "b.jpg")
    table = tmp_path / "tables" / "scores.csv"
    table.parent.mkdir()
    table.write_text("file,baby,y,nfcs,box,label\n"
                     '../imgs/a.jpg,B1,1,4,"(1, 2, 30, 40)",x\n'
                     "../imgs/b.jpg,B2,0,0,,y\n", encoding="utf-8")
    columns = parse_column_map("image=file,subject=baby,label=y,score=nfcs,face_box=box")
    result = import_csv(table, columns=columns, out=tmp_path / "m.csv", scale="NFCS",
                        label_map={"1": "pain", "0": "nopain"})
    t = load_manifest(result.manifest, check_files=True).table
    assert t[["image", "subject", "label", "stimulus", "score", "scale", "face_box"]
             ].values.tolist() == [
        ["imgs/a.jpg", "B1", "pain", "1", "4", "NFCS", "[1.0, 2.0, 30.0, 40.0]"],
        ["imgs/b.jpg", "B2", "nopain", "0", "0", "NFCS", ""],
    ]
    assert t["file"].tolist() == ["../imgs/a.jpg", "../imgs/b.jpg"]
    assert t["original_label"].tolist() == ["x", "y"]


def test_csv_mapped_columns_the_table_lacks_are_listed_with_its_columns(tmp_path):
    table = tmp_path / "t.csv"
    table.write_text("file,baby,y\na.jpg,B1,pain\n", encoding="utf-8")
    with pytest.raises(ImportTableError) as caught:
        import_csv(table, columns={"image": "path", "subject": "id", "label": "y"},
                   out=tmp_path / "m.csv")
    assert [p.column for p in caught.value.problems] == ["path", "id"]
    assert "the table's columns: file, baby, y" in caught.value.problems[0].message
    with pytest.raises(NeopainError, match="'photo', which the manifest does not have"):
        import_csv(table, columns={"photo": "file", "subject": "baby", "label": "y"},
                   out=tmp_path / "m.csv")
    with pytest.raises(NeopainError, match="must map label too"):
        import_csv(table, columns={"image": "file", "subject": "baby"}, out=tmp_path / "m.csv")


def test_the_default_label_map_is_what_the_readme_documents():
    pain = sorted(k for k, v in DEFAULT_LABEL_MAP.items() if v == "pain")
    assert pain == ["pain", "pain_post_sucrose"]
    kept = sorted(k for k, v in PAIN_VS_REST_LABEL_MAP.items() if v != "drop")
    assert kept == ["no_pain", "nopain", "pain", "rest"]
