"""``neopain robustness``: tables and files for a training run and for nfcs; bad input is
refused by name, never with a traceback."""

from __future__ import annotations

import shutil

import pandas as pd
import pytest

from neopain.export import torch_runtime

from cli_invoke import invoke, train_fold_0
from face_manifest import write_face_manifest


@pytest.fixture(scope="module")
def faces(tmp_path_factory):
    return write_face_manifest(tmp_path_factory.mktemp("faces"))


def test_nfcs_on_real_faces_writes_the_table_the_scores_and_the_plot(faces, tmp_path):
    out = tmp_path / "nfcs"
    code, output = invoke("robustness", "nfcs", "--manifest", str(faces), "--out", str(out),
                          "--corruption", "blur", "--corruption", "rotation",
                          "--severity", "1", "--severity", "5")
    assert code == 0, output
    assert "nfcs: 4 images: accuracy" in output
    assert "share of faces the model could assess" in output  # blur hides the face
    table = pd.read_csv(out / "robustness.csv")
    assert list(zip(table["corruption"], table["severity"])) == [
        ("clean", 0), ("blur", 1), ("blur", 5), ("rotation", 1), ("rotation", 5)]
    assert table.loc[0, "accuracy"] == 1.0
    assert len(pd.read_csv(out / "scores.csv")) == 4 * 5
    assert (out / "robustness.png").stat().st_size > 10_000


@pytest.fixture(scope="module")
def run(cohort6, tmp_path_factory):
    """A run trained on fold 0 only (score it, never write into it)."""
    out = tmp_path_factory.mktemp("run") / "run"
    code, output = train_fold_0(cohort6, out)
    assert code == 0, output
    return out


def test_a_training_run_and_its_onnx_export_give_the_same_table(cohort6, run, tmp_path):
    shutil.copytree(run, tmp_path / "run")
    code, output = invoke("robustness", str(tmp_path / "run"), "--out", str(tmp_path / "out"),
                          "--corruption", "downscale", "--severity", "5", "--limit", "3")
    assert code == 0, output
    assert "run/fold_0: 3 images: accuracy" in output
    table = pd.read_csv(tmp_path / "out" / "robustness.csv")
    assert list(table["corruption"]) == ["clean", "downscale"]
    assert (table["images"] == 3).all()
    scores = pd.read_csv(tmp_path / "out" / "scores.csv")

    onnx = tmp_path / "ncnn.onnx"
    code, output = invoke("export", str(tmp_path / "run" / "fold_0"), "--out", str(onnx),
                          "--parity", "0")
    assert code == 0, output
    rows = tmp_path / "test_rows.csv"  # the fold's test rows scored above, as a manifest
    manifest = pd.read_csv(cohort6 / "manifest.csv", dtype=str, keep_default_na=False)
    manifest["image"] = [str(cohort6 / image) for image in manifest["image"]]
    manifest.loc[scores["row"].unique()].to_csv(rows, index=False)
    code, output = invoke("robustness", str(onnx), "--manifest", str(rows), "--out",
                          str(tmp_path / "onnx"), "--corruption", "downscale", "--severity", "5")
    assert code == 0, output
    exported = pd.read_csv(tmp_path / "onnx" / "scores.csv")
    assert list(exported["image"]) == [str(cohort6 / image) for image in scores["image"]]
    assert exported["prob_pain"].to_numpy() == pytest.approx(scores["prob_pain"], abs=1e-4)


def test_the_folds_of_a_run_are_in_memory_one_at_a_time(run, tmp_path, monkeypatch):
    """Bug: every fold's network was built before the first was scored (a 10-fold VGG16 run
    held 5.5 GB), and those built were never closed when a later fold failed."""
    shutil.copytree(run, tmp_path / "run")
    shutil.copytree(run / "fold_0", tmp_path / "run" / "fold_1")
    live, most = set(), []

    class CountedPredictor(torch_runtime.RunPredictor):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            live.add(id(self))
            most.append(len(live))

        def close(self):
            live.discard(id(self))
            super().close()

    monkeypatch.setattr(torch_runtime, "RunPredictor", CountedPredictor)
    code, output = invoke("robustness", str(tmp_path / "run"), "--out", str(tmp_path / "out"),
                          "--corruption", "jpeg", "--severity", "1", "--limit", "2")
    assert code == 0, output
    assert most == [1, 1] and not live


def test_a_region_no_face_shows_is_refused_by_name(faces, tmp_path):
    """Bug: with only the clean condition scored the plot had 0 panels (ValueError)."""
    bare = tmp_path / "bare.csv"
    table = pd.read_csv(faces, dtype=str, keep_default_na=False)
    table["keypoints"] = ""
    table["image"] = [str(faces.parent / image) for image in table["image"]]
    table.to_csv(bare, index=False)
    code, output = invoke("robustness", "nfcs", "--manifest", str(bare), "--out",
                          str(tmp_path / "out"), "--corruption", "occlude_mouth")
    assert code == 1, output
    assert ("no face could be scored under --corruption occlude_mouth: none shows the mouth or "
            "has keypoints or landmarks") in output


def test_the_title_counts_the_images_scored_not_those_skipped_as_unreadable(faces, tmp_path):
    """Bug: the title said 4 images when one of the 4 could not be read."""
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png")
    table = pd.read_csv(faces, dtype=str, keep_default_na=False)
    table["image"] = [str(faces.parent / image) for image in table["image"]]
    table.loc[0, "image"] = str(broken)
    table.to_csv(tmp_path / "manifest.csv", index=False)
    code, output = invoke("robustness", "nfcs", "--manifest", str(tmp_path / "manifest.csv"),
                          "--out", str(tmp_path / "out"), "--corruption", "jpeg",
                          "--severity", "1")
    assert code == 0, output
    assert "broken.png" in output and "nfcs: 3 images: accuracy" in output


@pytest.mark.parametrize("args, expected", [
    (["--corruption", "fog"], "corruption 'fog' is not valid; valid: brightness, downscale"),
    (["--severity", "9"], "severity=9 is not valid; valid: 1, 2, 3, 4, 5"),
    (["--limit", "0"], "--limit 0 is not valid"),
])
def test_bad_options_are_refused_by_name(faces, tmp_path, args, expected):
    code, output = invoke("robustness", "nfcs", "--manifest", str(faces), "--out",
                          str(tmp_path), *args)
    assert code == 1 and expected in output, output


@pytest.mark.parametrize("model, expected", [
    ("runs/none", "runs/none: no such file or folder"),
    ("nfcs", "give --manifest with the images to score"),
    ("model.onnx", "give --manifest with the images to score"),
])
def test_a_missing_model_or_manifest_is_refused_by_name(tmp_path, monkeypatch, model, expected):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "model.onnx").write_bytes(b"")
    code, output = invoke("robustness", model, "--out", str(tmp_path))
    assert code == 1 and expected in output, output
