"""Trainer, callbacks, losses and the embedding cache on a tiny model and a tiny image set.

Guards: same seed → same weights; a resumed run equals an uninterrupted one, with the seed's
RMSprop + CosineAnnealingLR + label smoothing recipe too (its rates on torch's cosine); balanced
class weights, soft labels and label smoothing change the loss as documented; Unfreeze
unfreezes at the right epoch and restarts a per-epoch scheduler; ReduceLROnPlateau steps on the
monitored value; early stopping stops; cached embeddings give the forward pass's predictions
and are invalidated when preprocessing changes.
"""

from __future__ import annotations

import math
import re
from collections import OrderedDict
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from neopain.training.dataset import FaceDataset
from neopain.data.manifest import Manifest
from neopain.errors import NeopainError
from neopain.models import ModelCfg, PainModel
from neopain.training import (
    Callback,
    Checkpoint,
    ConfigError,
    EarlyStopping,
    EmbeddingCache,
    History,
    TrainConfig,
    Trainer,
    Unfreeze,
    cache_key,
)
from neopain.training.losses import balanced_class_weights, pain_loss, soft_targets
from neopain.training.batches import flipped
from neopain.training.precision import bf16_supported
from neopain.training.optimizers import SchedulerSpec
from neopain.training.state import TrainState

SIZE = (16, 16)


class TinyModel(PainModel):
    """Two conv blocks and a linear head: fast, with dropout to exercise the RNG."""

    def __init__(self) -> None:
        super().__init__()
        self.block1 = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
        self.block2 = nn.Sequential(nn.Conv2d(4, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                                    nn.Flatten())
        self.head = nn.Sequential(OrderedDict(drop=nn.Dropout(0.3), fc=nn.Linear(64, 2)))
        self.cfg = ModelCfg(name="tiny", input_size=SIZE, mean=(0.5,) * 3, std=(0.5,) * 3)

    def forward_features(self, x):
        return self.block2(self.block1(x))

    def forward_head(self, features):
        return self.head(features)

    def block_modules(self):
        return {"block1": [self.block1], "block2": [self.block2]}


def tiny_model(seed: int = 0) -> TinyModel:
    torch.manual_seed(seed)
    return TinyModel()


@pytest.fixture(scope="module")
def manifest(tmp_path_factory) -> Manifest:
    """32 images of 8 subjects: pain images are bright with a bar, nopain ones dark."""
    root = tmp_path_factory.mktemp("tiny")
    rng = np.random.default_rng(0)
    rows = []
    for i in range(32):
        pain = i % 4 != 0  # 24 pain, 8 nopain: unbalanced on purpose
        image = rng.integers(0, 60, (24, 24, 3), dtype=np.uint8)
        if pain:
            image[8:16, :, :] = 200
        cv2.imwrite(str(root / f"{i}.png"), image)
        rows.append({"image": f"{i}.png", "subject": f"s{i % 8}",
                     "label": "pain" if pain else "nopain", "score": str(5 if pain else 1),
                     "face_box": "[2, 2, 22, 22]"})
    return Manifest(pd.DataFrame(rows), root)


def data(manifest, **kwargs) -> FaceDataset:
    return FaceDataset(manifest, size=SIZE, mean=(0.5,) * 3, std=(0.5,) * 3, **kwargs)


def weights_of(model) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in model.state_dict().values()])


def fit(manifest, *, seed=0, callbacks=(), resume_from=None, **kwargs):
    model = tiny_model()
    options = {"epochs": 4, "batch_size": 8, "lr": 0.01, "seed": seed, "device": "cpu"}
    trainer = Trainer(model, callbacks=callbacks, **{**options, **kwargs})
    train = data(manifest, subjects=[f"s{i}" for i in range(6)])
    val = data(manifest, subjects=["s6", "s7"])
    result = trainer.fit(train, val, resume_from=resume_from)
    return model, trainer, result


def test_same_seed_gives_same_weights_and_another_seed_does_not(manifest):
    a, trainer_a, _ = fit(manifest, seed=3)
    b, trainer_b, _ = fit(manifest, seed=3)
    c, _, _ = fit(manifest, seed=4)
    assert torch.equal(weights_of(a), weights_of(b))
    test = data(manifest, subjects=["s6", "s7"])
    np.testing.assert_array_equal(trainer_a.predict(test), trainer_b.predict(test))
    assert not torch.equal(weights_of(a), weights_of(c))


class Interrupt(Callback):
    """Stops fitting after ``epoch`` epochs, as a killed process would (after its checkpoint)."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_epoch_end(self, state, logs):
        if logs["epoch"] == self.epoch:
            state.stop_training = True


@pytest.mark.parametrize("options", [{}, {"scheduler": "OneCycleLR"}, {"flip": 0.5},
                                     {"scheduler": "OneCycleLR", "flip": 0.5}],
                         ids=["constant", "onecycle", "flip", "onecycle-flip"])
def test_resumed_run_equals_uninterrupted_run(manifest, tmp_path, options):
    whole, _, _ = fit(manifest, epochs=5, callbacks=[Checkpoint(tmp_path / "a.pt")], **options)
    fit(manifest, epochs=5, callbacks=[Interrupt(2), Checkpoint(tmp_path / "b.pt")], **options)
    saved = torch.load(tmp_path / "b.pt", weights_only=False)
    saved["stopped"] = False  # the interruption was not an early stop
    torch.save(saved, tmp_path / "b.pt")
    history = History()
    resumed, _, result = fit(manifest, epochs=5, callbacks=[history, Checkpoint(tmp_path / "b.pt")],
                             resume_from=tmp_path / "b.pt", **options)
    assert result.epochs == 5 and len(result.history) == 5
    assert torch.equal(weights_of(whole), weights_of(resumed))


SEED_RECIPE = {"optimizer": "RMSprop", "lr": 1e-3, "weight_decay": 1e-5,
               "scheduler": "CosineAnnealingLR", "scheduler_args": {"T_max": 5, "eta_min": 1e-6},
               "label_smoothing": 0.3, "class_weights": None}
"""configs/ncnn_tuned.yaml's optimizer, schedule, smoothing and plain cross-entropy (the seed's
NCNN-Tuned); without the smoothing its training loss falls below 0.42 by epoch 4."""
SMOOTHED_ENTROPY = -(0.85 * math.log(0.85) + 0.15 * math.log(0.15))
"""The least cross-entropy against targets smoothed by 0.3 (0.85, 0.15): 0.4227."""


def interrupted_and_resumed(manifest, tmp_path, *, stop: int, epochs: int, callbacks=(),
                            **options):
    """A fit stopped after ``stop`` epochs (as a killed process) and resumed to ``epochs``
    (both with ``Checkpoint``, which restores the best epoch's weights at the end)."""
    fit(manifest, epochs=epochs, callbacks=[*callbacks(), Interrupt(stop),
                                            Checkpoint(tmp_path / "b.pt")], **options)
    saved = torch.load(tmp_path / "b.pt", weights_only=True)
    saved["stopped"] = False  # the interruption was not an early stop
    torch.save(saved, tmp_path / "b.pt")
    return saved, fit(manifest, epochs=epochs, resume_from=tmp_path / "b.pt",
                      callbacks=[*callbacks(), Checkpoint(tmp_path / "b.pt")], **options)


def test_seed_recipe_resumes_exactly_and_its_rates_follow_the_cosine(manifest, tmp_path):
    """RMSprop with CosineAnnealingLR, stepped per epoch: the checkpoint holds the scheduler,
    so a resumed fit gives the uninterrupted one's weights and history to the last bit."""
    whole, _, straight = fit(manifest, epochs=7, callbacks=[Checkpoint(tmp_path / "a.pt")],
                             **SEED_RECIPE)
    saved, (resumed, _, result) = interrupted_and_resumed(manifest, tmp_path, stop=3, epochs=7,
                                                          callbacks=tuple, **SEED_RECIPE)
    assert saved["scheduler"]["last_epoch"] == 3
    assert saved["recipe"] == {"optimizer": "RMSprop", "optimizer_args": {}, "lr": 1e-3,
                               "weight_decay": 1e-5, "scheduler": "CosineAnnealingLR",
                               "scheduler_args": {"T_max": 5, "eta_min": 1e-6}, "model_args": {}}
    assert torch.equal(weights_of(whole), weights_of(resumed))
    assert result.history == straight.history and len(straight.history) == 7
    # epoch e trains at eta_min + (lr - eta_min)(1 + cos(pi (e-1) / T_max)) / 2, rising again
    # after T_max as torch's cosine does (the seed's 120 epochs swing 12 times)
    expected = [1e-6 + (1e-3 - 1e-6) * (1 + math.cos(math.pi * t / 5)) / 2 for t in range(7)]
    assert [row["lr"] for row in straight.history] == pytest.approx(expected, rel=1e-9)
    # label smoothing 0.3 reaches the loss: no epoch goes below its targets' entropy
    assert min(row["train_loss"] for row in straight.history) >= SMOOTHED_ENTROPY - 1e-6


def test_label_smoothing_is_the_seeds_smoothed_binary_cross_entropy():
    """Two-class cross-entropy smoothed by s has targets 1 - s/2 and s/2: the seed's
    BCEWithLogits on the logit difference with labels (1 - s) y + s / 2."""
    logits = torch.tensor([[0.3, 2.0], [1.5, -1.0], [0.0, 0.0], [4.0, -4.0]])
    labels = torch.tensor([1, 0, 1, 1])
    smoothed = pain_loss(logits, labels, label_smoothing=0.3)
    seed = torch.nn.functional.binary_cross_entropy_with_logits(
        logits[:, 1] - logits[:, 0], (1 - 0.3) * labels.float() + 0.3 / 2)
    assert torch.isclose(smoothed, seed, atol=1e-6)
    log_p = torch.log_softmax(logits, dim=1)
    by_hand = -(0.85 * log_p[torch.arange(4), labels] + 0.15 * log_p[torch.arange(4), 1 - labels])
    assert torch.isclose(smoothed, by_hand.mean(), atol=1e-6)
    assert not torch.isclose(smoothed, pain_loss(logits, labels), atol=1e-3)
    with pytest.raises(NeopainError, match="label_smoothing=0.3 cannot be combined with "
                                           "soft_labels='sigmoid'"):
        Trainer(tiny_model(), label_smoothing=0.3, soft_labels="sigmoid")


class Stall(Callback):
    """Reports no validation improvement, so Unfreeze fires after its patience."""

    def on_epoch_end(self, state, logs):
        logs["val_loss"] = 1.0


def test_unfreezing_restarts_a_per_epoch_scheduler_at_the_fine_tune_rate(manifest, tmp_path):
    """The fine-tune phase gets a fresh optimizer and a fresh scheduler from lr × lr_factor
    (not from the annealed rate), and resuming across the unfreezing stays exact."""
    options = {"epochs": 6, "lr": 0.01, "scheduler": "CosineAnnealingLR",
               "scheduler_args": {"T_max": 2}}

    def callbacks():
        return Stall(), Unfreeze(2, blocks=1, lr_factor=0.1)

    whole, _, straight = fit(manifest, callbacks=[*callbacks(), Checkpoint(tmp_path / "a.pt")],
                             **options)
    cosine = [(1 + math.cos(math.pi * t / 2)) / 2 for t in range(3)]
    assert [row["phase"] for row in straight.history] == ["head"] * 3 + ["fine-tune"] * 3
    assert [row["lr"] for row in straight.history] == pytest.approx(
        [0.01 * c for c in cosine] + [0.001 * c for c in cosine], abs=1e-12)
    _, (resumed, _, result) = interrupted_and_resumed(manifest, tmp_path, stop=4,
                                                      callbacks=callbacks, **options)
    assert torch.equal(weights_of(whole), weights_of(resumed))
    assert result.history == straight.history
    with pytest.raises(NeopainError, match="OneCycleLR.*cannot be combined with unfreezing"):
        fit(manifest, epochs=3, scheduler="OneCycleLR", callbacks=[Stall(), Unfreeze(1)])


def test_reduce_on_plateau_steps_on_the_monitored_value(manifest):
    """Halved after each epoch whose val_loss was not below half the best (mode min, from
    monitor; relative threshold 0.5), as torch's rule says; mode max for val_accuracy;
    refused without validation data."""
    _, _, result = fit(manifest, epochs=6, lr=0.01, scheduler="ReduceLROnPlateau",
                       scheduler_args={"factor": 0.5, "patience": 0, "threshold": 0.5})
    rate, best, expected = 0.01, math.inf, []
    for row in result.history:
        expected.append(rate)
        if row["val_loss"] < best * (1 - 0.5):
            best = row["val_loss"]
        else:
            rate *= 0.5
    assert [row["lr"] for row in result.history] == pytest.approx(expected, rel=1e-12)
    assert 1 < len(set(expected)) < 6  # it reduced after some epochs, not after all
    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.1)
    assert SchedulerSpec("ReduceLROnPlateau", monitor="val_accuracy").build(
        optimizer, lr=0.1, total_steps=1).mode == "max"
    trainer = Trainer(tiny_model(), scheduler="ReduceLROnPlateau", device="cpu")
    with pytest.raises(NeopainError, match="ReduceLROnPlateau.*no validation data"):
        trainer.fit(data(manifest, subjects=["s0", "s1"]))


def test_a_checkpoint_of_another_optimizer_or_scheduler_is_refused(manifest, tmp_path):
    fit(manifest, epochs=1, callbacks=[Checkpoint(tmp_path / "a.pt")])
    with pytest.raises(NeopainError, match="another recipe: optimizer: 'Adam' in the checkpoint, "
                                           "'RMSprop' in this fit; .*scheduler: None in the "
                                           "checkpoint, 'CosineAnnealingLR' in this fit"):
        fit(manifest, epochs=2, resume_from=tmp_path / "a.pt", **SEED_RECIPE)


def test_a_checkpoint_of_another_recipe_is_refused_naming_each_change(manifest, tmp_path):
    """The checkpoint recorded only the class names: a resume with T_max 7, another lr or
    weight_decay went on with the checkpoint's (torch restores them) while config.yaml said
    the new ones; OneCycleLR's total_steps follow epochs. Older checkpoints still resume."""
    cosine = {"scheduler": "CosineAnnealingLR", "scheduler_args": {"T_max": 5}}
    fit(manifest, epochs=1, callbacks=[Checkpoint(tmp_path / "a.pt")], **cosine)
    with pytest.raises(NeopainError, match=(
            rf"^{re.escape(str(tmp_path / 'a.pt'))}: the checkpoint was trained with another "
            r"recipe: scheduler_args\.T_max: 5 in the "
            r"checkpoint, 7 in this fit\. To resume it, give the checkpoint's values again; to "
            r"train with the new ones, start a new run folder \(another --out\) or set resume: "
            r"false$")):
        fit(manifest, epochs=2, resume_from=tmp_path / "a.pt", **{
            **cosine, "scheduler_args": {"T_max": 7}})
    with pytest.raises(NeopainError, match=(
            r"recipe: optimizer_args\.amsgrad: not given in the checkpoint, True in this fit; "
            r"lr: 0\.01 in the checkpoint, 0\.02 in this fit; weight_decay: 0\.0 in the "
            r"checkpoint, 0\.1 in this fit\. ")):
        fit(manifest, epochs=2, resume_from=tmp_path / "a.pt", optimizer_args={"amsgrad": True},
            lr=0.02, weight_decay=0.1, **cosine)
    saved = torch.load(tmp_path / "a.pt", weights_only=True)
    saved["recipe"] = {"optimizer": "Adam", "scheduler": "CosineAnnealingLR"}  # 6fbb9b7's
    torch.save(saved, tmp_path / "names.pt")
    del saved["recipe"]  # before it
    torch.save(saved, tmp_path / "none.pt")
    for old in ("names.pt", "none.pt"):
        _, _, result = fit(manifest, epochs=2, resume_from=tmp_path / old, **{
            **cosine, "scheduler_args": {"T_max": 7}})
        assert [row["epoch"] for row in result.history] == [1, 2]
    with pytest.raises(NeopainError, match="recipe: scheduler: a scheduler's state in the "
                                           "checkpoint, None in this fit"):
        fit(manifest, epochs=2, resume_from=tmp_path / "none.pt")
    # 24 training images in batches of 8: 3 steps an epoch
    fit(manifest, epochs=2, scheduler="OneCycleLR", callbacks=[Checkpoint(tmp_path / "c.pt")])
    with pytest.raises(NeopainError, match="recipe: total_steps: 6 in the checkpoint, 9 in "
                                           "this fit"):
        fit(manifest, epochs=3, scheduler="OneCycleLR", resume_from=tmp_path / "c.pt")


def test_the_config_and_the_trainer_refuse_by_one_rule(manifest, tmp_path):
    """Soft labels with label smoothing, a per-batch scheduler with unfreezing and the monitor
    were each written twice (config.py, and trainer.py or state.py) and told differently."""
    cases = [
        ({"soft_labels": "sigmoid", "label_smoothing": 0.3},
         lambda: Trainer(tiny_model(), soft_labels="sigmoid", label_smoothing=0.3)),
        ({"scheduler": "OneCycleLR", "unfreeze_patience": 1},
         lambda: fit(manifest, epochs=2, scheduler="OneCycleLR", callbacks=[Stall(), Unfreeze(1)])),
        ({"monitor": "auc"}, lambda: Trainer(tiny_model(), monitor="auc")),
    ]
    for keys, trainer in cases:
        with pytest.raises(ConfigError) as config_error:
            TrainConfig(model="ncnn", manifest=tmp_path / "m.csv", folds=tmp_path / "f.json",
                        out=tmp_path / "run", **keys)
        with pytest.raises(NeopainError) as trainer_error:
            trainer()
        assert str(config_error.value).splitlines()[1:] == [f"  {trainer_error.value}"]


def test_onecycle_warms_up_then_anneals_over_all_batches(manifest):
    _, _, result = fit(manifest, epochs=6, lr=0.01, scheduler="OneCycleLR")
    rates = [logs["lr"] for logs in result.history]
    peak = int(np.argmax(rates))
    assert 0 < peak < 5 and max(rates) <= 0.01 + 1e-12
    assert rates[-1] < 0.01 / 50  # annealed below the warm-up start (lr / 25)
    assert all(a <= b for a, b in zip(rates[:peak], rates[1:peak + 1]))
    assert all(a >= b for a, b in zip(rates[peak:], rates[peak + 1:]))


class DtypeSpy(Callback):
    """Records the dtype the model's first convolution computes in during training batches."""

    def __init__(self) -> None:
        self.dtypes: set[torch.dtype] = set()

    def on_fit_start(self, state):
        state.model.block1[0].register_forward_hook(
            lambda module, args, out: self.dtypes.add(out.dtype) if module.training else None)


@pytest.mark.skipif(not bf16_supported(torch.device("cpu")), reason="this CPU has no native bf16")
def test_bf16_trains_in_bfloat16_and_learns_while_weights_and_predictions_stay_float32(manifest):
    spy = DtypeSpy()
    model, trainer, result = fit(manifest, epochs=8, precision="bf16", callbacks=[spy])
    assert spy.dtypes == {torch.bfloat16}
    assert all(p.dtype == torch.float32 for p in model.parameters())
    prob = trainer.predict(data(manifest, subjects=["s6", "s7"]))
    truth = data(manifest, subjects=["s6", "s7"]).labels_
    assert ((prob >= 0.5) == truth).mean() == 1.0  # bright bar = pain, learned in bf16
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]
    fp32 = DtypeSpy()
    fit(manifest, epochs=8, callbacks=[fp32])
    assert fp32.dtypes == {torch.float32}


def test_precision_is_checked_and_auto_follows_the_hardware(manifest):
    with pytest.raises(NeopainError, match="precision='fp16' is not valid; valid: fp32, bf16, "
                                           "auto"):
        Trainer(tiny_model(), precision="fp16", device="cpu")
    native = bf16_supported(torch.device("cpu"))
    _, auto, _ = fit(manifest, epochs=1, precision="auto")
    assert auto.autocast_ == (torch.bfloat16 if native else None)
    _, fp32, _ = fit(manifest, epochs=1, precision="fp32")
    assert fp32.autocast_ is None


def test_flip_mirrors_about_that_share_of_images_and_only_left_right():
    images = torch.arange(2000 * 2 * 3, dtype=torch.float32).reshape(2000, 1, 2, 3)
    out = flipped(images, probability=0.3, seed=4, epoch=1, batch=1)
    mirrored = (out != images).flatten(1).any(1)
    assert 0.25 < mirrored.float().mean() < 0.35
    assert torch.equal(out[mirrored], images[mirrored].flip(-1))  # columns reversed, rows kept
    assert torch.equal(out, flipped(images, probability=0.3, seed=4, epoch=1, batch=1))  # seeded
    assert not torch.equal(out, flipped(images, probability=0.3, seed=4, epoch=2, batch=1))


def test_onecycle_with_unfreezing_is_refused_by_the_config(tmp_path):
    # the old key, read as scheduler: OneCycleLR
    with pytest.raises(ConfigError, match="scheduler='OneCycleLR'.*unfreeze_patience"):
        TrainConfig(model="ncnn", manifest=tmp_path / "m.csv", folds=tmp_path / "f.json",
                    out=tmp_path / "run", lr_schedule="onecycle", unfreeze_patience=3)


def test_balanced_class_weights_are_inverse_frequencies_and_weight_the_loss():
    weights = balanced_class_weights(np.array([0, 1, 1, 1]))
    np.testing.assert_allclose(weights, [2.0, 2 / 3])
    logits = torch.tensor([[2.0, 0.0], [0.0, 2.0], [0.0, 2.0], [0.0, 2.0]])
    labels = torch.tensor([1, 1, 1, 0])  # the nopain example is the badly predicted one
    plain = pain_loss(logits, labels)
    weighted = pain_loss(logits, labels, class_weights=torch.tensor(weights))
    assert weighted > plain  # the rare class's error counts more
    with pytest.raises(NeopainError, match="class 0 has no image"):
        balanced_class_weights(np.array([1, 1]))


def test_soft_labels_follow_the_nfcs_score():
    scores = np.array([0.0, 2.5, 3.0, 7.0, np.nan])
    labels = np.array([0, 0, 1, 1, 1])
    np.testing.assert_allclose(soft_targets(scores, labels, kind="sigmoid")[:4],
                               1 / (1 + np.exp(-(scores[:4] - 2.5))))
    np.testing.assert_allclose(soft_targets(scores, labels, kind="linear"),
                               [0, 2.5 / 7, 3 / 7, 1, 1])
    np.testing.assert_array_equal(soft_targets(scores, labels, kind="step"), [0, 0, 1, 1, 1])
    logits = torch.tensor([[0.0, 3.0]])
    hard = pain_loss(logits, torch.tensor([1]), targets=torch.tensor([1.0]))
    soft = pain_loss(logits, torch.tensor([1]), targets=torch.tensor([0.6]))
    assert torch.isclose(hard, pain_loss(logits, torch.tensor([1])))
    assert soft > hard


def test_unfreeze_opens_the_last_block_after_patience_epochs(manifest):
    class Spy(Callback):
        order = 50

        def __init__(self):
            self.trainable = {}

        def on_epoch_start(self, state, epoch):
            self.trainable[epoch] = {name for name, p in state.model.named_parameters()
                                     if p.requires_grad}

    spy = Spy()
    unfreeze = Unfreeze(2, blocks=1, lr_factor=0.1)
    model, trainer, result = fit(manifest, epochs=5, callbacks=[Stall(), unfreeze, spy])
    head = {"head.fc.weight", "head.fc.bias"}
    assert spy.trainable[1] == spy.trainable[3] == head  # epochs 1-3: head only
    assert spy.trainable[4] == spy.trainable[5] == head | {"block2.0.weight", "block2.0.bias"}
    assert unfreeze.unfrozen_epoch_ == 3
    assert [row["lr"] for row in result.history] == pytest.approx([0.01] * 3 + [0.001] * 2)
    assert [row["phase"] for row in result.history] == ["head"] * 3 + ["fine-tune"] * 2


def test_early_stopping_stops_after_patience_epochs_without_improvement(manifest):
    class Worse(Callback):
        def on_epoch_end(self, state, logs):
            logs["val_loss"] = float(logs["epoch"])  # gets worse every epoch

    stopper = EarlyStopping(2)
    _, _, result = fit(manifest, epochs=10, callbacks=[Worse(), stopper])
    assert result.epochs == 3 and result.stopped_early
    assert stopper.stopped_epoch_ == 3


def test_checkpoint_restores_the_best_epochs_weights(manifest, tmp_path):
    class Snapshot(Callback):
        def __init__(self):
            self.weights = {}

        def on_epoch_end(self, state, logs):
            logs["val_loss"] = abs(logs["epoch"] - 2)  # epoch 2 is best
            self.weights[logs["epoch"]] = weights_of(state.model).clone()

    snapshot = Snapshot()
    model, _, _ = fit(manifest, epochs=4, callbacks=[snapshot, Checkpoint(tmp_path / "c.pt")])
    assert torch.equal(weights_of(model), snapshot.weights[2])
    assert not torch.equal(weights_of(model), snapshot.weights[4])


def test_cached_head_training_gives_the_forward_pass_predictions(manifest):
    test = data(manifest, subjects=["s6", "s7"])
    probs = {}
    for cache in (True, False):
        model = tiny_model()
        model.freeze()
        trainer = Trainer(model, epochs=3, batch_size=8, lr=0.05, cache=cache, device="cpu")
        trainer.fit(data(manifest, subjects=[f"s{i}" for i in range(6)]), None)
        probs[cache] = trainer.predict(test)
        assert trainer.embeddings_._memory if cache else not trainer.embeddings_._memory
    assert np.abs(probs[True] - probs[False]).max() <= 1e-4
    assert np.abs(probs[True] - 0.5).max() > 1e-3  # the head did learn something


def test_cache_key_changes_with_preprocessing_weights_and_image_files(manifest, tmp_path):
    model = tiny_model()
    base = cache_key(model, data(manifest))
    assert cache_key(model, data(manifest)) == base
    assert cache_key(model, data(manifest, crop_to_face=True)) != base
    assert cache_key(model, FaceDataset(manifest, size=SIZE, mean=(0.4,) * 3,
                                        std=(0.5,) * 3)) != base
    assert cache_key(tiny_model(seed=1), data(manifest)) != base
    model.head.fc.weight.data += 1  # the head is not part of the key: it trains on the cache
    assert cache_key(model, data(manifest)) == base
    with pytest.raises(NeopainError, match="without online augmentation"):
        cache_key(model, data(manifest, transform=lambda *a, **k: None))


def test_disk_cache_is_reused_and_preprocessing_change_recomputes(manifest, tmp_path):
    model = tiny_model()
    first = EmbeddingCache(tmp_path).features(model, data(manifest))
    assert len(list(Path(tmp_path).glob("*.pt"))) == 1
    again = EmbeddingCache(tmp_path).features(model, data(manifest))  # from disk
    assert torch.equal(first, again)
    cropped = EmbeddingCache(tmp_path).features(model, data(manifest, crop_to_face=True))
    assert len(list(Path(tmp_path).glob("*.pt"))) == 2
    assert not torch.equal(first, cropped)


@pytest.mark.parametrize("content", [b"", b"not torch\n", b"\x80\x04garbage"])
def test_a_damaged_disk_cache_file_is_computed_again_and_replaced(manifest, tmp_path, content):
    """A truncated or foreign cache file raised from torch.load and stopped training."""
    model = tiny_model()
    path = tmp_path / f"{cache_key(model, data(manifest))}.pt"
    path.write_bytes(content)
    features = EmbeddingCache(tmp_path).features(model, data(manifest))
    assert torch.equal(EmbeddingCache(tmp_path).features(model, data(manifest)), features)
    assert path.stat().st_size > len(content)


def test_weights_hash_covers_batch_norm_buffers_including_0d_ones():
    """Networks with BatchNorm (resnet50_nb, senet50_nb, mobilenet_nb) carry a 0-d
    ``num_batches_tracked``; hashing it crashed, so their embedding cache could not be used."""
    from neopain.models import create_model
    from neopain.training.embeddings import weights_hash

    torch.manual_seed(0)
    model = create_model("mobilenet_nb")
    before = weights_hash(model)
    bn = next(m for m in model.modules() if isinstance(m, nn.BatchNorm2d))
    bn.running_mean += 1.0  # a backbone statistic changes: the cached features are stale
    assert weights_hash(model) != before


def test_bad_trainer_arguments_name_the_valid_values():
    with pytest.raises(NeopainError, match="optimizer='adamw' is not valid; valid: adam"):
        Trainer(tiny_model(), optimizer="adamw")
    with pytest.raises(NeopainError, match="class_weights='auto'"):
        Trainer(tiny_model(), class_weights="auto")


def test_building_a_trainer_stores_its_arguments_and_does_no_work(manifest):
    """The constructor probed CUDA and bf16 and made the embedding cache: a trainer for a GPU
    could not even be built (to clone or log it) on a machine without one."""
    model, callbacks = tiny_model(), [History()]
    arguments = {"optimizer": "sgd", "optimizer_args": {"nesterov": True}, "lr": 0.02,
                 "weight_decay": 0.1, "scheduler": "OneCycleLR",
                 "scheduler_args": {"pct_start": 0.2}, "monitor": "val_accuracy", "epochs": 2,
                 "batch_size": 4, "class_weights": None, "l1_head": 0.5,
                 "label_smoothing": 0.0, "soft_labels": "linear", "flip": 0.2,
                 "callbacks": callbacks, "cache": False, "cache_dir": "cache", "workers": 0,
                 "seed": 7, "device": "cuda", "precision": "bf16"}
    trainer = Trainer(model, **arguments)
    assert vars(trainer) == {"model": model, **arguments}
    assert trainer.device_ is None and trainer.embeddings_ is None and trainer.state_ is None
    if not torch.cuda.is_available():
        with pytest.raises(NeopainError, match="device='cuda' but torch sees no CUDA GPU"):
            trainer.fit(data(manifest, subjects=["s0", "s1"]))
    with pytest.raises(NeopainError, match="device='gpu' is not valid; valid: auto, cpu, cuda"):
        Trainer(model, device="gpu")


def test_callbacks_get_the_fits_typed_state_not_the_trainer(manifest):
    class Record(Callback):
        def __init__(self):
            self.seen = []

        def on_fit_start(self, state):
            self.seen.append(("start", type(state), state.epoch, state.epochs, state.phase))

        def on_epoch_end(self, state, logs):
            self.seen.append(("end", state.epoch, len(state.history), state.lr, state.phase))
            state.stop_training = state.epoch == 2

    record = Record()
    model, trainer, result = fit(manifest, epochs=5, lr=0.01, callbacks=[record])
    assert record.seen == [("start", TrainState, 0, 5, "train"),
                           ("end", 1, 1, 0.01, "train"), ("end", 2, 2, 0.01, "train")]
    assert result.epochs == 2 and result.stopped_early
    assert trainer.state_.model is model and trainer.state_.history == result.history


def test_predict_before_fit_resolves_the_device_itself(manifest):
    model = tiny_model()
    test = data(manifest, subjects=["s6", "s7"])
    prob = Trainer(model, device="cpu").predict(test)
    images = torch.stack([test[i]["image"] for i in range(len(test))])
    with torch.no_grad():
        expected = torch.softmax(model.eval()(images), dim=1)[:, 1].double().numpy()
    np.testing.assert_allclose(prob, expected, atol=1e-6)


def test_soft_label_scores_come_from_the_dataset_with_empty_ones_nan(manifest):
    table = manifest.table.copy()
    table.loc[1, "score"] = " "
    table.loc[2, "score"] = "2.5"
    scores = FaceDataset(Manifest(table, manifest.root), rows=[0, 1, 2], size=SIZE).scores()
    np.testing.assert_array_equal(scores, [1.0, np.nan, 2.5])
    table.loc[2, "score"] = "high"
    with pytest.raises(NeopainError, match="manifest line 4, column 'score': 'high' is not a "
                                           "number"):
        FaceDataset(Manifest(table, manifest.root), rows=[2], size=SIZE).scores()


def _neopain_callbacks(cls: type = Callback) -> set[type]:
    found = set()
    for sub in cls.__subclasses__():
        if sub.__module__.startswith("neopain.") and not sub.__name__.startswith("_"):
            found.add(sub)
        found |= _neopain_callbacks(sub)
    return found


def test_callbacks_change_only_their_attributes_ending_in_underscore(manifest, tmp_path):
    """STYLE rule 2: StepReport kept the fit's epoch count and the epoch under way in
    ``epochs`` and ``stage``, names that read as its settings. Every callback of the package
    is checked."""
    from neopain.runs import FoldContext, FoldFolder
    from neopain.training.networks import StepReport

    none = np.arange(0)
    fold = FoldContext(index=0, manifest=manifest, train=none, val=none, test=none,
                       folder=FoldFolder(tmp_path))
    callbacks = [History(tmp_path / "history.csv"), Unfreeze(1), EarlyStopping(2),
                 Checkpoint(tmp_path / "checkpoint.pt"), StepReport(fold)]
    assert _neopain_callbacks() <= {type(callback) for callback in callbacks}
    stored = [dict(vars(callback)) for callback in callbacks]
    fit(manifest, epochs=3, callbacks=callbacks)
    for callback, before in zip(callbacks, stored):
        changed = sorted(name for name, value in vars(callback).items()
                         if name not in before or value is not before[name])
        assert all(name.endswith("_") for name in changed), (type(callback).__name__, changed)


def test_the_raw_logit_stays_finite_where_the_softmax_rounds_p_to_one(manifest):
    """An overconfident network's float32 softmax gives P = 1 for every image, whose logit
    is infinite: calibrators must be fitted on z_pain - z_nopain, taken before the softmax."""
    model = tiny_model()
    with torch.no_grad():
        model.head.fc.weight.zero_()
        model.head.fc.bias.copy_(torch.tensor([-30.0, 30.0]))
        model.head.fc.weight[1, :8] = 0.5  # varies a little from image to image
    test = data(manifest, subjects=["s6", "s7"])
    prob, logit = Trainer(model, device="cpu").predict_with_logit(test)
    images = torch.stack([test[i]["image"] for i in range(len(test))])
    with torch.no_grad():
        z = model.eval()(images).double()
    assert (prob == 1.0).all()  # what a logit taken from P would make infinite
    np.testing.assert_allclose(logit, (z[:, 1] - z[:, 0]).numpy(), rtol=1e-6)
    assert np.isfinite(logit).all() and (logit >= 60).all() and len(set(logit)) > 1
    np.testing.assert_array_equal(prob, Trainer(model, device="cpu").predict(test))
