"""Targets: every method explains the class it is asked for, for a 2-class softmax model and
for a single sigmoid logit (pain = the logit, no pain = its negation).

The toy model's evidence is known (red = pain on the left, blue = no pain on the right), so the
bug this guards is concrete: a single-logit model explained through ``(z, -z)`` instead of
``(-z, z)`` would show the no-pain evidence when asked why it said pain.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from neopain.errors import NeopainError
from neopain.explain import ClassScores, GradCam, IntegratedGradients, Occlusion
from neopain.explain.base import class_indices

EXPLAINERS = {
    "gradcam": lambda model: GradCam(model, gate=False),
    "gradcam-gated": lambda model: GradCam(model),
    "ig-blur": lambda model: IntegratedGradients(model, steps=16, blur_sigma=0.3),
    "ig-black": lambda model: IntegratedGradients(model, baseline="black", steps=16),
    "occlusion": lambda model: Occlusion(model, window=5, stride=1, blur_sigma=0.3),
}


@pytest.mark.parametrize("single_output", [False, True], ids=["softmax", "sigmoid"])
@pytest.mark.parametrize("method", list(EXPLAINERS))
def test_each_class_is_explained_by_its_own_evidence(method, single_output, blobs,
                                                     colour_model):
    image, red, blue = blobs
    with EXPLAINERS[method](colour_model(single_output=single_output)) as explainer:
        pain, nopain = explainer.explain(np.stack([image, image]), target=["pain", "nopain"])
    left = np.zeros_like(red)
    left[:, :16] = True
    for heat, blob, side, other in ((pain, red, left, blue), (nopain, blue, ~left, red)):
        assert heat.shape == red.shape and heat.min() >= 0
        assert blob.flat[heat.argmax()], "the peak must lie on the class's own evidence"
        assert heat[side].sum() > 0.95 * heat.sum()
        assert heat[other].sum() < 0.02 * heat.sum()


def test_class_scores_of_a_sigmoid_model_are_the_logit_and_its_negation():
    logits = torch.tensor([[2.0], [-0.5]])
    model = torch.nn.Identity()
    scores = ClassScores(model)(logits)
    assert torch.equal(scores, torch.tensor([[-2.0, 2.0], [0.5, -0.5]]))
    probabilities = ClassScores(model, probabilities=True)(logits)
    assert torch.allclose(probabilities[:, 1], torch.sigmoid(logits[:, 0]))
    assert torch.allclose(probabilities.sum(dim=1), torch.ones(2))
    two = torch.tensor([[0.3, 1.2]])
    assert torch.equal(ClassScores(model)(two), two)
    assert torch.allclose(ClassScores(model, probabilities=True)(two), torch.softmax(two, 1))


def test_targets_by_name_index_or_per_image_and_clear_errors():
    assert class_indices("pain", 3).tolist() == [1, 1, 1]
    assert class_indices(["nopain", 1, np.int64(0)], 3).tolist() == [0, 1, 0]
    with pytest.raises(NeopainError, match="target='sad' is not a class; valid: 0, 1, nopain"):
        class_indices("sad", 2)
    with pytest.raises(NeopainError, match="3 classes for 2 images"):
        class_indices([0, 1, 1], 2)
    with pytest.raises(NeopainError, match=r"output has shape \(1, 3\)"):
        ClassScores(torch.nn.Identity())(torch.zeros(1, 3))


def test_predict_gives_p_pain_for_both_layouts(blobs, colour_model):
    image, _, _ = blobs
    for single in (False, True):
        with GradCam(colour_model(single_output=single)) as explainer:
            prob = explainer.predict(image)
        assert prob.shape == (1,) and 0.0 <= prob[0] <= 1.0
    with GradCam(colour_model()) as two, GradCam(colour_model(single_output=True)) as one:
        # softmax(blue, red)[1] = sigmoid(red - blue): both layouts agree on P(pain)
        assert np.allclose(two.predict(image), one.predict(image), atol=1e-6)
