"""The runtime preprocesses exactly as training did, predicts in batches, and releases its
ONNX Runtime session on close (a bedside runs for hours and reloads models)."""

from __future__ import annotations

import dataclasses
import gc
import os

import numpy as np
import pytest
import torch

from neopain.training.dataset import FaceDataset
from neopain.data.manifest import load_manifest
from neopain.errors import NeopainError
from neopain.faces.crop import CropRule
from neopain.export.inputs import manifest_crops
from neopain.export.metadata import ExportedCfg
from neopain.export.onnx import export_model
from neopain.export.runtime import OnnxPredictor, session_options
from neopain.models import create_model
from neopain.prediction import load_predictor
from neopain.runs import load_fold, select_rows

MB = 1 << 20


def resident_mb() -> float:
    with open("/proc/self/statm") as file:
        return int(file.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / MB


@pytest.fixture(scope="module")
def cohort(tiny_fold):
    fold = load_fold(tiny_fold)
    return load_manifest(fold.manifest)


def exported_variant(tmp_path, name: str, **changes) -> object:
    """N-CNN exported with its cfg changed (channel order, mean, std, size, crop)."""
    torch.manual_seed(0)
    model = create_model("ncnn")
    crop = changes.pop("crop", "face_box")
    cfg = dataclasses.replace(model.cfg, **changes)
    model.cfg = cfg
    return export_model(model, tmp_path / f"{name}.onnx", exported=ExportedCfg(cfg=cfg, crop=crop))


@pytest.mark.parametrize("changes", [
    {},  # ncnn: RGB, mean = std = 0.5
    {"channel_order": "BGR", "mean": (0.36, 0.41, 0.51), "std": (1 / 255,) * 3},  # VGG-Face
    {"crop": "image"},
])
def test_runtime_inputs_equal_the_training_dataset_inputs(cohort, tmp_path, changes):
    # guards: a runtime that flips channels the wrong way, resizes with another interpolation,
    # crops differently or normalizes in another order feeds the network what it never saw
    path = exported_variant(tmp_path, "variant", **dict(changes))
    with OnnxPredictor(path) as predictor:
        cfg, crop_to_face = predictor.exported_.cfg, predictor.exported_.crop == "face_box"
        data = FaceDataset(cohort, size=cfg.input_size, mean=cfg.mean, std=cfg.std,
                           channel_order=cfg.channel_order, crop_to_face=crop_to_face)
        rows = list(range(len(cohort)))
        for row, crop in manifest_crops(cohort, rows, crop=predictor.crop):
            expected = data[row]["image"].numpy()
            assert np.array_equal(predictor.preprocess(crop), expected), row


def test_batches_give_the_same_probabilities_as_one_at_a_time(cohort, tiny_onnx):
    rows = select_rows(cohort, limit=11)
    crops = [crop for _, crop in manifest_crops(cohort, rows, crop=CropRule.exact_box())]
    with OnnxPredictor(tiny_onnx, batch_size=4, threads=1) as predictor:
        batched = predictor.predict_crops(crops)
        single = [predictor.predict_crops([crop])[0] for crop in crops]
    assert len(batched) == len(crops)
    assert np.allclose([p.prob_pain for p in batched], [p.prob_pain for p in single], atol=1e-6)
    for prediction in batched:
        assert prediction.label == ("pain" if prediction.prob_pain >= 0.5 else "nopain")
        assert prediction.threshold == 0.5 and prediction.model.startswith("ncnn ")


def test_load_predictor_builds_an_onnx_predictor_with_options(tiny_onnx):
    with load_predictor(tiny_onnx, threads=1, batch_size=3) as predictor:
        assert isinstance(predictor, OnnxPredictor)
        assert (predictor.threads, predictor.batch_size) == (1, 3)
        assert predictor.crop == CropRule.exact_box()


@pytest.mark.parametrize("options, says", [
    ({"threads": 0}, "threads=0"),
    ({"batch_size": 0}, "batch_size=0"),
    ({"optimization": "max"}, "optimization='max'"),
])
def test_bad_options_are_named(tiny_onnx, options, says):
    with pytest.raises(NeopainError, match=says):
        OnnxPredictor(tiny_onnx, **options)


def test_bad_crops_and_a_closed_predictor_are_named(tiny_onnx):
    predictor = OnnxPredictor(tiny_onnx)
    with pytest.raises(NeopainError, match="BGR uint8 H×W×3"):
        predictor.predict_crops([np.zeros((10, 10), np.uint8)])
    with pytest.raises(NeopainError, match=r"shape \(1, 3, 5, 5\)"):
        predictor.predict_inputs(np.zeros((1, 3, 5, 5), np.float32))
    predictor.close()
    predictor.close()  # twice is safe
    with pytest.raises(NeopainError, match="the predictor is closed"):
        predictor.predict_crops([np.zeros((10, 10, 3), np.uint8)])
    assert session_options(threads=2).intra_op_num_threads == 2


def test_closed_predictors_hold_no_session_even_while_still_referenced(tmp_path):
    # a server keeps objects around (logs, caches); each open session holds its weights and
    # thread pool (about 7 MB for mobilenet_nb), so 60 unreleased ones grow memory ~400 MB
    torch.manual_seed(0)
    path = export_model(create_model("mobilenet_nb"), tmp_path / "mobile.onnx")
    crop = np.full((90, 80, 3), 128, np.uint8)
    kept = []
    for _ in range(5):
        with OnnxPredictor(path) as predictor:
            predictor.predict_crops([crop])
    gc.collect()
    before = resident_mb()
    for _ in range(60):
        with OnnxPredictor(path) as predictor:
            predictor.predict_crops([crop])
        kept.append(predictor)
    gc.collect()
    assert resident_mb() - before < 60
    assert all(predictor.session_ is None for predictor in kept)


def test_manifest_rows_and_crops_name_bad_rows(cohort, tmp_path):
    from neopain.data.manifest import Manifest
    from neopain.export.inputs import labels_of

    with pytest.raises(NeopainError, match="rows has 999"):
        select_rows(cohort, rows=[0, 999])
    with pytest.raises(NeopainError, match="subjects NOBODY are not in the manifest"):
        select_rows(cohort, subjects=["NOBODY"])
    assert select_rows(cohort, limit=3) == [0, 1, 2]
    from neopain.export.inputs import spread

    assert spread([10, 11, 12, 13, 14, 15, 16], 3) == [10, 13, 16]  # every part, not the first
    assert spread([1, 2], 5) == [1, 2]
    assert set(labels_of(cohort, range(len(cohort)))) <= {0, 1}
    table = cohort.table.copy()
    table.loc[1, "face_box"] = ""
    table.loc[2, "image"] = "images/missing.jpg"
    broken = Manifest(table, cohort.root)
    with pytest.raises(NeopainError, match="manifest line 3, column 'face_box': is empty"):
        list(manifest_crops(broken, [0, 1], crop=CropRule.exact_box()))
    # whole image: no box needed
    assert len(list(manifest_crops(broken, [1], crop=CropRule.whole_image()))) == 1
    with pytest.raises(NeopainError, match="manifest line 4, image .*missing.jpg: cannot read "
                                           "image: file not found"):
        list(manifest_crops(broken, [2], crop=CropRule.exact_box()))
