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
    BENCHMARK_COLUMNS, SCORE_CHUNK, benchmark_explainers, benchmark_figure, deletion_insertion,
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
    with pytest.raises(NeopainError, match="no explanation method given; valid: gradcam, ig, "
                                           "occlusion"):
        benchmark_explainers(model, {}, image, target="pain")


def test_the_model_sees_at_most_a_chunk_of_images_per_pass_after_a_warm_up(colour_model,
                                                                         blobs):
    """Bug guarded: deletion and insertion scored 2 * (steps + 1) images in one pass, and
    infidelity and sensitivity-max every perturbed copy at once; the first method's timing
    held the model's warm-up."""
    image, _, _ = blobs
    model = colour_model()
    sizes = []
    handle = model.register_forward_hook(lambda module, inputs, output:
                                         sizes.append(len(inputs[0])))
    try:
        with GradCam(model) as gradcam:
            benchmark_explainers(model, {"gradcam": gradcam}, np.stack([image] * 3),
                                 target="pain", steps=40, perturbations=20)
    finally:
        handle.remove()
    assert sizes[0] == 1  # the warm-up
    assert max(sizes) <= SCORE_CHUNK, sizes


def test_a_single_image_is_scored(colour_model, blobs):
    """Bug guarded: captum's sensitivity-max passes one image's target unexpanded to its
    perturbed copies, and the explainer refused "1 classes for 2 images" (explain benchmark
    --limit 1, or a fold with one test image)."""
    image, red, _ = blobs
    model = colour_model()
    with GradCam(model) as gradcam:
        result = benchmark_explainers(model, {"gradcam": gradcam}, image, target="pain",
                                      masks=red[None], steps=4, perturbations=2)
    row = result.table.iloc[0]
    assert row["images"] == 1 and row["localized_images"] == 1
    assert np.isfinite(row[["infidelity", "sensitivity_max", "deletion", "insertion"]]
                       .to_numpy(float)).all()
