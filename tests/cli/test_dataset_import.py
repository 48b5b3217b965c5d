"""``neopain dataset import``: exit 0 with counts and the manifest summary, or exit 1 with every
problem and no traceback; options that do not apply to the format are refused."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from neopain.cli.app import app as neopain_app
from neopain.data.manifest import load_manifest

HEADER = ("file_name,subject,gender,class,dataset,NFCS,new_subject,new_file_name,"
          "face_coordinates,keypoints_coordinates")
KEYPOINTS = '"[[20, 30], [40, 30], [30, 40], [22, 50], [38, 50]]"'
ROWS = [  # (file_name, class, dataset, NFCS, new_subject)
    (r"Datasets\Originais\iCOPE\S01_M_pain_1.jpg", "pain", "iCOPE", "", "1"),
    (r"Datasets\Originais\iCOPE\S01_M_rest_1.jpg", "nopain", "iCOPE", "", "1"),
    (r"Datasets\Originais\iCOPE\S01_M_cry_1.jpg", "cry", "iCOPE", "", "1"),
    (r"Datasets\Originais\UNIFESP\ID2\a.jpg", "pain", "UNIFESP", "4", "2"),
    (r"Datasets\Originais\UNIFESP\ID2\b.jpg", "nopain", "UNIFESP", "0", "2"),
]


def write_image(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), np.full((32, 32, 3), 90, np.uint8))


def icope_dataset(folder: Path, *, skip_images: tuple[int, ...] = ()) -> Path:
    lines = [HEADER]
    for i, (file_name, label, dataset, nfcs, subject) in enumerate(ROWS):
        if i not in skip_images:
            write_image(folder / file_name.replace("\\", "/"))
        lines.append(f'{file_name},S0{subject},M,{label},{dataset},{nfcs},{subject},'
                     f'{i:04d}.jpg,"[1, 2, 30, 40]",{KEYPOINTS}')
    table = folder / "iCOPE+UNIFESP_data.csv"
    table.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return table


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(neopain_app, ["dataset", "import", *args],
                                env={"COLUMNS": "200"})
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, " ".join(result.output.split())


def test_icope_unifesp_import_writes_a_valid_manifest_and_prints_the_counts(tmp_path):
    table = icope_dataset(tmp_path)
    out = tmp_path / "out" / "manifest.csv"
    code, output = run(str(table), "--format", "icope-unifesp", "--out", str(out))
    assert code == 0, output
    assert "5 of 5 rows written" in output
    assert "5 rows, 2 subjects, 2 sources" in output and "valid (files checked)" in output
    assert len(load_manifest(out, check_files=True)) == 5


def test_pain_vs_rest_and_label_map_drop_rows_and_say_so(tmp_path):
    table = icope_dataset(tmp_path)
    out = tmp_path / "m.csv"
    code, output = run(str(table), "--format", "icope-unifesp", "--out", str(out),
                       "--pain-vs-rest")
    assert code == 0, output
    assert "4 of 5 rows written" in output and "dropped: class cry (label map) │ 1" in output
    code, output = run(str(table), "--format", "icope-unifesp", "--out", str(out),
                       "--label-map", "cry=pain", "--label-map", "rest=drop")
    assert code == 0, output
    assert load_manifest(out).table["label"].tolist() == ["pain", "nopain", "pain", "pain",
                                                          "nopain"]


def test_missing_images_exit_1_listing_every_line_and_write_nothing(tmp_path):
    table = icope_dataset(tmp_path, skip_images=(1, 3))
    out = tmp_path / "m.csv"
    code, output = run(str(table), "--format", "icope-unifesp", "--out", str(out))
    assert code == 1
    assert "│ 3 │ new_file_name │ '0001.jpg' │ image not found" in output
    assert "│ 5 │ new_file_name │ '0003.jpg' │ image not found" in output
    assert "--allow-missing" in output and "nothing written" in output and "2 problems" in output
    assert not out.exists()


def test_allow_missing_drops_rows_with_a_count(tmp_path):
    table = icope_dataset(tmp_path, skip_images=(1, 3))
    code, output = run(str(table), "--format", "icope-unifesp", "--out", str(tmp_path / "m.csv"),
                       "--allow-missing")
    assert code == 0, output
    assert "dropped: image missing │ 2" in output and "3 of 5 rows written" in output
    assert "missing: line 3, column 'new_file_name'" in output


def test_folder_import_with_a_pattern(tmp_path):
    for relative in ["iCOPE/S01_pain_1.jpg", "iCOPE/S01_rest_2.png", "UNIFESP/S02_pain_1.jpg",
                     "UNIFESP/extra.jpg"]:
        write_image(tmp_path / "d" / relative)
    out = tmp_path / "d" / "manifest.csv"
    code, output = run(str(tmp_path / "d"), "--format", "folder", "--out", str(out),
                       "--pattern", "{source}/{subject}_{label}_{*}")
    assert code == 0, output
    assert "3 rows, 2 subjects, 2 sources" in output
    assert "1 image not matched by the pattern (not imported), e.g. UNIFESP/extra.jpg" in output


def test_csv_import_with_a_column_map(tmp_path):
    write_image(tmp_path / "a.jpg")
    write_image(tmp_path / "b.jpg")
    table = tmp_path / "t.csv"
    table.write_text("path,id,y,nfcs\na.jpg,B1,1,5\nb.jpg,B2,0,1\n", encoding="utf-8")
    code, output = run(str(table), "--format", "csv", "--out", str(tmp_path / "m.csv"),
                       "--map", "image=path,subject=id,label=y", "--map", "score=nfcs",
                       "--scale", "NFCS", "--label-map", "1=pain,0=nopain")
    assert code == 0, output
    assert load_manifest(tmp_path / "m.csv").table["scale"].tolist() == ["NFCS", "NFCS"]


@pytest.mark.parametrize("args, message", [
    (["--format", "csv"], "--format csv needs --map"),
    (["--format", "csv", "--map", "image=path"], "must map subject, label too"),
    (["--format", "csv", "--map", "image=path,subject=who,label=y"],
     "- who is not a column of the table (mapped to subject); the table's columns: path, id, y"),
    (["--format", "icope-unifesp", "--pattern", "{label}/{subject}/{*}"],
     "--pattern does not apply to --format icope-unifesp"),
    (["--format", "folder", "--root", ".", "--allow-missing"],
     "--root, --allow-missing do not apply to --format folder"),
    (["--format", "icope-unifesp", "--label-map", "cry"], "label map entry 'cry' is not"),
    (["--format", "icope-unifesp", "--label-map", "cry=ouch"], "valid targets: pain, nopain"),
    (["--format", "icope-unifesp"], "required column is missing"),
])
def test_bad_options_or_input_exit_1_with_the_reason(tmp_path, args, message):
    table = tmp_path / "t.csv"
    table.write_text("path,id,y\na.jpg,B1,1\n", encoding="utf-8")
    code, output = run(str(table), "--out", str(tmp_path / "m.csv"), *args)
    assert code == 1
    # table borders dropped: a problem cell wrapped onto two rows reads as one message
    assert message in " ".join(output.replace("│", " ").split())
