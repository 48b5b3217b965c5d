"""The ``run`` predictor kind: a fold's network or a run's folds as one ensemble, preprocessed
as the ONNX runtime does, with MC-dropout passes that differ, are seeded and yield
uncertainty; bad specs are named; closing drops the networks."""

from __future__ import annotations

import gc
import os
import weakref
from pathlib import Path

import numpy as np
import pytest
import torch

from neopain.data.manifest import load_manifest
from neopain.errors import NeopainError
from neopain.evaluation.uncertainty import summarize_passes
from neopain.export.inputs import manifest_crops
from neopain.export.runtime import OnnxPredictor
from neopain.export.torch_runtime import RunPredictor
from neopain.models import create_model
from neopain.prediction import load_predictor, model_choices, predictor_kinds
from neopain.runs import fold_folder, load_fold, save_network, select_rows


@pytest.fixture(scope="module")
def run3(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run folder with three untrained N-CNN folds (different weights), and clutter that
    is not a fold: a folder ``fold_x`` and a ``fold_7`` without a model."""
    run = tmp_path_factory.mktemp("run3") / "ncnn"
    for index in (2, 0, 1):
        torch.manual_seed(index)
        save_network(fold_folder(run, index=index), model=create_model("ncnn"), name="ncnn",
                     fold=index, epoch=1, train_subjects=["A"], val_subjects=[],
                     test_subjects=[f"T{index}"])
    (run / "fold_x").mkdir()
    (run / "fold_7").mkdir()
    return run


@pytest.fixture(scope="module")
def crops() -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in
            [(100, 90), (64, 64), (130, 150), (120, 120), (80, 70)]]


def fifo(path: Path) -> Path:
    if not path.exists():
        os.mkfifo(path)
    return path


def probs(predictions) -> np.ndarray:
    return np.array([prediction.prob_pain for prediction in predictions])


def test_the_run_kind_is_registered_and_opens_a_model_pt_with_the_runtime_options(run3):
    assert predictor_kinds()["run"] is RunPredictor
    assert "model.pt" in model_choices()
    with load_predictor(run3 / "fold_1" / "model.pt", batch_size=2, mc_passes=3) as predictor:
        assert isinstance(predictor, RunPredictor)
        assert (predictor.batch_size, predictor.mc_passes, predictor.passes) == (2, 3, 3)
        assert [fold.fold for fold in predictor.folds_] == [1]
        assert predictor.name == "ncnn ncnn/fold_1, 3 MC-dropout passes"


def test_a_run_folder_loads_every_fold_in_fold_order(run3):
    # guards: an ensemble that silently uses the first fold found (or sorts fold_10 before
    # fold_2) answers for fewer models than it names
    with RunPredictor(run3) as predictor:
        assert [fold.fold for fold in predictor.folds_] == [0, 1, 2]
        assert [fold.test_subjects for fold in predictor.folds_] == [("T0",), ("T1",), ("T2",)]
        assert predictor.passes == 3 and "(3 folds)" in predictor.name
    with RunPredictor(run3 / "fold_2") as predictor:  # a fold folder is one member
        assert [fold.fold for fold in predictor.folds_] == [2]


def test_the_ensemble_answers_the_mean_of_its_members(run3, crops):
    members = []
    for index in range(3):
        with RunPredictor(run3 / f"fold_{index}" / "model.pt") as member:
            members.append(probs(member.predict_crops(crops)))
    with RunPredictor(run3, batch_size=2) as ensemble:
        predictions = ensemble.predict_crops(crops)
    np.testing.assert_allclose(probs(predictions), np.mean(members, axis=0), atol=1e-6)
    spread = summarize_passes(np.array(members))
    for i, prediction in enumerate(predictions):
        assert prediction.uncertainty["passes"] == 3
        assert prediction.uncertainty["entropy"] == pytest.approx(spread.entropy[i], abs=1e-6)
        assert prediction.uncertainty["mutual_information"] == pytest.approx(
            spread.mutual_information[i], abs=1e-6)
    assert max(p.uncertainty["mutual_information"] for p in predictions) > 0  # members differ


def test_one_fold_without_passes_is_deterministic_and_has_no_uncertainty(run3, crops):
    with RunPredictor(run3 / "fold_0", seed=None) as predictor:
        first, second = predictor.predict_crops(crops), predictor.predict_crops(crops)
    assert probs(first).tolist() == probs(second).tolist()
    assert all(prediction.uncertainty == {} for prediction in first)
    assert all(p.prob_kind == "uncalibrated" for p in first)  # a softmax, not a score
    assert all(prediction.label == ("pain" if prediction.prob_pain >= 0.5 else "nopain")
               for prediction in first)


def test_mc_passes_differ_are_seeded_and_summarized(run3, crops):
    with RunPredictor(run3 / "fold_0", mc_passes=8, seed=3) as predictor:
        inputs = np.stack([predictor.preprocess(crop) for crop in crops])
        passes = predictor.member_probs(inputs)
        again = predictor.predict_crops(crops)
        state = torch.get_rng_state()
        assert probs(predictor.predict_crops(crops)).tolist() == probs(again).tolist()
        assert torch.equal(torch.get_rng_state(), state)  # the caller's random state kept
    assert passes.shape == (8, len(crops))
    assert len({row.tobytes() for row in passes}) == 8  # dropout sampled in every pass
    np.testing.assert_allclose(probs(again), passes.mean(axis=0), atol=1e-6)
    assert all(p.uncertainty["passes"] == 8 and p.uncertainty["mutual_information"] > 0
               for p in again)
    with RunPredictor(run3, mc_passes=4) as ensemble:
        assert ensemble.predict_crops(crops[:1])[0].uncertainty["passes"] == 12


def test_predictions_match_the_exported_model_of_the_same_fold(tiny_fold, tiny_onnx):
    # guards: a torch runtime that crops, orders channels, resizes or normalizes otherwise than
    # training and the ONNX runtime gives another P(pain) for the same face
    cohort = load_manifest(load_fold(tiny_fold).manifest)
    with RunPredictor(tiny_fold / "model.pt") as predictor, OnnxPredictor(tiny_onnx) as onnx:
        assert predictor.crop == onnx.crop
        crops = [crop for _, crop in manifest_crops(cohort, select_rows(cohort, limit=8),
                                                    crop=predictor.crop)]
        exported = [p.prob_pain if p.prob_raw is None else p.prob_raw
                    for p in onnx.predict_crops(crops)]  # the network's own P, calibrated or not
        np.testing.assert_allclose(probs(predictor.predict_crops(crops)), exported, atol=1e-4)


@pytest.mark.parametrize("make, says", [
    (lambda run: run / "nowhere" / "model.pt", "no such file or folder"),
    (lambda run: run / "fold_7", "holds no fold_K/model.pt"),
    (lambda run: run.parent, "holds no fold_K/model.pt"),
    (lambda run: fifo(run.parent / "model.pt"), "neither a regular file nor a folder"),
])
def test_specs_that_name_no_model_are_named(run3, make, says):
    spec = make(run3)
    with pytest.raises(NeopainError, match=says) as error:
        RunPredictor(spec)
    assert str(spec) in str(error.value)


def test_files_that_are_not_a_neopain_model_pt_are_named(tmp_path):
    other = tmp_path / "weights.pt"
    other.write_bytes(b"not torch")
    with pytest.raises(NeopainError, match="not a model.pt written by neopain train"):
        load_predictor(other)
    garbage = tmp_path / "fold_0" / "model.pt"
    garbage.parent.mkdir()
    garbage.write_bytes(b"not torch either")
    with pytest.raises(NeopainError, match="not a neopain model.pt") as error:
        load_predictor(garbage)
    assert str(garbage) in str(error.value)


@pytest.mark.parametrize("options, says", [
    ({"mc_passes": -1}, "mc_passes=-1"), ({"mc_passes": 1.5}, "mc_passes=1.5"),
    ({"batch_size": 0}, "batch_size=0"),
])
def test_bad_options_are_named(run3, options, says):
    with pytest.raises(NeopainError, match=says):
        RunPredictor(run3, **options)


def test_closing_drops_the_networks_in_a_loop(run3, crops):
    # a bedside reloads models for hours: a closed predictor that a log or cache still holds
    # must not keep its networks alive
    kept, networks = [], []
    for _ in range(10):
        with RunPredictor(run3, mc_passes=2) as predictor:
            predictor.predict_crops(crops[:2])
            networks += [weakref.ref(fold.model) for fold in predictor.folds_]
        kept.append(predictor)
    gc.collect()
    assert len(networks) == 30 and all(ref() is None for ref in networks)
    predictor.close()  # twice is safe
    with pytest.raises(NeopainError, match="the predictor is closed"):
        predictor.predict_crops(crops[:1])


def test_a_run_folder_given_as_the_model_loads_as_one_ensemble(run3):
    # guards: `neopain assess --model runs/NAME` was refused as "not a model neopain can run"
    # though the run kind loads a run folder
    with load_predictor(run3, mc_passes=2) as predictor:
        assert isinstance(predictor, RunPredictor)
        assert [fold.fold for fold in predictor.folds_] == [0, 1, 2]
    assert "a run folder" in model_choices()


def test_assess_tables_carry_each_predictions_uncertainty(run3, crops):
    from neopain.monitor.images import ImageAssessment, results_table

    with RunPredictor(run3) as ensemble:
        predictions = ensemble.predict_crops(crops[:2])
    table = results_table([ImageAssessment(image=f"{i}.png", row=i, face=None,
                                           prediction=p, problem="")
                           for i, p in enumerate(predictions)])
    for cells, prediction in zip(table.to_dict("records"), predictions):
        assert cells["entropy"] == prediction.uncertainty["entropy"]
        assert cells["mutual_information"] == prediction.uncertainty["mutual_information"]
        assert cells["prob_kind"] == "uncalibrated"


def test_each_batch_draws_its_own_dropout_masks(run3, crops):
    """Guards (review of issue 20): every batch reset the same seed, so the faces at one place
    in their batches shared their dropout masks; the same face in two batches got the same."""
    same = [crops[0], crops[0]]
    with RunPredictor(run3 / "fold_0" / "model.pt", mc_passes=5, batch_size=1) as predictor:
        first, second = (p.uncertainty["entropy"] for p in predictor.predict_crops(same))
    assert first != second
