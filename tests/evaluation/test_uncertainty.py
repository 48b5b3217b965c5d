"""Uncertainty from passes: the entropies have their textbook values, mutual information is
0 where the passes agree and log 2 where they split, and MC dropout samples dropout alone
(batch norm in eval mode, the caller's modes and random state untouched)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from torch import nn

from neopain.errors import NeopainError
from neopain.evaluation.uncertainty import (
    binary_entropy,
    dropout_sampling,
    mc_dropout_probs,
    summarize_passes,
)

LOG2 = math.log(2.0)


def h(p: float) -> float:
    return -(p * math.log(p) + (1 - p) * math.log(1 - p))


def test_entropies_and_mutual_information_have_their_known_values():
    summary = summarize_passes([[0.9, 0.2, 0.5], [0.1, 0.4, 0.5], [0.5, 0.3, 0.5]])
    assert summary.passes == 3
    np.testing.assert_allclose(summary.mean, [0.5, 0.3, 0.5])
    np.testing.assert_allclose(summary.spread, [np.sqrt(0.32 / 3), np.sqrt(0.02 / 3), 0.0])
    np.testing.assert_allclose(summary.entropy, [LOG2, h(0.3), LOG2])
    np.testing.assert_allclose(summary.expected_entropy,
                               [(2 * h(0.9) + LOG2) / 3, (h(0.2) + h(0.4) + h(0.3)) / 3, LOG2])
    np.testing.assert_allclose(summary.mutual_information,
                               summary.entropy - summary.expected_entropy, atol=1e-15)
    information = LOG2 - (2 * h(0.9) + LOG2) / 3
    assert summary.for_face(0) == {"entropy": pytest.approx(LOG2),
                                   "mutual_information": pytest.approx(information),
                                   "passes": 3.0}


@pytest.mark.parametrize("p", [0.0, 1e-9, 0.3, 0.5, 0.97, 1.0])
def test_mutual_information_is_zero_when_every_pass_agrees(p):
    # guards: H(p̄) − mean H(p_k) computed in another order (or with clipping at 0 and 1) left
    # ±1e-17 or a spurious positive MI for a confident, unanimous model
    summary = summarize_passes(np.full((20, 1), p))
    assert summary.mutual_information[0] == 0.0
    assert summary.entropy[0] == pytest.approx(0.0 if p in (0.0, 1.0) else h(p), abs=1e-12)


def test_mutual_information_is_log2_when_the_passes_split_between_0_and_1():
    split = summarize_passes([[0.0], [1.0], [0.0], [1.0]])
    assert split.mutual_information[0] == pytest.approx(LOG2)
    assert split.expected_entropy[0] == 0.0
    unsure = summarize_passes([[0.5], [0.5], [0.5], [0.5]])  # every pass unsure: aleatoric
    assert unsure.mutual_information[0] == 0.0 and unsure.entropy[0] == pytest.approx(LOG2)


@settings(max_examples=200, deadline=None)
@given(arrays(np.float64, st.tuples(st.integers(1, 8), st.integers(1, 5)),
              elements=st.floats(0.0, 1.0)))
def test_mutual_information_lies_between_0_and_the_predictive_entropy(probs):
    summary = summarize_passes(probs)
    assert np.all(summary.mutual_information >= 0.0)
    assert np.all(summary.mutual_information <= summary.entropy + 1e-12)
    assert np.all(summary.entropy <= LOG2 + 1e-12)


@pytest.mark.parametrize("bad", [[[1.2]], [[-0.1]], [[float("nan")]], [0.5, 0.5], [[[0.5]]],
                                 np.empty((0, 3))])
def test_bad_passes_are_refused_by_name(bad):
    with pytest.raises(NeopainError, match="probs"):
        summarize_passes(bad)


def test_binary_entropy_is_zero_at_certainty_and_log2_at_a_coin():
    np.testing.assert_allclose(binary_entropy([0.0, 0.5, 1.0]), [0.0, LOG2, 0.0])


class BatchNormDropout(nn.Module):
    """Batch norm whose running statistics are far from any batch's, then dropout (p=0: an
    identity even when sampling, so the passes must equal the eval-mode output exactly)."""

    def __init__(self, p: float = 0.0) -> None:
        super().__init__()
        self.norm = nn.BatchNorm1d(4)
        self.norm.running_mean.fill_(3.0)
        self.norm.running_var.fill_(0.25)
        self.drop = nn.Dropout(p)
        self.out = nn.Linear(4, 2)

    def forward(self, x):
        return self.out(self.drop(self.norm(x)))


def test_mc_dropout_keeps_batch_norm_in_eval_mode():
    # guards: model.train() to switch dropout on also switches batch norm to the test batch's
    # statistics (and updates its running ones): the answer then depends on the other faces
    # in the batch, not on the model's doubt
    torch.manual_seed(0)
    model = BatchNormDropout()
    x = torch.randn(6, 4)
    running = model.norm.running_mean.clone()
    with torch.no_grad():
        expected = model.eval()(x).softmax(1)[:, 1].numpy()
    probs = mc_dropout_probs(model, x, passes=3)
    np.testing.assert_allclose(probs, np.tile(expected, (3, 1)), rtol=1e-6)
    assert torch.equal(model.norm.running_mean, running)
    with torch.no_grad():
        whole_train = model.train()(x).softmax(1)[:, 1].numpy()
    assert not np.allclose(whole_train, expected, atol=1e-3)  # the test can see the bug


def test_mc_dropout_passes_differ_are_seeded_and_leave_modes_and_random_state_alone():
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Dropout(0.5), nn.Linear(16, 2))
    model.train()
    x = torch.randn(5, 8)
    state = torch.get_rng_state()
    probs = mc_dropout_probs(model, x, passes=10, seed=7)
    assert probs.shape == (10, 5)
    assert len({row.tobytes() for row in probs}) == 10  # every pass drew its own masks
    np.testing.assert_array_equal(probs, mc_dropout_probs(model, x, passes=10, seed=7))
    assert not np.array_equal(probs, mc_dropout_probs(model, x, passes=10, seed=8))
    assert torch.equal(torch.get_rng_state(), state)
    assert all(module.training for module in model.modules())  # as the caller left it
    assert summarize_passes(probs).mutual_information.min() > 0.0


def test_a_network_without_dropout_cannot_sample_and_passes_must_be_positive():
    with pytest.raises(NeopainError, match="no dropout layer"):
        with dropout_sampling(nn.Linear(3, 2)):
            pass
    model = nn.Sequential(nn.Linear(3, 2), nn.Dropout(0.2))
    for passes in (0, -1, 2.5, True):
        with pytest.raises(NeopainError, match="passes="):
            mc_dropout_probs(model, torch.zeros(1, 3), passes=passes)
