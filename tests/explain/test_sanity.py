"""Sanity checks: the randomization test tells an explanation that depends on the weights from
one that only describes the image (Adebayo et al.'s edge-detector failure), randomizes a copy
from the output back, and leaves the model alone."""

from __future__ import annotations

import math

import numpy as np
import torch

from neopain.explain import Explainer, GradCam
from neopain.explain.sanity import (
    heatmap_spearman, parameter_layers, randomization_summary, randomization_test,
)


class ImageEdges(Explainer):
    """Ignores the model: the image's gradient magnitude (an edge detector)."""

    name = "edges"

    def _attribute(self, images, target):
        dy = (images[:, :, 1:, :-1] - images[:, :, :-1, :-1]).abs().sum(1)
        dx = (images[:, :, :-1, 1:] - images[:, :, :-1, :-1]).abs().sum(1)
        return torch.nn.functional.pad(dx + dy, (0, 1, 0, 1))


def test_layers_are_randomized_from_the_output_back(random_ncnn):
    assert parameter_layers(random_ncnn) == ["head.fc2", "head.fc1", "merge.conv", "right.conv",
                                             "centre.conv2", "centre.conv1"]


def test_the_test_flags_an_explanation_that_ignores_the_model(random_ncnn, face_batch):
    before = {k: v.clone() for k, v in random_ncnn.state_dict().items()}
    edges = randomization_test(random_ncnn, face_batch[:2], target="pain",
                               explainer=lambda m: ImageEdges(m))
    gradcam = randomization_test(random_ncnn, face_batch[:2], target="pain",
                                 explainer=lambda m: GradCam(m, layer="centre.conv2"))
    assert np.allclose(edges["spearman"], 1.0)  # the failure the check exists to expose
    summary = randomization_summary(gradcam)
    assert list(summary["layer"]) == parameter_layers(random_ncnn)
    assert summary["mean"].iloc[-1] < 0.5
    assert all(torch.equal(before[k], v) for k, v in random_ncnn.state_dict().items())


def test_spearman_conventions_for_constant_maps():
    ramp = np.arange(16.0).reshape(4, 4)
    assert heatmap_spearman(ramp, ramp * 2 + 1) == 1.0
    assert heatmap_spearman(ramp, np.zeros((4, 4))) == 0.0
    assert math.isnan(heatmap_spearman(np.zeros((4, 4)), np.zeros((4, 4))))
