"""`neopain synth` and `neopain demo` end to end, through the installed console script."""

from __future__ import annotations

import re
import subprocess

import pandas as pd
import pytest

from neopain.data.folds import check_folds, load_folds
from neopain.data.manifest import load_manifest


def _run(script, *args, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([str(script), *args], capture_output=True, text=True, cwd=cwd,
                          env={"COLUMNS": "120", "PATH": "/usr/bin:/bin", "MPLBACKEND": "Agg"},
                          timeout=300)


def test_synth_writes_a_valid_cohort_with_video(neopain_script, tmp_path):
    out = tmp_path / "cohort"
    done = _run(neopain_script, "synth", "--out", str(out), "--subjects", "3", "--seed", "2",
                "--min-images", "3", "--max-images", "4", "--video", "--clips", "1",
                "--clip-seconds", "8", "--fps", "4")
    assert done.returncode == 0, done.stderr
    assert "valid (files checked)" in done.stdout
    manifest = load_manifest(out / "manifest.csv", check_files=True)
    assert manifest.table["subject"].nunique() == 3
    assert '"rater_noise": 0.0' in (out / "cohort.json").read_text()
    videos = pd.read_csv(out / "videos" / "videos.csv")
    assert videos["video"].tolist() == ["videos/S001.mp4", "videos/noface.mp4"]
    assert all((out / v).stat().st_size > 0 for v in videos["video"])


def test_synth_rater_noise_reaches_the_cohort(neopain_script, tmp_path):
    done = _run(neopain_script, "synth", "--out", str(tmp_path), "--subjects", "2",
                "--min-images", "2", "--max-images", "2", "--rater-noise", "0.3")
    assert done.returncode == 0, done.stderr
    assert '"rater_noise": 0.3' in (tmp_path / "cohort.json").read_text()


@pytest.mark.parametrize("args, message", [
    (["--subjects", "1"], "subjects=1 is too few"),
    (["--min-images", "5", "--max-images", "2"], "images_per_subject=(5, 2)"),
    (["--video", "--fps", "0"], "fps=0.0 must lie in [1, 60]"),
    (["--rater-noise", "1.5"], "rater_noise=1.5 must lie in [0, 1]"),
])
def test_synth_bad_options_exit_1_with_a_clear_message(neopain_script, tmp_path, args, message):
    done = _run(neopain_script, "synth", "--out", str(tmp_path), *args)
    assert done.returncode == 1
    assert message in " ".join(done.stderr.split())
    assert "Traceback" not in done.stderr + done.stdout


@pytest.mark.slow
def test_demo_runs_every_landed_stage_and_leaves_pictures(neopain_script, tmp_path):
    done = _run(neopain_script, "demo", "--out", str(tmp_path / "demo"), "--subjects", "4",
                "--epochs", "1")
    assert done.returncode == 0, done.stderr
    steps = ("step 1: synthesize a cohort", "step 2: look at the ground truth",
             "step 3: find and crop the faces", "step 4: extract frames",
             "step 5: split subjects into folds", "step 6: augment fold 0",
             "step 7: train N-CNN on every fold", "demo complete")
    for step in steps:
        assert step in done.stdout
    assert "synthetic" in done.stdout and "not real" in " ".join(done.stdout.split())
    demo = tmp_path / "demo"
    for picture in ("overview.png", "timeline.png", "augmented.png", "faces.png"):
        assert (demo / picture).stat().st_size > 10_000
    crops = load_manifest(demo / "faces" / "manifest.csv", check_files=True)
    assert len(crops) == len(load_manifest(demo / "manifest.csv"))  # every synthetic face cropped
    found = re.search(r"mediapipe-short\s*│\s*(\d\.\d\d)\s*│\s*(\d+)", done.stdout)
    assert found and float(found[1]) >= 0.5 and found[2] == "0"  # astronaut found, coffee not
    frames = load_manifest(demo / "frames" / "manifest.csv", check_files=True)
    assert set(frames.table["scale"]) == {"DAN"}
    assert set(frames.table["label"]) == {"pain", "nopain"}
    plan = load_folds(demo / "folds.json", manifest=demo / "manifest.csv")
    assert check_folds(plan, load_manifest(demo / "manifest.csv")).ok
    augmented = load_manifest(demo / "augmented" / "manifest.csv", check_files=True)
    assert set(augmented.subjects) == set(plan.folds[0].train)  # never val or test subjects
    run = demo / "runs" / "ncnn"
    for fold in plan.folds:  # out-of-fold: each fold's predictions are its test subjects only
        predicted = pd.read_csv(run / f"fold_{fold.index}" / "predictions.csv", dtype=str)
        assert set(predicted["subject"]) == set(fold.test)
    assert (run / "report.html").stat().st_size > 10_000 and (run / "summary.json").is_file()
