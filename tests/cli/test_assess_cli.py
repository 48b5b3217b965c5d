"""``neopain assess`` end to end: the .onnx file alone reproduces the run's evaluation
predictions, folders and single images give one row per image (unreadable and faceless ones
named), a video writes its timeline, plot and report, and "no face anywhere" exits 3."""

from __future__ import annotations

import io
import json
import re
import shutil
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from neopain.cli.app import app as neopain_app
from neopain.data.folds import make_folds, save_folds
from neopain.data.manifest import load_manifest, sha256_file
from neopain.data.synthetic import CohortSpec, generate_cohort
from neopain.data.synthetic.cohort import make_subjects
from neopain.data.synthetic.video import ClipSpec, generate_clips
from neopain.export.onnx import export_fold
from neopain.training import TrainConfig, run_cv


def run(*args: str) -> tuple[int, str]:
    """Exit code and output (stdout and stderr)."""
    result = CliRunner().invoke(neopain_app, list(args))
    assert "Traceback" not in result.output
    assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit)
    return result.exit_code, result.output


def flat(text: str) -> str:
    return " ".join(text.split())


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> dict[str, Path]:
    """A synthetic cohort, an N-CNN run (fold 0, 2 epochs), its predictions, and the exported
    model copied alone into its own folder with the run folder then removed."""
    root = tmp_path_factory.mktemp("assess-cli")
    manifest = root / "cohort" / "manifest.csv"
    generate_cohort(root / "cohort", CohortSpec(subjects=6, seed=2, images_per_subject=(3, 4),
                                                noisy_share=0.5))
    save_folds(make_folds(load_manifest(manifest), protocol="lsso", k=3,
                          manifest_sha256=sha256_file(manifest)), root / "cohort" / "folds.json")
    run_dir = root / "runs" / "ncnn"
    run_cv(TrainConfig(model="ncnn", manifest=manifest, folds=root / "cohort" / "folds.json",
                       out=run_dir, fold=0, epochs=2, batch_size=8, device="cpu"))
    exported, _ = export_fold(run_dir / "fold_0", root / "export" / "ncnn.onnx")
    alone = root / "bedside" / "ncnn.onnx"
    alone.parent.mkdir()
    shutil.copyfile(exported, alone)
    predictions = root / "predictions.csv"
    shutil.copyfile(run_dir / "fold_0" / "predictions.csv", predictions)
    shutil.rmtree(root / "runs")
    shutil.rmtree(root / "export")
    return {"root": root, "manifest": manifest, "model": alone, "predictions": predictions}


def test_the_onnx_file_alone_reproduces_the_evaluation_predictions(study, tmp_path):
    out = tmp_path / "assessed.csv"
    code, output = run("assess", str(study["manifest"]), "--model", str(study["model"]),
                       "--out", str(out))
    assert code == 0, output
    assessed = pd.read_csv(out)
    expected = pd.read_csv(study["predictions"])
    merged = expected.merge(assessed, on="row", suffixes=("_run", "_onnx"))
    assert len(merged) == len(expected) > 0
    assert (merged["image_run"] == merged["image_onnx"]).all()
    assert np.abs(merged["prob_pain_run"] - merged["prob_pain_onnx"]).max() <= 1e-4
    assert (merged["pred"] == merged["label_onnx"]).all()
    assert len(assessed) == len(load_manifest(study["manifest"]))
    assert "assessed" in flat(output)


def test_a_folder_gives_one_row_per_image_and_names_the_ones_without_assessment(study,
                                                                               tmp_path):
    folder = tmp_path / "photos"
    shutil.copytree(study["root"] / "cohort" / "images" / "synth-sharp" / "S001", folder)
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff not really")
    cv2.imwrite(str(folder / "empty.png"), np.zeros((240, 320, 3), np.uint8))
    code, output = run("assess", str(folder), "--model", str(study["model"]),
                       "--format", "csv")
    assert code == 0, output
    table = pd.read_csv(io.StringIO(output))
    images = sorted(p.name for p in folder.iterdir())
    assert sorted(Path(p).name for p in table["image"]) == images
    problems = dict(zip(table["image"].map(lambda p: Path(p).name), table["problem"]))
    assert "cannot read" in problems["broken.jpg"]
    assert problems["empty.png"] == "no face found"
    found = table[table["face"] == 1]
    assert len(found) == len(images) - 2  # MediaPipe finds the synthetic faces
    assert found["prob_pain"].between(0, 1).all()
    assert set(found["label"]) <= {"pain", "nopain"}


def test_a_single_image_as_json(study):
    image = next((study["root"] / "cohort" / "images").rglob("*.jpg"))
    code, output = run("assess", str(image), "--model", str(study["model"]), "--format", "json")
    assert code == 0, output
    (record,) = json.loads(output)
    assert record["face"] == 1 and record["label"] in ("pain", "nopain")
    assert record["model"].startswith("ncnn")
    # a network counts no facial actions: the nfcs columns are there (tables of every model
    # merge) and empty, and the face is assessable
    assert record["assessable"] == 1 and record["problem"] == ""
    assert record["action_count"] is None and record["actions"] == ""
    assert record["brow_bulge"] is None


def test_overlays_are_drawn_for_each_assessed_image(study, tmp_path):
    image = next((study["root"] / "cohort" / "images").rglob("*.jpg"))
    code, output = run("assess", str(image), "--model", str(study["model"]), "--overlays",
                       str(tmp_path / "overlays"))
    assert code == 0, output
    (drawn,) = (tmp_path / "overlays").iterdir()
    assert drawn.name == f"0000_{image.stem}.png"
    assert cv2.imread(str(drawn)).shape == cv2.imread(str(image)).shape


def test_images_without_any_face_exit_3(study, tmp_path):
    cv2.imwrite(str(tmp_path / "wall.png"), np.full((200, 200, 3), 90, np.uint8))
    code, output = run("assess", str(tmp_path / "wall.png"), "--model", str(study["model"]))
    assert code == 3
    assert "no face found in any of the 1 images" in flat(output)


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> Path:
    subjects = make_subjects(CohortSpec(subjects=2, seed=1))
    root = generate_clips(tmp_path_factory.mktemp("clips"), subjects, clips=1,
                          clip=ClipSpec(seconds=8, fps=10), seed=0)
    return root


def test_a_video_writes_its_timeline_plot_and_report(study, clips, tmp_path):
    out, report = tmp_path / "clip", tmp_path / "report" / "clip.html"
    code, output = run("assess", str(clips / "S001.mp4"), "--model", str(study["model"]),
                       "--out", str(out), "--report", str(report))
    assert code == 0, output
    for name in ("timeline.csv", "episodes.csv", "summary.json", "timeline.png", "report.html"):
        assert (out / name).is_file(), name
    assert report.read_text() == (out / "report.html").read_text()
    timeline = pd.read_csv(out / "timeline.csv")
    assert len(timeline) == 80 and timeline["face"].all()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["frames"] == 80 and summary["face_frames"] == 80
    text = flat(output)
    assert re.search(r"frames with a face │ 80 of 80", text), text
    assert re.search(r"time in pain │ [\d.]+ s \(", text), text


def test_a_video_without_a_face_says_so_and_exits_3(study, clips, tmp_path):
    out = tmp_path / "noface"
    code, output = run("assess", str(clips / "noface.mp4"), "--model", str(study["model"]),
                       "--out", str(out))
    assert code == 3
    assert "no face found in any of its 80 frames" in flat(output)
    assert (out / "timeline.csv").is_file()
    assert not (out / "timeline.png").exists() and not (out / "report.html").exists()


@pytest.mark.parametrize("args, says", [
    (["notes.doc"], "cannot tell what it is from '.doc'"),
    (["notes.txt"], "notes.txt line 1: 'hello' is not a video"),  # .txt: a list of videos
    (["missing.jpg"], "no such file or folder"),
    (["clip.mp4", "--format", "csv"], "--format and --overlays are for images"),
    (["clip.mp4", "--overlays", "o"], "--format and --overlays are for images"),
    (["photo.png", "--report", "r.html"], "--report is for videos"),
    (["photo.png", "--model", "model.h5"], "not a model neopain can run"),
    (["photo.png", "--model", "model.pt"], "model.pt: no such file or folder; valid: a fold's "
                                          "model.pt"),
    (["photo.png", "--format", "xml"], "--format xml is not valid"),
])
def test_bad_input_exits_1_naming_it(study, tmp_path, args, says):
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "notes.doc").write_text("hello")
    cv2.imwrite(str(tmp_path / "photo.png"), np.zeros((50, 50, 3), np.uint8))
    shutil.copyfile(next(study["root"].rglob("*.jpg")), tmp_path / "clip.mp4")
    args = [str(tmp_path / args[0]), *args[1:]]
    if "--model" not in args:
        args += ["--model", str(study["model"])]
    code, output = run("assess", *args)
    assert code == 1, output
    assert says in flat(output), output


def test_nfcs_goes_through_the_same_prediction_interface(clips, tmp_path):
    # the rule-based scorer is loaded by name (load_predictor) and crops by its own rule;
    # its accuracy is the NFCS tests' business, here only that assess runs it frame by frame
    out = tmp_path / "nfcs"
    code, output = run("assess", str(clips / "S001.mp4"), "--model", "nfcs", "--out", str(out))
    assert code == 0, output
    timeline = pd.read_csv(out / "timeline.csv")
    assert len(timeline) == 80 and timeline["prob_pain"].between(0, 1).all()
    assert json.loads((out / "summary.json").read_text())["model"] == "nfcs"


def test_manifest_rows_without_a_face_box_say_so(study, tmp_path):
    table = pd.read_csv(study["manifest"], dtype=str, keep_default_na=False)
    table.loc[0, "face_box"] = ""
    manifest = study["manifest"].parent / "partial.csv"
    table.to_csv(manifest, index=False)
    code, output = run("assess", str(manifest), "--model", str(study["model"]), "--format",
                       "csv")
    assert code == 0, output
    result = pd.read_csv(io.StringIO(output), keep_default_na=False)
    assert result["problem"].iat[0].startswith("no face_box in this manifest row")
    assert (result["problem"].iloc[1:] == "").all()
