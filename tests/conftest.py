"""Shared fixtures: the acceptance cohort is built once per test process."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from neopain.data.folds import make_folds, save_folds
from neopain.data.manifest import load_manifest, sha256_file
from neopain.data.synthetic import CohortResult, CohortSpec, generate_cohort


@pytest.fixture(scope="session")
def cohort30(tmp_path_factory: pytest.TempPathFactory) -> CohortResult:
    """The acceptance cohort: what ``neopain synth --subjects 30 --seed 1`` writes."""
    return generate_cohort(tmp_path_factory.mktemp("cohort30"), CohortSpec(subjects=30, seed=1),
                           workers=2)


@pytest.fixture(scope="session")
def cohort6(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny cohort for training tests: 6 subjects, 3-4 images each (half noisy), and 3 lsso
    folds in ``folds.json``. Shared: write runs into your own tmp_path, never into it."""
    root = tmp_path_factory.mktemp("cohort6")
    generate_cohort(root, CohortSpec(subjects=6, seed=2, images_per_subject=(3, 4),
                                     noisy_share=0.5))
    manifest = root / "manifest.csv"
    save_folds(make_folds(load_manifest(manifest), protocol="lsso", k=3,
                          manifest_sha256=sha256_file(manifest)), root / "folds.json")
    return root


@pytest.fixture(scope="session")
def neopain_script() -> Path:
    """The installed console script, for end-to-end runs (exit codes, no tracebacks)."""
    return Path(sys.executable).parent / "neopain"
