"""Issue 6 acceptance on an N-CNN trained on the synthetic cohort (the cohort30 fixture, a
subject-grouped holdout split, the training recipe of docs/training.md), as
benchmarks/bench_explain.py measures it:

- Grad-CAM and Integrated Gradients put at least twice the masks' area share of their mass
  inside the ground-truth action masks, and their peak inside a mask for >= 70% of the held-out
  pain images;
- IG completeness error <= 2% of |f(x) - f(baseline)| at default settings;
- with every layer re-initialized, heatmaps correlate (Spearman) below 0.5 with the trained
  model's.
"""

from __future__ import annotations

import numpy as np
import pytest

from neopain.data.folds import make_folds, save_folds
from neopain.data.manifest import load_manifest, sha256_file
from neopain.explain import GradCam, IntegratedGradients
from neopain.explain.localization import localization, mask_in_input, read_action_mask
from neopain.explain.run import manifest_items
from neopain.explain.sanity import randomization_test
from neopain.runs import load_fold, select_rows
from neopain.training import TrainConfig, run_cv

pytestmark = pytest.mark.slow

IMAGES = 24


@pytest.fixture(scope="module")
def trained(cohort30, tmp_path_factory):
    """(model, pain images (N, 3, 120, 120), their action masks on the input (N, 120, 120))."""
    root = tmp_path_factory.mktemp("acceptance")
    manifest_path = cohort30.manifest
    manifest = load_manifest(manifest_path)
    plan = make_folds(manifest, protocol="holdout", k=1, test_share=0.25, val_share=0, seed=1,
                      manifest_sha256=sha256_file(manifest_path))
    save_folds(plan, root / "folds.json")
    run_cv(TrainConfig(model="ncnn", manifest=manifest_path, folds=root / "folds.json",
                       out=root / "run", fold=0, epochs=16, batch_size=32, lr=0.004,
                       lr_schedule="onecycle", flip=0.5, early_stopping=0, precision="auto",
                       device="cpu", seed=1))
    fold = load_fold(root / "run" / "fold_0")
    cfg = fold.model.cfg
    rows = [r for r in select_rows(manifest, subjects=fold.test_subjects)
            if manifest.table["label"].iat[r] == "pain"]
    images, masks = [], []
    for item in manifest_items(manifest, cfg, rows=rows):
        mask = mask_in_input(read_action_mask(manifest.root / manifest.table["mask"]
                                              .iat[item.row]),
                             size=cfg.input_size, crop_box=item.crop_box)
        if mask.any():
            images.append(item.image)
            masks.append(mask)
    return fold.model, np.stack(images), np.stack(masks)


def test_gradcam_and_ig_point_at_the_action_masks_and_ig_adds_up(trained):
    model, images, masks = trained
    assert len(images) >= IMAGES
    with GradCam(model) as gradcam:
        found = localization(gradcam.explain(images, target="pain"), masks)
    assert found.mass_ratio >= 2.0, found.mass_ratio
    assert found.pointing >= 0.7, found.pointing
    with IntegratedGradients(model) as ig:
        result = ig.attribute(images[:IMAGES], target="pain")
    heat = np.clip(result.attributions.sum(axis=1), 0, None)  # what explain() returns
    found = localization(heat, masks[:IMAGES])
    assert found.mass_ratio >= 2.0, found.mass_ratio
    assert found.pointing >= 0.7, found.pointing
    assert (result.relative_error <= 0.02).all(), result.relative_error


@pytest.mark.parametrize("method, make", [
    ("gradcam", GradCam),
    ("ig", lambda m: IntegratedGradients(m, steps=32, tolerance=None)),
])
def test_heatmaps_of_a_randomized_model_do_not_resemble_the_trained_ones(trained, method, make):
    model, images, _ = trained
    table = randomization_test(model, images[:4], target="pain", explainer=make)
    final = table[table["step"] == table["step"].max()]["spearman"]
    assert final.mean() < 0.5, (method, final.tolist())
