"""Issue 24 acceptance of ``explain benchmark`` on an N-CNN trained on a small synthetic cohort
(12 subjects, a subject-grouped holdout split): a table of >= 6 methods whose figures are all
measured, IG localizes best of them, and RISE puts more than 1.5 times the masks' area share of
its mass in the masks. Grad-CAM is not asserted: on a model this small its map swings between
runs (0.2 to 2.3 times the area share on a few images), and on the 30-subject cohort guided
Grad-CAM and the gradient methods match or beat it (docs/explain.md). Few images and few RISE
masks keep it short."""

from __future__ import annotations

import numpy as np
import pytest

from neopain.data.folds import make_folds, save_folds
from neopain.data.manifest import load_manifest, sha256_file
from neopain.data.synthetic import CohortSpec, generate_cohort
from neopain.explain import CaptumGradients, GradCam, GuidedGradCam, IntegratedGradients, Rise
from neopain.explain.benchmark import benchmark_explainers
from neopain.explain.localization import mask_in_input, read_action_mask
from neopain.explain.run import manifest_items
from neopain.runs import load_fold, select_rows
from neopain.training import TrainConfig, run_cv

pytestmark = pytest.mark.slow

IMAGES = 4


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(model, pain test images (N, 3, 120, 120), their action masks on the input)."""
    root = tmp_path_factory.mktemp("benchmark")
    generate_cohort(root / "cohort", CohortSpec(subjects=12, seed=1, images_per_subject=(8, 8)))
    manifest_path = root / "cohort" / "manifest.csv"
    manifest = load_manifest(manifest_path)
    save_folds(make_folds(manifest, protocol="holdout", k=1, test_share=0.25, val_share=0,
                          seed=1, manifest_sha256=sha256_file(manifest_path)),
               root / "folds.json")
    run_cv(TrainConfig(model="ncnn", manifest=manifest_path, folds=root / "folds.json",
                       out=root / "run", fold=0, epochs=10, batch_size=32, lr=0.004,
                       lr_schedule="onecycle", flip=0.5, early_stopping=0, device="cpu",
                       seed=1))
    fold = load_fold(root / "run" / "fold_0")
    rows = [r for r in select_rows(manifest, subjects=fold.test_subjects)
            if manifest.table["label"].iat[r] == "pain"]
    images, masks = [], []
    for item in manifest_items(manifest, fold.model.cfg, rows=rows):
        mask = mask_in_input(read_action_mask(manifest.root / manifest.table["mask"]
                                              .iat[item.row]),
                             size=fold.model.cfg.input_size, crop_box=item.crop_box)
        if mask.any() and len(images) < IMAGES:
            images.append(item.image)
            masks.append(mask)
    return fold.model, np.stack(images), np.stack(masks)


def test_benchmark_of_six_methods_ig_leads_and_rise_localizes(trained):
    model, images, masks = trained
    explainers = {
        "gradcam": GradCam(model),
        "ig": IntegratedGradients(model, steps=16, tolerance=None),
        "rise": Rise(model, masks=200),
        "guidedgradcam": GuidedGradCam(model),
        "saliency": CaptumGradients(model, method="saliency"),
        "gradientshap": CaptumGradients(model, method="gradientshap", samples=8),
    }
    try:
        result = benchmark_explainers(model, explainers, images, target="pain", masks=masks,
                                      steps=10, perturbations=2)
    finally:
        for explainer in explainers.values():
            explainer.close()
    table = result.table.set_index("method")
    assert len(table) >= 6
    assert table.notna().all().all(), table
    assert (table["localized_images"] == len(images)).all()
    assert table["mass_ratio"].idxmax() == "ig", table["mass_ratio"]
    assert table.at["rise", "mass_ratio"] > 1.5, table["mass_ratio"]
    assert table.at["ig", "insertion"] > table.at["ig", "deletion"]
