"""Shared fixtures: the acceptance cohort is built once per test process."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from neopain.data.synthetic import CohortResult, CohortSpec, generate_cohort


@pytest.fixture(scope="session")
def cohort30(tmp_path_factory: pytest.TempPathFactory) -> CohortResult:
    """The acceptance cohort: what ``neopain synth --subjects 30 --seed 1`` writes."""
    return generate_cohort(tmp_path_factory.mktemp("cohort30"), CohortSpec(subjects=30, seed=1),
                           workers=2)


@pytest.fixture(scope="session")
def neopain_script() -> Path:
    """The installed console script, for end-to-end runs (exit codes, no tracebacks)."""
    return Path(sys.executable).parent / "neopain"
