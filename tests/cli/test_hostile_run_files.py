"""Files that a command finds inside a folder the user named (an explain run's explanations.csv
and heatmaps, a perception table's heatmaps, landmarks, a checkpoint, a face detection log) are
refused with ``error: ...: reason`` and exit 1 when they are a FIFO, a device, a folder, garbage,
a pickle or huge: never a traceback or a hang (issue 16, item 6)."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
import torch

from cli_invoke import invoke, train_fold_0
from hostile_paths import REASONS, hostile

from neopain.training import oof_leaks



def _npy_bytes(array: np.ndarray | None = None, *, header: dict | None = None) -> bytes:
    """``array`` as np.save writes it (pickles allowed), or only a .npy ``header``."""
    buffer = io.BytesIO()
    if header is not None:
        np.lib.format.write_array_header_1_0(buffer, header)
    else:
        np.save(buffer, array, allow_pickle=True)
    return buffer.getvalue()


NPY_CONTENT = {
    "text": (b"hello, world\n", "is not a readable .npy array (the magic string is not correct"),
    "empty": (b"", "is not a readable .npy array (EOF: reading magic string"),
    "pickle": (_npy_bytes(np.array([{"x": 1}], dtype=object)),
               "holds Python objects, which are never loaded"),
    "huge header": (_npy_bytes(header={"descr": "<f8", "fortran_order": False,
                                       "shape": (10**12,)}),
                    "its header promises 8,000,000,000,000 bytes of data, it holds 0"),
}


def explained(folder, *, heatmap: str = "heatmaps/a.npy", columns: dict | None = None):
    """A small ``neopain explain run`` folder (one image, gradcam) and a perception table of
    one persona for the same image; returns the perception table's path."""
    (folder / "heatmaps").mkdir(parents=True)
    np.save(folder / "heatmaps" / "a.npy", np.random.default_rng(0).random((8, 8), np.float32))
    row = {"image": "a.png", "method": "gradcam", "target": "pain", "pred": "pain",
           "heatmap": heatmap, "regions": "", "crop_box": "", "original_image": "a.png",
           "original_size": "[8, 8]", "original_box": "[0, 0, 8, 8]", "placement_problem": ""}
    pd.DataFrame([columns or row]).to_csv(folder / "explanations.csv", index=False)
    np.save(folder / "p.npy", np.random.default_rng(1).random((8, 8), np.float32))
    perception = folder / "perception.csv"
    pd.DataFrame([{"file_name": "a.png", "heatmap_file_name": "p.npy", "persona": "lay",
                   "new_percep_file_name": "p.npy", "new_file_name": "a.png"}]).to_csv(
        perception, index=False)
    return perception


def compare(folder, perception) -> tuple[int, str]:
    return invoke("explain", "compare", "--perception", str(perception), "--attributions",
                  str(folder), "--out", str(folder / "agreement"), seconds=60)


def test_compare_with_a_sound_attributions_folder_works(tmp_path):
    code, output = compare(tmp_path, explained(tmp_path))
    assert code == 0, output


@pytest.mark.parametrize("kind", ["fifo", "device"])
def test_compare_refuses_an_explanations_csv_that_is_no_regular_file(tmp_path, kind):
    """explanations.csv was read with pd.read_csv: a FIFO hung ``explain compare``."""
    perception = explained(tmp_path)
    (tmp_path / "explanations.csv").unlink()
    hostile(tmp_path / "explanations.csv", kind)
    code, output = compare(tmp_path, perception)
    assert code == 1 and f"{tmp_path / 'explanations.csv'}" in output, output
    assert REASONS[kind] in output, output


def test_compare_names_the_columns_explanations_csv_lacks(tmp_path):
    """An explanations.csv without a ``method`` column raised KeyError."""
    perception = explained(tmp_path, columns={"image": "a.png", "heatmap": "heatmaps/a.npy"})
    code, output = compare(tmp_path, perception)
    assert code == 1 and "explanations.csv: 8 problems" in output, output
    assert "│ method │ │ column missing; explanations.csv needs the columns" in output, output


def bad_npy(path, kind: str) -> str:
    """Put a hostile ``kind`` of .npy at ``path``; what the error must say about it."""
    if kind in NPY_CONTENT:
        content, says = NPY_CONTENT[kind]
        path.write_bytes(content)
        return says
    hostile(path, kind)
    return REASONS[kind]


@pytest.mark.parametrize("kind", ["fifo", "device", "folder", *NPY_CONTENT])
def test_compare_refuses_a_heatmap_that_cannot_be_one(tmp_path, kind):
    """Heatmaps were loaded with np.load: a FIFO hung, a folder or /dev/zero raised."""
    perception = explained(tmp_path, heatmap="heatmaps/b.npy")
    heatmap = tmp_path / "heatmaps" / "b.npy"
    says = bad_npy(heatmap, kind)
    code, output = compare(tmp_path, perception)
    assert code == 1 and f"{heatmap}: " in output and says in output, output


@pytest.mark.parametrize("kind", ["fifo", "device", "folder", *NPY_CONTENT])
def test_compare_refuses_a_perception_heatmap_that_cannot_be_one(tmp_path, kind):
    """A perception table's .npy heatmap was loaded with np.load: a FIFO hung."""
    perception = explained(tmp_path)
    heatmap = tmp_path / "p.npy"
    heatmap.unlink()
    says = bad_npy(heatmap, kind)
    code, output = compare(tmp_path, perception)
    assert code == 1 and f"heatmap {heatmap} cannot be read (" in output, output
    assert says in output, output


class RunsCode:
    """Unpickled, it calls print: as any function a hostile checkpoint could name."""

    def __reduce__(self):
        return (print, ("code ran",))


@pytest.mark.parametrize("kind, content, says", [
    ("fifo", None, REASONS["fifo"]),
    ("folder", None, REASONS["folder"]),
    ("text", b"a: &a [x, x]\n", "not a neopain checkpoint.pt (IndexError"),
    ("a pickle", b"\x80\x04garbage", "not a neopain checkpoint.pt (UnpicklingError"),
    ("other tensors", None, "not a neopain checkpoint.pt (it lacks model, optimizer"),
    ("code", None, "not a neopain checkpoint.pt (UnpicklingError: Weights only load failed"),
])
def test_train_refuses_a_checkpoint_that_cannot_be_one(cohort6, tmp_path, kind, content, says):
    """A fold resumes from its checkpoint.pt: it was read with torch.load(weights_only=False),
    which runs any code a pickle holds; a folder there was skipped, then training failed with
    IsADirectoryError at the end of the first epoch; a FIFO was trained over."""
    checkpoint = tmp_path / "run" / "fold_0" / "checkpoint.pt"
    checkpoint.parent.mkdir(parents=True)
    if kind in ("other tensors", "code"):
        torch.save({"weights": torch.zeros(2)} if kind == "other tensors" else RunsCode(),
                   checkpoint)
    elif content is None:
        hostile(checkpoint, kind)
    else:
        checkpoint.write_bytes(content)
    code, output = train_fold_0(cohort6, tmp_path / "run")
    assert code == 1 and f"error: {checkpoint}: {says}" in output, output
    assert "delete it to train this fold from the start" in output, output
    assert "code ran" not in output, output


def test_oof_leaks_never_runs_code_a_model_pt_holds(tmp_path, capsys):
    """oof_leaks read each fold's model.pt with torch.load(weights_only=False)."""
    fold = tmp_path / "fold_0"
    fold.mkdir()
    torch.save(RunsCode(), fold / "model.pt")
    pd.DataFrame([{"subject": "S1"}]).to_csv(fold / "predictions.csv", index=False)
    assert oof_leaks(tmp_path) == ["fold_0: model.pt cannot be read (UnpicklingError); its "
                                   "predictions cannot be checked for leakage"]
    assert "code ran" not in capsys.readouterr().out


@pytest.mark.parametrize("name, kind", [("faces.json", "fifo"), ("faces.json", "folder"),
                                        ("faces.jsonl", "fifo"), ("faces.jsonl", "device")])
def test_faces_detect_refuses_a_run_log_that_is_no_regular_file(cohort6, tmp_path, name, kind):
    """faces detect read faces.json and faces.jsonl in --out with read_text to resume: a FIFO
    there hung it, a folder raised from the unlink or replace that followed."""
    out = tmp_path / "faces"
    out.mkdir()
    log = hostile(out / name, kind)
    code, output = invoke("faces", "detect", str(cohort6 / "manifest.csv"), "--detector",
                          "manifest", "--out", str(out), "--size", "64", "--workers", "1",
                          seconds=60)
    assert code == 1 and f"error: {log}: {REASONS[kind]}" in output, output
    assert "remove it, or write to another --out folder" in output, output
