"""Integrated Gradients: attributions add up to f(x) - f(baseline) within 2% at the default
settings (the refinement of images that miss it is what makes this hold), and the baselines
are what they claim: black is pixel 0 before normalization, blur keeps the image's mean."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from neopain.errors import NeopainError
from neopain.explain import IntegratedGradients
from neopain.explain.sanity import completeness_check


def test_completeness_within_2_percent_at_default_settings(random_ncnn, face_batch):
    with IntegratedGradients(random_ncnn) as ig:
        result = ig.attribute(face_batch[:2], target=["nopain", "pain"])
    assert result.attributions.shape == face_batch[:2].shape
    assert (result.relative_error <= 0.02).all(), result.relative_error
    table = completeness_check(random_ncnn, face_batch[2:3], target="pain")
    assert np.allclose(table["attribution_sum"], table["score"] - table["baseline_score"],
                       rtol=0, atol=0.02 * np.abs(table["score"] - table["baseline_score"]).max())


def test_images_that_miss_the_tolerance_are_integrated_again(random_ncnn, face_batch):
    """With 4 steps the integral is coarse; the refinement must bring every image within the
    tolerance, and without it the error stays larger."""
    with IntegratedGradients(random_ncnn, steps=4, tolerance=None) as coarse:
        rough = coarse.attribute(face_batch[:1], target="pain").relative_error
    with IntegratedGradients(random_ncnn, steps=4, tolerance=0.02, max_steps=128) as refined:
        fine = refined.attribute(face_batch[:1], target="pain").relative_error
    assert rough.max() > 0.02
    assert (fine <= 0.02).all()


def test_baselines_black_and_blur(random_ncnn, face_batch):
    images = torch.from_numpy(face_batch)
    with IntegratedGradients(random_ncnn, baseline="black") as ig:
        black = ig.baselines(images)
    pixels = black * 0.5 + 0.5  # ncnn: mean 0.5, std 0.5
    assert torch.allclose(pixels, torch.zeros_like(pixels), atol=1e-6)
    with IntegratedGradients(random_ncnn) as ig:
        blurred = ig.baselines(images)
    assert blurred.shape == images.shape
    assert torch.allclose(blurred.mean(dim=(2, 3)), images.mean(dim=(2, 3)), atol=0.05)
    assert blurred.std() < images.std()


def test_bad_options_name_the_parameter_and_what_is_valid(random_ncnn):
    with pytest.raises(NeopainError, match="baseline='white' is not valid; valid: blur, black"):
        IntegratedGradients(random_ncnn, baseline="white")
    with pytest.raises(NeopainError, match="steps=1 is not valid; valid: a whole number >= 2"):
        IntegratedGradients(random_ncnn, steps=1)
    with pytest.raises(NeopainError, match=r"max_steps=32 is not valid; valid: a whole number "
                                           r">= steps \(64\)"):
        IntegratedGradients(random_ncnn, max_steps=32)
    with pytest.raises(NeopainError, match="needs the model's normalization"):
        IntegratedGradients(torch.nn.Conv2d(3, 2, 1), baseline="black")
