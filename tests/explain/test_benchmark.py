"""The benchmark's figures mean what they say, on the toy model whose evidence is known: the
deletion curve of a heatmap on the evidence falls faster than that of a heatmap elsewhere (and
insertion rises faster), a method that localizes scores a high mass ratio, images without a mask
are left out of localization, and bad masks are refused by name."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from neopain.errors import NeopainError
from neopain.explain import GradCam, Rise
from neopain.explain.benchmark import (
    BENCHMARK_COLUMNS, benchmark_explainers, benchmark_figure, deletion_insertion,
)
from neopain.explain.perturbation import probability_scores


def test_deletion_falls_and_insertion_rises_first_where_the_heatmap_is_right(colour_model,
                                                                           blobs):
    image, red, _ = blobs
    images = torch.from_numpy(np.stack([image, image]))
    right = torch.from_numpy(np.stack([red, ~red]).astype(np.float32))  # 2nd: anywhere else
    deletion, insertion = deletion_insertion(
        probability_scores(colour_model()), images, right, target=torch.tensor([1, 1]),
        baselines=torch.zeros_like(images), steps=10)
    assert deletion.shape == insertion.shape == (2, 11)
    assert deletion[0, 0] == pytest.approx(deletion[1, 0])  # both start from the image
    assert deletion[0, 1] < deletion[1, 1] - 0.01  # the red blob is the first 10%
    assert insertion[0, 1] > insertion[1, 1] + 0.01
    assert deletion[0].mean() < deletion[1].mean() and insertion[0].mean() > insertion[1].mean()


def test_a_table_row_per_method_with_localization_where_masks_exist(colour_model, blobs,
                                                                    tmp_path):
    image, red, _ = blobs
    model = colour_model()
    images = np.stack([image, image, image])
    masks = np.stack([red, red, np.zeros_like(red)])  # the third image has no ground truth
    with GradCam(model) as gradcam, Rise(model, masks=200, cells=6) as rise:
        result = benchmark_explainers(model, {"gradcam": gradcam, "rise": rise}, images,
                                      target="pain", masks=masks, steps=8, perturbations=2)
    table = result.table.set_index("method")
    assert list(result.table.columns) == list(BENCHMARK_COLUMNS)
    assert list(table.index) == ["gradcam", "rise"]
    assert (table["localized_images"] == 2).all()
    assert (table["mass_ratio"] > 3).all() and (table["pointing"] == 1).all()
    assert (table["insertion"] > table["deletion"]).all()
    # infidelity is a mean square; captum's rescaling can leave a rounding error below 0
    assert (table[["infidelity", "sensitivity_max", "seconds_per_image"]] > -1e-6).all().all()
    assert set(result.curves["curve"]) == {"deletion", "insertion"}
    assert len(result.curves) == 2 * 2 * 9
    assert benchmark_figure(result, tmp_path / "benchmark.png").stat().st_size > 10_000


def test_bad_masks_and_counts_are_refused(colour_model, blobs):
    image, red, _ = blobs
    model = colour_model()
    with GradCam(model) as gradcam:
        with pytest.raises(NeopainError, match=r"masks have shape \(32, 32\); valid: one"):
            benchmark_explainers(model, {"gradcam": gradcam}, image, target="pain", masks=red)
        with pytest.raises(NeopainError, match="perturbations=1 is not valid; valid: a whole "
                                               "number >= 2"):
            benchmark_explainers(model, {"gradcam": gradcam}, image, target="pain",
                                 perturbations=1)
