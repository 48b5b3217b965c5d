"""A briefly trained N-CNN fold and its exported file, built once per test process."""

from __future__ import annotations

from pathlib import Path

import pytest

from neopain.data.folds import make_folds, save_folds
from neopain.data.manifest import load_manifest, sha256_file
from neopain.data.synthetic import CohortSpec, generate_cohort
from neopain.export.onnx import export_fold
from neopain.training import TrainConfig, run_cv


def train_tiny_run(root: Path, *, crop_to_face: bool = True) -> Path:
    """6 synthetic subjects, 3 lsso folds, N-CNN fold 0 trained 2 epochs; returns fold_0."""
    manifest = root / "cohort" / "manifest.csv"
    if not manifest.is_file():
        generate_cohort(root / "cohort", CohortSpec(subjects=6, seed=2,
                                                    images_per_subject=(3, 4), noisy_share=0.5))
        plan = make_folds(load_manifest(manifest), protocol="lsso", k=3,
                          manifest_sha256=sha256_file(manifest))
        save_folds(plan, root / "cohort" / "folds.json")
    name = "ncnn" if crop_to_face else "ncnn_whole"
    run_cv(TrainConfig(model="ncnn", manifest=manifest, folds=root / "cohort" / "folds.json",
                       out=root / "runs" / name, fold=0, epochs=2, batch_size=8, device="cpu",
                       crop_to_face=crop_to_face))
    return root / "runs" / name / "fold_0"


@pytest.fixture(scope="session")
def tiny_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("tiny-run")


@pytest.fixture(scope="session")
def tiny_fold(tiny_root: Path) -> Path:
    """fold_0 of a trained N-CNN run (crop_to_face, the training default)."""
    return train_tiny_run(tiny_root)


@pytest.fixture(scope="session")
def whole_image_fold(tiny_root: Path, tiny_fold: Path) -> Path:
    """fold_0 of the same run trained on whole images (crop_to_face: false)."""
    return train_tiny_run(tiny_root, crop_to_face=False)


@pytest.fixture(scope="session")
def tiny_onnx(tiny_fold: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """That fold exported to ONNX (fp32)."""
    path, _ = export_fold(tiny_fold, tmp_path_factory.mktemp("tiny-onnx") / "ncnn.onnx")
    return path
