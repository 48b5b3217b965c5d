"""RISE (hand-written): heatmaps of the right shape that find the evidence of the class asked
for, repeatable with a seed whatever else is in the batch, for a torch model and a function
alike (the bugs guarded: masks drawn afresh per batch make a heatmap depend on its neighbours;
the plain RISE estimate adds the mean score to every pixel, which hides where the evidence is)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from neopain.errors import NeopainError
from neopain.explain import Rise
from neopain.explain.localization import localization
from neopain.explain.rise import random_masks


def test_rise_finds_the_evidence_of_each_class(colour_model, blobs):
    image, red, blue = blobs
    with Rise(colour_model(), masks=400, cells=6) as rise:
        heat = rise.explain(np.stack([image, image]), target=["pain", "nopain"])
    assert heat.shape == (2, 32, 32) and heat.dtype == np.float32 and heat.min() >= 0
    assert localization(heat[:1], red[None]).mass_ratio > 3.0  # red is pain
    assert localization(heat[1:], blue[None]).mass_ratio > 3.0  # blue is no pain
    assert localization(heat[:1], red[None]).pointing == 1.0


def test_rise_is_repeatable_and_independent_of_the_batch(colour_model, blobs):
    image, _, _ = blobs
    other = np.roll(image, 5, axis=2)
    with Rise(colour_model(), masks=128, cells=4, masks_per_eval=50, seed=3) as rise:
        alone = rise.explain(image, target="pain")
        batched = rise.explain(np.stack([other, image]), target="pain")
    with Rise(colour_model(), masks=128, cells=4, masks_per_eval=128, seed=3) as rise:
        one_pass = rise.explain(image, target="pain")
    with Rise(colour_model(), masks=128, cells=4, seed=4) as rise:
        reseeded = rise.explain(image, target="pain")
    assert np.array_equal(alone[0], batched[1])
    assert np.allclose(alone, one_pass, atol=1e-6)  # chunking the masks changes nothing
    assert not np.allclose(alone, reseeded)


def test_rise_explains_a_function_as_its_torch_model(colour_model, blobs):
    image, _, _ = blobs
    model = colour_model()

    def prob_pain(images: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return torch.softmax(model(torch.from_numpy(images)), dim=1)[:, 1].numpy()

    with Rise(model, masks=64, cells=4) as from_torch, \
            Rise(prob_pain, masks=64, cells=4) as from_function:
        assert np.allclose(from_function.explain(image, target="pain"),
                           from_torch.explain(image, target="pain"), atol=1e-5)


def test_masks_are_smooth_and_keep_the_share_asked_for():
    masks = torch.cat(list(random_masks(500, size=(32, 40), cells=5, keep=0.3,
                                        generator=torch.Generator().manual_seed(0))))
    assert masks.shape == (500, 32, 40)
    assert float(masks.min()) >= 0 and float(masks.max()) <= 1 + 1e-6
    assert float(masks.mean()) == pytest.approx(0.3, abs=0.03)
    assert ((masks > 0.01) & (masks < 0.99)).any()  # bilinear, not a hard grid


@pytest.mark.parametrize("option, message", [
    ({"masks": 0}, "masks=0 is not valid; valid: a whole number >= 1"),
    ({"keep": 1.5}, r"keep=1.5 is not valid; valid: a probability in \(0, 1\)"),
    ({"baseline": "grey"}, "baseline='grey' is not valid; valid: blur, black, mean"),
])
def test_bad_options_are_refused_by_name(colour_model, option, message):
    with pytest.raises(NeopainError, match=message):
        Rise(colour_model(), **option)


def test_more_cells_than_pixels_is_refused(colour_model, blobs):
    with Rise(colour_model(), cells=40) as rise:
        with pytest.raises(NeopainError, match=r"cells=40 is more than the images' side"):
            rise.explain(blobs[0], target="pain")
