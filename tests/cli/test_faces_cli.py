"""``neopain faces detect|benchmark|list``: exit 0 with a summary and a valid crops manifest, the
faceless and corrupt images reported while the rest is done; the benchmark as a table and as
JSON alone on stdout; bad input exits 1 naming what is valid, never with a traceback."""

from __future__ import annotations

import json
import subprocess
from unittest import mock
from pathlib import Path

import cv2
import numpy as np
import pytest
import skimage.data
from typer.testing import CliRunner

from neopain.cli.app import app as neopain_app
from neopain.cli.console import console, err_console
from neopain.data.manifest import load_manifest
from neopain.data.synthetic import CohortSpec, generate_cohort
from neopain.faces.base import FaceDetector, list_detectors


def run(*args: str) -> tuple[int, str, str]:
    """Exit code, stdout and stderr of ``neopain faces ARGS``."""
    # Rich fixes a console's width when the console is made (another test's COLUMNS), so the
    # width is set here: a narrow one folds the column headers this file reads
    with mock.patch.object(console, "_width", 200), mock.patch.object(err_console, "_width", 200):
        result = CliRunner().invoke(neopain_app, ["faces", *args], env={"COLUMNS": "200"})
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.stdout, result.stderr


def flat(text: str) -> str:
    return " ".join(text.split())


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    """A folder of 2 real-face photos, a faceless one and a corrupt JPEG, imported with the CLI."""
    root = tmp_path_factory.mktemp("photos")
    face = cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2BGR)
    for name, image in {"pain/S01/astronaut.jpg": face,
                        "nopain/S02/flipped.jpg": np.ascontiguousarray(face[:, ::-1]),
                        "nopain/S03/coffee.png": skimage.data.coffee()[..., ::-1]}.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        assert cv2.imwrite(str(root / name), np.ascontiguousarray(image))
    (root / "pain/S03").mkdir()
    (root / "pain/S03/broken.jpg").write_bytes(b"a text file, not a JPEG\n" * 4)
    result = CliRunner().invoke(neopain_app, ["dataset", "import", str(root), "--format",
                                              "folder", "--out", str(root / "manifest.csv")])
    assert result.exit_code == 0, result.output
    return root / "manifest.csv"


def test_detect_with_the_manifest_detector_writes_crops_and_a_valid_manifest(tmp_path):
    cohort = generate_cohort(tmp_path / "cohort",
                             CohortSpec(subjects=2, seed=2, images_per_subject=(2, 2)))
    code, out, err = run("detect", str(cohort.manifest), "--detector", "manifest",
                         "--out", str(tmp_path / "faces"), "--size", "96", "--workers", "1")
    assert code == 0, err
    text = flat(out)
    assert "faces detect (manifest): 4 of 4 images with a face" in text
    assert "4 rows, 2 subjects" in text and "valid (files checked)" in text
    crops = load_manifest(tmp_path / "faces" / "manifest.csv", check_files=True)
    assert len(crops) == 4 and all(cv2.imread(str(crops.image_path(i))).shape == (96, 96, 3)
                                   for i in range(4))
    code, out, _ = run("detect", str(cohort.manifest), "--detector", "manifest",
                       "--out", str(tmp_path / "faces"), "--size", "96")
    assert code == 0 and "skipped as done (earlier run) │ 4" in flat(out)


def test_detect_real_faces_reports_no_face_and_the_corrupt_file_and_does_the_rest(
        photos, tmp_path):
    code, out, err = run("detect", str(photos), "--detector", "mediapipe-short",
                         "--out", str(tmp_path / "faces"), "--workers", "1")
    assert code == 0, err
    text = flat(out)
    for row in ("images │ 4", "faces found │ 2", "no face │ 1", "unreadable │ 1"):
        assert row in text, row
    assert "nopain/S03/coffee.png │ no_face" in text
    assert "pain/S03/broken.jpg │ unreadable" in text
    assert "1 of 4 images could not be read" in flat(err)
    assert "no face was found" not in flat(err)
    crops = load_manifest(tmp_path / "faces" / "manifest.csv", check_files=True)
    assert sorted(Path(p).name for p in crops.table["original_image"]) == ["astronaut.jpg",
                                                                          "flipped.jpg"]


def test_detect_warns_when_no_image_had_a_face(photos, tmp_path):
    # a threshold no face reaches: an empty crops manifest must not pass for a finished job
    code, _, err = run("detect", str(photos), "--detector", "mediapipe-short", "--threshold",
                       "1", "--out", str(tmp_path / "faces"), "--workers", "1")
    assert code == 0
    assert "warning: no face was found in any of the 4 images: check the detector" in flat(err)


@pytest.mark.parametrize("args, message", [
    (["--detector", "blazeface"], "unknown detector 'blazeface'; valid: centerface, "),
    (["--detector", "manifest", "--margin", "-1"], "margin=-1.0 is not valid"),
    (["--detector", "manifest", "--model", "x.onnx"],
     "--model applies to the detectors that run your model file (onnx"),
    (["--detector", "mediapipe-short", "--threshold", "2"], "threshold=2.0 must lie in [0, 1]"),
    (["--detector", "retinaface", "--model", "r.onnx", "--config", "deploy.prototxt"],
     "--config applies to --detector opencv-ssd only, not 'retinaface'"),
    (["--detector", "retinaface"], "--detector retinaface runs your own model file: give it "
                                   "with --model PATH"),
    (["--detector", "opencv-ssd", "--model", "res10.caffemodel", "--config", "no.prototxt"],
     "res10.caffemodel: file not found; expected OpenCV's SSD face detector"),
])
def test_detect_bad_options_exit_1_naming_what_is_valid(photos, tmp_path, args, message):
    code, out, err = run("detect", str(photos), "--out", str(tmp_path / "faces"), *args)
    assert code == 1
    assert message in flat(err)
    assert "faces detect" not in out


def test_detect_an_invalid_manifest_lists_its_problems(tmp_path):
    bad = tmp_path / "manifest.csv"
    bad.write_text("image,subject,label\na.jpg,S1,hurts\n")
    code, _, err = run("detect", str(bad), "--detector", "manifest", "--out", str(tmp_path / "o"))
    assert code == 1
    assert "'hurts'" in err and "is not a valid label" in flat(err)
    assert "is not a valid manifest: 1 problem" in flat(err)


def test_benchmark_prints_the_table_and_valid_json(photos):
    code, out, err = run("benchmark", str(photos), "--detectors", "mediapipe-short,opencv-haar")
    assert code == 0, err
    text = flat(out)
    for column in ("detector", "images", "no face", "median ms", "p95 ms", "images/s",
                   "lowest score counted as a face: mediapipe-short 0.5, opencv-haar"):
        assert column in text
    assert "│ mediapipe-short │" in text and "│ opencv-haar │" in text
    assert "1 unreadable images skipped: pain/S03/broken.jpg" in flat(err)

    code, out, err = run("benchmark", str(photos), "--detectors", "mediapipe-short",
                         "--mesh", "--json", "--limit", "2")
    assert code == 0, err
    figures = json.loads(out)  # nothing but JSON on stdout
    assert figures["images"] == 2
    rows = {row["detector"]: row for row in figures["detectors"]}
    assert rows.keys() == {"mediapipe-short", "face mesh"}
    # the first two rows: nopain/S02/flipped.jpg (a face) and nopain/S03/coffee.png (none)
    assert rows["mediapipe-short"]["no_face_share"] == 0.5
    assert rows["mediapipe-short"]["median_ms"] > 0


def test_benchmark_of_a_video_times_its_frames(tmp_path):
    face = cv2.resize(cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2BGR), (320, 320))
    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (320, 320))
    for shift in range(8):
        writer.write(np.roll(face, 4 * shift, axis=1))
    writer.release()
    code, out, err = run("benchmark", str(path), "--detectors", "mediapipe-short", "--json",
                         "--limit", "5")
    assert code == 0, err
    figures = json.loads(out)
    assert figures["images"] == 5 and figures["detectors"][0]["no_face_share"] == 0.0


def test_benchmark_bad_input_exits_1(photos, tmp_path):
    code, _, err = run("benchmark", str(tmp_path / "missing.csv"))
    assert code == 1 and "not found" in flat(err)
    code, _, err = run("benchmark", str(photos), "--detectors", "mediapipe-short,nope")
    assert code == 1 and "unknown detector 'nope'; valid:" in flat(err)


def test_benchmark_by_default_times_every_detector_that_runs_here_and_says_why_not_the_rest(
        photos):
    # guards: the detector comparison of the thesis (Table 4.1) needs every detector at once;
    # a detector left out silently would look like one that was never there
    code, out, err = run("benchmark", str(photos), "--json", "--limit", "1")
    assert code == 0, err
    figures = json.loads(out)
    ran = [row["detector"] for row in figures["detectors"]]
    left_out = {row["detector"]: row["reason"] for row in figures["left_out"]}
    # every registered detector runs or is said not to; manifest only reads the table's boxes
    assert set(ran) | set(left_out) | {"manifest"} == set(list_detectors())
    assert not set(ran) & set(left_out) and "manifest" not in ran
    # what the dev install ships: the six that need no file of the user's
    assert set(ran) == {"mediapipe-short", "mediapipe-full", "opencv-haar", "centerface",
                        "mtcnn", "dlib-hog"}
    for name in ("onnx", "retinaface", "yolo-face", "opencv-ssd"):
        assert f"needs the model file: model=PATH (--model {name}=PATH" in left_out[name]


def test_benchmark_all_builds_each_detector_once_and_closes_it(photos, monkeypatch):
    # guards: checking which detectors run here built every one, closed it, then the timing
    # built them all again (ONNX sessions, MediaPipe graphs, dlib and MTCNN models: twice the
    # start-up); the timed detector must also be the one checked
    built: list[str] = []
    closed: list[str] = []
    init, close = FaceDetector.__init__, FaceDetector.__exit__

    def counting_init(self, **options):
        built.append(type(self).name)
        init(self, **options)

    def counting_exit(self, *exc_info):
        closed.append(type(self).name)
        return close(self, *exc_info)

    monkeypatch.setattr(FaceDetector, "__init__", counting_init)
    monkeypatch.setattr(FaceDetector, "__exit__", counting_exit)
    code, out, err = run("benchmark", str(photos), "--json", "--limit", "1")
    assert code == 0, err
    ran = [row["detector"] for row in json.loads(out)["detectors"]]
    assert sorted(built) == sorted(ran) == sorted(closed)


@pytest.mark.parametrize(("args", "message"), [
    (["--detectors", "opencv-haar", "--model", "x.onnx"],
     "--model x.onnx: say which detector it is for, as NAME=PATH"),
    (["--detectors", "opencv-haar", "--model", "opencv-haar=x.onnx"],
     "'opencv-haar' does not run a model file; valid: onnx"),
    (["--detectors", "onnx", "--model", "onnx=a.onnx", "--model", "onnx=b.onnx"],
     "--model names 'onnx' twice"),
    (["--detectors", "onnx", "--model", "onnx=missing.onnx"], "missing.onnx: file not found"),
    (["--detectors", "opencv-haar", "--model", "retinaface=x.onnx"],
     "--model retinaface=x.onnx: 'retinaface' is not in --detectors"),
    (["--model", "onnx=missing.onnx"], "--model onnx: missing.onnx: file not found"),
])
def test_benchmark_model_files_are_checked_naming_the_detectors_that_take_one(
        photos, args, message):
    code, _, err = run("benchmark", str(photos), *args)
    assert code == 1 and message in flat(err)


def test_list_names_every_detector_with_its_threshold_keypoints_and_whether_it_runs_here():
    code, out, _ = run("list")
    assert code == 0
    text = flat(out)
    for name in list_detectors():
        assert f"│ {name} │" in text
    assert "default threshold" in text and "keypoints" in text and "runs here" in text
    # the detector comparison of the thesis needs at least six that run with no file
    assert "6 detectors look at pixels with no file of yours" in text
    assert "with your file: --model PATH" in text


def test_the_console_script_keeps_mediapipe_native_log_lines_off_the_terminal(
        photos, tmp_path, neopain_script):
    """MediaPipe/TFLite write INFO and W0000 lines to fd 2 from C++; they garbled the progress
    bar and the error table until the console script sent fd 2 to /dev/null."""
    done = subprocess.run(
        [str(neopain_script), "faces", "detect", str(photos), "--detector", "mediapipe-short",
         "--out", str(tmp_path / "faces"), "--landmarks", "--workers", "2"],
        capture_output=True, text=True, timeout=300,
        env={"PATH": "/usr/bin:/bin", "COLUMNS": "200"})
    assert done.returncode == 0, done.stderr
    assert "TensorFlow Lite" not in done.stderr and "W0000" not in done.stderr
    assert "could not be read" in done.stderr  # neopain's own warning still reaches stderr
