"""A briefly trained N-CNN fold and its exported file, built once per test process."""

from __future__ import annotations

from pathlib import Path

import pytest

from neopain.export.onnx import export_fold
from neopain.training import TrainConfig, run_cv


def train_tiny_run(root: Path, cohort: Path, *, crop_to_face: bool = True) -> Path:
    """N-CNN fold 0 of the 6-subject ``cohort``, trained 2 epochs into ``root``; returns fold_0."""
    name = "ncnn" if crop_to_face else "ncnn_whole"
    run_cv(TrainConfig(model="ncnn", manifest=cohort / "manifest.csv",
                       folds=cohort / "folds.json", out=root / "runs" / name, fold=0, epochs=2,
                       batch_size=8, device="cpu", crop_to_face=crop_to_face))
    return root / "runs" / name / "fold_0"


@pytest.fixture(scope="session")
def tiny_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("tiny-run")


@pytest.fixture(scope="session")
def tiny_fold(tiny_root: Path, cohort6: Path) -> Path:
    """fold_0 of a trained N-CNN run (crop_to_face, the training default)."""
    return train_tiny_run(tiny_root, cohort6)


@pytest.fixture(scope="session")
def whole_image_fold(tiny_root: Path, cohort6: Path) -> Path:
    """fold_0 of the same run trained on whole images (crop_to_face: false)."""
    return train_tiny_run(tiny_root, cohort6, crop_to_face=False)


@pytest.fixture(scope="session")
def tiny_onnx(tiny_fold: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """That fold exported to ONNX (fp32)."""
    path, _ = export_fold(tiny_fold, tmp_path_factory.mktemp("tiny-onnx") / "ncnn.onnx")
    return path
