"""The CLI shows no traceback and never hangs, whatever file it is handed (the README's promise):
the inputs of issue 16's audit, each of which broke it, and their neighbours. Each answer names
the file (and line and column for tables) and what is wrong."""

from __future__ import annotations

import io
import os
import subprocess

import cv2
import pandas as pd
import pytest

from cli_invoke import invoke, write_face
from image_files import bmp_header_154, png_bomb

needs_fifo = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this system")
MAP = "image=image,subject=subject,label=label"
DEEP = "[" * 3000 + "]" * 3000


def script(neopain_script, *args: str) -> subprocess.CompletedProcess:
    """The installed console script, as a user runs it (its own error handling included)."""
    done = subprocess.run([str(neopain_script), *args], capture_output=True, text=True,
                          timeout=180)
    assert "Traceback" not in done.stdout + done.stderr, done.stderr[-2000:]
    return done


@needs_fifo
def test_a_folder_of_hostile_files_is_assessed_to_the_end(neopain_script, tmp_path):
    """A 154-byte BMP header stopped a 230-image folder with cv2.error, a FIFO named x.jpg hung
    ``assess``, a 30000² PNG took 11.8 s: each now gets a row with its reason, in seconds."""
    folder = tmp_path / "photos"
    folder.mkdir()
    write_face(folder / "a_face.png")
    (folder / "header.bmp").write_bytes(bmp_header_154())
    os.mkfifo(folder / "x.jpg")
    (folder / "bomb.png").write_bytes(png_bomb(30_000, 30_000))
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "z_face.jpg").write_bytes(cv2.imencode(".jpg", cv2.imread(
        str(folder / "a_face.png")))[1].tobytes())
    done = script(neopain_script, "assess", str(folder), "--model", "nfcs", "--format", "csv")
    assert done.returncode == 0, done.stderr
    table = pd.read_csv(io.StringIO(done.stdout)).fillna({"problem": ""})
    problems = dict(zip(table["image"].map(lambda p: p.rsplit("/", 1)[-1]), table["problem"]))
    assert problems == {
        "a_face.png": "",
        "bomb.png": "cannot read the image: the image is 900,000,000 pixels; at most "
                    "40,000,000 are read (NEOPAIN_MAX_IMAGE_PIXELS)",
        "empty.jpg": "cannot read the image: the file is empty (0 bytes)",
        "header.bmp": "cannot read the image: the image is 4,294,967,296 pixels; at most "
                      "40,000,000 are read (NEOPAIN_MAX_IMAGE_PIXELS)",
        "x.jpg": "cannot read the image: is a FIFO (named pipe), not a regular file; expected "
                 "an image file",
        "z_face.jpg": "",
    }
    assert table.loc[table["problem"] == "", "prob_pain"].between(0, 1).all()


@pytest.mark.parametrize("name, says", [
    ("x.jpg", "is a FIFO (named pipe), not a regular file; expected an image file"),
    ("bomb.png", "the image is 900,000,000 pixels; at most 40,000,000 are read"),
    ("header.bmp", "the image is 4,294,967,296 pixels; at most 40,000,000 are read"),
    ("a" * 300 + ".jpg", "no such file or folder"),
])
def test_one_unreadable_image_exits_1_with_the_reason(tmp_path, name, says):
    """A single image that cannot be read is an error (exit 1), not a hang or a traceback (an
    over-long name raised OSError from Path.is_dir)."""
    if name == "x.jpg":
        if not hasattr(os, "mkfifo"):
            pytest.skip("no FIFOs on this system")
        os.mkfifo(tmp_path / name)
    elif name == "bomb.png":
        (tmp_path / name).write_bytes(png_bomb(30_000, 30_000))
    elif name == "header.bmp":
        (tmp_path / name).write_bytes(bmp_header_154())
    code, output = invoke("assess", str(tmp_path / name), "--model", "nfcs")
    assert code == 1, output
    assert says in output


@pytest.mark.parametrize("column", ["face_box", "keypoints"])
def test_json_nested_3000_deep_is_a_problem_of_its_line(tmp_path, column):
    """A face_box or keypoints cell of 3,000 nested lists raised RecursionError from json.loads
    in ``dataset validate`` and ``assess``."""
    write_face(tmp_path / "face.png")
    cells = {"face_box": "", "keypoints": "", column: DEEP}
    manifest = tmp_path / "manifest.csv"
    manifest.write_text("image,subject,label,face_box,keypoints\n"
                        f"face.png,s1,pain,{cells['face_box']},{cells['keypoints']}\n")
    for args in (["dataset", "validate", str(manifest)],
                 ["assess", str(manifest), "--model", "nfcs"],
                 ["folds", "make", str(manifest), "--out", str(tmp_path / "folds.json"),
                  "--protocol", "lsso", "--k", "2"]):
        code, output = invoke(*args)
        assert code == 1, output
        where = f"line 2, column '{column}'" if args[0] == "assess" else f"│ 2 │ {column} │"
        assert where in output, output
        assert "nested deeper than 4 levels); valid: JSON" in output


def test_an_image_name_longer_than_the_file_system_allows_is_not_found(tmp_path):
    """The importer's image search raised ``OSError: File name too long`` (Path.is_file)."""
    table = tmp_path / "scores.csv"
    table.write_text(f"image,subject,label\n{'a' * 300}.jpg,s1,pain\n{'b/' * 3000}c.jpg,s2,pain\n")
    code, output = invoke("dataset", "import", str(table), "--format", "csv", "--map", MAP,
                          "--out", str(tmp_path / "manifest.csv"))
    assert code == 1, output
    assert "2 problems" in output and output.count("not found") >= 2
    code, output = invoke("dataset", "import", str(table), "--format", "csv", "--map", MAP,
                          "--root", str(tmp_path / ("r" * 300)), "--out", str(tmp_path / "m.csv"))
    assert code == 1 and "does not exist" in output, output


@needs_fifo
def test_check_files_refuses_fifos_devices_and_folders(tmp_path):
    """``--check-files`` counted a FIFO, /dev/zero or a folder in the image column as a file,
    which every later stage would then try to read (and hang on, or read forever)."""
    os.mkfifo(tmp_path / "x.jpg")
    (tmp_path / "folder.jpg").mkdir()
    manifest = tmp_path / "manifest.csv"
    manifest.write_text("image,subject,label\nx.jpg,s1,pain\nfolder.jpg,s2,pain\n"
                        "/dev/zero,s3,nopain\n")
    code, output = invoke("dataset", "validate", str(manifest), "--check-files")
    assert code == 1, output
    assert "3 problems" in output
    assert "is a FIFO (named pipe), not a regular file; expected an image file" in output
    assert "is a folder; expected an image file" in output
    assert "is a character device, not a regular file" in output


@pytest.mark.parametrize("content, line, says", [
    (b"image,subject,label\nface.png,s\x001,pain\n", 2, "holds a NUL byte, so it is no text "
                                                       "file (UTF-16 text?)"),
    ("image,subject,label\r\n".encode("utf-16-le"), 1, "holds a NUL byte"),
    (b'image,subject,label\n"' + b"a" * 200_000 + b'",s1,pain\n', 2,
     "has a cell longer than 131,072 characters; is a closing quote missing?"),
    (b"image,subject,label,face_box\nface.png,s1,pain,\"[1" + b"0" * 5000 + b", 1, 2, 3]\"\n",
     2, "not a valid face box (a number has more than 4,300 digits)"),
])
def test_broken_manifests_get_a_clear_problem_at_their_line(tmp_path, content, line, says):
    """NUL bytes (a binary file, or UTF-16 text) were read as text and cells over the CSV
    module's field limit were blamed on quotes; numbers of 5,000 digits reported Python's
    int-conversion advice."""
    manifest = tmp_path / "manifest.csv"
    manifest.write_bytes(content)
    code, output = invoke("dataset", "validate", str(manifest))
    assert code == 1, output
    assert f"│ {line} │" in output and says in output, output


@needs_fifo
def test_a_manifest_or_folds_file_that_is_a_fifo_or_a_folder_is_refused_without_hanging(
        tmp_path):
    """The table and folds.json readers read the whole file first: a FIFO named manifest.csv
    or folds.json hung them."""
    os.mkfifo(tmp_path / "manifest.csv")
    code, output = invoke("dataset", "validate", str(tmp_path / "manifest.csv"), seconds=30)
    assert code == 1 and "is a FIFO (named pipe), not a regular file" in output, output
    code, output = invoke("dataset", "validate", str(tmp_path))
    assert code == 1 and "is a folder; expected a manifest CSV file" in output, output
    write_face(tmp_path / "face.png")
    (tmp_path / "good.csv").write_text("image,subject,label\nface.png,s1,pain\n")
    os.mkfifo(tmp_path / "folds.json")
    code, output = invoke("folds", "check", str(tmp_path / "good.csv"),
                          str(tmp_path / "folds.json"), seconds=30)
    assert code == 1 and "folds.json: is a FIFO (named pipe), not a regular file" in output, \
        output


def test_a_file_system_error_ends_with_a_message_not_a_traceback(neopain_script, tmp_path):
    """An OSError the commands do not expect (here: an output folder that is a file) printed a
    traceback from the console script."""
    write_face(tmp_path / "face.png")
    table = tmp_path / "scores.csv"
    table.write_text("image,subject,label\nface.png,s1,pain\n")
    (tmp_path / "taken").write_text("a file, not a folder")
    done = script(neopain_script, "dataset", "import", str(table), "--format", "csv", "--map",
                  MAP, "--out", str(tmp_path / "taken" / "manifest.csv"))
    assert done.returncode == 1
    assert f"error: {tmp_path / 'taken'}" in " ".join(done.stderr.split())
