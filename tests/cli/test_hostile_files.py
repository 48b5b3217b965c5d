"""Every file a command opens from a path the user gave (a YAML run config, a run folder's files,
an .onnx model, a model.pt, a weights file) is refused with ``error: FILE: reason`` and exit 1
when it is a FIFO, a device, a folder, a name too long, empty, random bytes or a hostile file
of its own kind: never a traceback, a hang or unbounded memory (issue 16, item 6)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cli_invoke import invoke, train_fold_0, write_face
from hostile_paths import REASONS, hostile

BILLION_LAUGHS = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{name}: &{name} [{', '.join([f'*{alias}'] * 9)}]\n" for alias, name in zip("abcdefgh",
                                                                              "bcdefghi"))
HOSTILE_YAML = {
    "deep": ("[" * 5000 + "]" * 5000, "nested deeper than 32 levels"),
    "billion laughs": (BILLION_LAUGHS, "holds more than 100,000 values with its aliases "
                                       "expanded"),
    "self alias": ("a: &a [1, *a]\n", "an alias refers to a collection that holds it"),
    "random bytes": (bytes(range(128, 256)) * 4, "is not UTF-8 text (byte 0x80 at offset 0)"),
    "NUL byte": ("model: ncnn\0\n", "holds a NUL byte at offset 11"),
    "a list": ("- model\n- ncnn\n", "holds a list, not key: value lines"),
}


def write_yaml(path: Path, content: str | bytes) -> Path:
    if isinstance(content, str):
        content = content.encode()
    path.write_bytes(content)
    return path


@pytest.mark.parametrize("kind", REASONS)
def test_train_config_that_is_no_regular_file_is_refused(tmp_path, kind):
    """A FIFO as --config hung ``neopain train``; /dev/zero, a folder or a long name raised a
    traceback (IsADirectoryError, OSError) through the library's ConfigError."""
    config = hostile(tmp_path / "run.yaml", kind)
    code, output = invoke("train", "--config", str(config), seconds=30)
    assert code == 1 and f"error: {config}: {REASONS[kind]}" in output, output


@pytest.mark.parametrize("kind", HOSTILE_YAML)
def test_train_config_that_is_hostile_yaml_is_refused(tmp_path, kind):
    """Deep nesting raised RecursionError from PyYAML's composer; a billion-laughs alias bomb
    was loaded (its error message then printed 9⁹ items); bad bytes were a traceback."""
    content, says = HOSTILE_YAML[kind]
    config = write_yaml(tmp_path / "run.yaml", content)
    code, output = invoke("train", "--config", str(config), seconds=30)
    assert code == 1 and f"error: {config}: " in output and says in output, output
    assert len(output) < 2000, output


def write_run(root: Path) -> Path:
    """A two-fold run folder that ``neopain evaluate`` accepts."""
    root.mkdir()
    (root / "config.yaml").write_text("model: ncnn\n")
    for fold in range(2):
        (root / f"fold_{fold}").mkdir()
        rows = range(fold * 10, fold * 10 + 10)
        label = np.where(np.arange(10) % 2 == 1, "pain", "nopain")
        pd.DataFrame({"row": rows, "label": label, "prob_pain": np.where(
            label == "pain", 0.8, 0.2), "fold": fold}).to_csv(
            root / f"fold_{fold}" / "predictions.csv", index=False)
    return root


@pytest.mark.parametrize("name", ["config.yaml", "fold_0/predictions.csv",
                                  "fold_0/metrics.json"])
@pytest.mark.parametrize("kind", ["fifo", "device", "folder"])
def test_evaluate_and_compare_refuse_a_run_file_that_is_no_regular_file(tmp_path, name, kind):
    """A FIFO or /dev/zero as config.yaml or predictions.csv was called 'file not found'
    (metrics.json: a hang, or /dev/zero read until memory ran out)."""
    run = write_run(tmp_path / "run")
    (run / name).unlink(missing_ok=True)
    hostile(run / name, kind)
    other = write_run(tmp_path / "other")
    for args in (["evaluate", str(run), "--out", str(tmp_path / "report")],
                 ["compare", str(run), str(other)]):
        code, output = invoke(*args, seconds=30)
        assert code == 1 and REASONS[kind] in output and name.split("/")[-1] in output, output


@pytest.mark.parametrize("kind", HOSTILE_YAML)
def test_evaluate_refuses_a_hostile_config_yaml(tmp_path, kind):
    """A deep config.yaml raised RecursionError in ``evaluate`` and ``compare``."""
    run = write_run(tmp_path / "run")
    content, says = HOSTILE_YAML[kind]
    write_yaml(run / "config.yaml", content)
    code, output = invoke("evaluate", str(run), "--out", str(tmp_path / "report"), seconds=30)
    assert code == 1 and f"error: {run / 'config.yaml'}: " in output and says in output, output


@pytest.mark.parametrize("kind", [*REASONS, "empty", "random bytes"])
def test_assess_and_faces_refuse_an_onnx_model_that_cannot_be_one(tmp_path, kind):
    """``--model x.onnx`` with a name too long raised OSError from Path.is_file; a FIFO,
    /dev/zero or a folder was called 'no such file'."""
    write_face(tmp_path / "face.png")
    model = tmp_path / "model.onnx"
    if kind == "empty":
        model.write_bytes(b"")
    elif kind == "random bytes":
        model.write_bytes(bytes(range(256)) * 16)
    else:
        model = hostile(model, kind)
    says = REASONS.get(kind, "ONNX Runtime cannot load it")
    code, output = invoke("assess", str(tmp_path / "face.png"), "--model", str(model),
                          seconds=60)
    assert code == 1 and f"{model}: {says}" in output, output
    (tmp_path / "manifest.csv").write_text("image,subject,label\nface.png,s1,pain\n")
    code, output = invoke("faces", "detect", str(tmp_path / "manifest.csv"), "--detector",
                          "onnx", "--model", str(model), "--out", str(tmp_path / "faces"),
                          "--workers", "1", seconds=60)
    says = REASONS.get(kind, "the file is empty (0 bytes)" if kind == "empty"
                       else "not a usable ONNX model")
    assert code == 1 and f"error: {model}: {says}" in output, output


@pytest.mark.parametrize("kind, content, says", [
    ("fifo", None, REASONS["fifo"]),
    ("device", None, REASONS["device"]),
    ("folder", None, REASONS["folder"]),
    ("text", b"a: &a [x, x]\n", "not a neopain model.pt (IndexError"),
    ("pickle", b"\x80\x04garbage", "not a neopain model.pt (UnpicklingError"),
])
def test_export_and_explain_refuse_a_model_pt_that_cannot_be_one(tmp_path, kind, content, says):
    """A text file as model.pt raised IndexError from torch's weights-only unpickler (a
    traceback in export, explain run and explain sanity); a FIFO was called 'file not found'."""
    fold = tmp_path / "run" / "fold_0"
    fold.mkdir(parents=True)
    if content is None:
        hostile(fold / "model.pt", kind)
    else:
        (fold / "model.pt").write_bytes(content)
    for args in (["export", str(fold), "--out", str(tmp_path / "model.onnx")],
                 ["explain", "run", str(fold), "--out", str(tmp_path / "explained")],
                 ["explain", "sanity", str(fold)]):
        code, output = invoke(*args, seconds=60)
        assert code == 1 and f"error: {fold / 'model.pt'}: {says}" in output, output


@pytest.mark.parametrize("kind, content, says", [
    ("fifo", None, REASONS["fifo"]),
    ("device", None, REASONS["device"]),
    ("not HDF5", b"\x89HDF\r\n\x1a\n" + bytes(3000), "cannot be read as an HDF5 file"),
    ("not torch", b"\x80\x04garbage", "cannot be read as a torch weights file"),
])
def test_train_refuses_a_weights_file_that_cannot_be_one(cohort6, tmp_path, kind, content,
                                                          says):
    """``--weights`` is checked like every other file: a FIFO is refused, not opened."""
    weights = tmp_path / "weights.pth"
    if content is None:
        hostile(weights, kind)
    else:
        weights.write_bytes(content)
    code, output = train_fold_0(cohort6, tmp_path / "run", "--weights", str(weights))
    assert code == 1 and f"error: {weights}: {says}" in output, output


def test_dataset_frames_names_a_video_name_too_long_for_the_file_system(tmp_path):
    """A 300-character ``video`` cell raised ``OSError: File name too long`` from
    ``Path.exists`` while the videos table was checked."""
    table = tmp_path / "videos.csv"
    pd.DataFrame([{"video": "a" * 300 + ".mp4", "subject": "S1", "score": 1}]).to_csv(
        table, index=False)
    code, output = invoke("dataset", "frames", str(table), "--out", str(tmp_path / "out"))
    assert code == 1 and REASONS["long name"] in output, output


def test_augment_refuses_an_out_folder_name_too_long_for_the_file_system(cohort6, tmp_path):
    """``--out`` with a 300-character name raised OSError from ``Path.exists``."""
    out = tmp_path / ("a" * 300)
    code, output = invoke("augment", str(cohort6 / "manifest.csv"), "--folds",
                          str(cohort6 / "folds.json"), "--fold", "0", "--n", "1",
                          "--out", str(out), "--workers", "1", seconds=60)
    assert code == 1 and "error:" in output and "too long" in output, output


def test_an_error_naming_a_path_with_rich_markup_is_printed_as_text(tmp_path):
    """The console script printed NeopainError as Rich markup: a path holding ``[/]`` raised
    MarkupError (a traceback) and ``[b]`` vanished from the message."""
    config = tmp_path / "run[/]of [b]day.yaml"
    code, output = invoke("train", "--config", str(config), seconds=30)
    assert code == 1 and f"error: {config}: " in output, output


def test_the_console_script_prints_such_an_error_without_a_traceback(tmp_path):
    import subprocess
    import sys

    config = tmp_path / "run[/]of [b]day.yaml"
    done = subprocess.run([sys.executable, "-m", "neopain", "train", "--config", str(config)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    assert f"error: {config}: " in " ".join(done.stderr.split()), done.stderr
