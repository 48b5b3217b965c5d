"""A network's files in a run folder, written by ``neopain.runs``: history.csv keeps its bytes
and is never left half written; checkpoint.pt and the embedding cache are the same bytes for
the same content; the runs API and its callers take keyword arguments after the first."""

from __future__ import annotations

import inspect
from collections import OrderedDict

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

import neopain.runs
from neopain.data.manifest import Manifest
from neopain.faces.detect_worker import DetectWorker
from neopain.models import ModelCfg, PainModel
from neopain.runs import (
    CHECKPOINT_KEYS,
    HISTORY_COLUMNS,
    load_checkpoint,
    save_checkpoint,
    write_history,
)
from neopain.training.cv import run_fold
from neopain.training.dataset import FaceDataset
from neopain.training.embeddings import EmbeddingCache

ROWS = [{"epoch": 1, "phase": "head", "train_loss": 0.6931, "val_loss": 0.5,
         "val_accuracy": 0.75, "lr": 0.001},
        {"epoch": 2, "phase": "fine-tune", "train_loss": 0.25, "val_loss": float("nan"),
         "val_accuracy": float("nan"), "lr": 0.0001}]


def test_history_csv_keeps_the_bytes_the_history_callback_wrote(tmp_path):
    """history.csv moved from the History callback into neopain.runs: same header, CRLF rows,
    Python's repr of each number (parity with runs written before)."""
    path = write_history(tmp_path / "fold_0" / "history.csv", rows=ROWS)
    assert path.read_bytes() == (b"epoch,phase,train_loss,val_loss,val_accuracy,lr\r\n"
                                 b"1,head,0.6931,0.5,0.75,0.001\r\n"
                                 b"2,fine-tune,0.25,nan,nan,0.0001\r\n")
    assert tuple(pd.read_csv(path).columns) == HISTORY_COLUMNS


def test_a_failed_history_write_leaves_the_previous_file_whole(tmp_path):
    """History opened history.csv with "w" and wrote it row by row: an error (or Ctrl-C) in
    the middle left a truncated file under the real name."""
    path = write_history(tmp_path / "history.csv", rows=ROWS[:1])
    before = path.read_bytes()
    with pytest.raises(ValueError, match="not in fieldnames"):
        write_history(path, rows=[*ROWS, {"epoch": 3, "unknown": 1}])
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["history.csv"]  # no partial file left


def _state() -> dict:
    torch.manual_seed(0)
    return {key: {"weight": torch.randn(3, 2)} if key == "model" else 1
            for key in CHECKPOINT_KEYS}


def test_two_saves_of_one_checkpoint_are_the_same_bytes(tmp_path):
    """torch.save to the temporary path put its random name inside the archive, so identical
    training runs wrote checkpoint.pt files that differed."""
    first = save_checkpoint(tmp_path / "a" / "checkpoint.pt", state=_state())
    second = save_checkpoint(tmp_path / "b" / "checkpoint.pt", state=_state())
    assert first.read_bytes() == second.read_bytes()
    again = first.read_bytes()
    save_checkpoint(first, state=_state())
    assert first.read_bytes() == again
    loaded = load_checkpoint(first, map_location="cpu")
    assert torch.equal(loaded["model"]["weight"], _state()["model"]["weight"])


class _Tiny(PainModel):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.block = nn.Sequential(nn.Conv2d(3, 2, 3), nn.Flatten())
        self.head = nn.Sequential(OrderedDict(fc=nn.Linear(2 * 6 * 6, 2)))
        self.cfg = ModelCfg(name="tiny", input_size=(8, 8), mean=(0.5,) * 3, std=(0.5,) * 3)

    def forward_features(self, x):
        return self.block(x)

    def forward_head(self, features):
        return self.head(features)

    def block_modules(self):
        return {"block": [self.block]}


def test_two_embedding_caches_of_the_same_features_are_the_same_bytes(tmp_path):
    """The embedding cache was torch.save'd to its temporary path as well."""
    import cv2

    rng = np.random.default_rng(0)
    for i in range(3):
        cv2.imwrite(str(tmp_path / f"{i}.png"), rng.integers(0, 255, (8, 8, 3), dtype=np.uint8))
    manifest = Manifest(pd.DataFrame({"image": [f"{i}.png" for i in range(3)],
                                      "subject": ["s0", "s1", "s2"],
                                      "label": ["pain", "nopain", "pain"],
                                      "face_box": [""] * 3}), tmp_path)
    data = FaceDataset(manifest, size=(8, 8), mean=(0.5,) * 3, std=(0.5,) * 3)
    model = _Tiny()
    files = []
    for folder in ("a", "b"):
        EmbeddingCache(tmp_path / folder).features(model, data)
        files.extend((tmp_path / folder).glob("*.pt"))
    assert len(files) == 2 and files[0].name == files[1].name
    assert files[0].read_bytes() == files[1].read_bytes()


def _public_functions():
    module_functions = [getattr(neopain.runs, name) for name in neopain.runs.__all__
                        if inspect.isfunction(getattr(neopain.runs, name))]
    return [*module_functions, run_fold, DetectWorker, DetectWorker.open]


@pytest.mark.parametrize("function", _public_functions(), ids=lambda f: f.__qualname__)
def test_arguments_after_the_first_are_keyword_only(function):
    """STYLE rule 3: write_predictions(folder, manifest, rows, prob), write_record(out, name,
    record), fold_folder(out, index), run_fold(model, manifest, fold) and DetectWorker(settings,
    out, detector) took positional arguments whose order the call site did not say."""
    parameters = [p for p in inspect.signature(function).parameters.values()
                  if p.name not in ("self", "cls")]
    positional = [p.name for p in parameters[1:]
                  if p.kind not in (p.KEYWORD_ONLY, p.VAR_KEYWORD)]
    assert not positional, f"{function.__qualname__}: {positional} should be keyword-only"
