"""Shared fixtures: the acceptance cohort is built once per test process."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import postgres_server
import pytest
from ray_cluster import local_ray

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


@pytest.fixture(scope="module")
def ray() -> Iterator[object]:
    """``ray`` on a Ray of this machine (``local_ray``), shared by a test module."""
    with local_ray() as ray:
        yield ray


def postgres_database() -> Iterator[str]:
    """A fresh, empty PostgreSQL database's URL (``postgres_server``), dropped afterwards; the
    test skips, saying why, where no server can be had — and fails instead in CI."""
    try:
        databases = postgres_server.databases()
    except postgres_server.Unavailable as why:
        if postgres_server.required():
            pytest.fail(f"{why} ({postgres_server.REQUIRED_ENV}=required)")
        pytest.skip(str(why))
    url = databases.create()
    try:
        yield url
    finally:
        databases.drop(url)


BACKENDS = ["sqlite", "postgresql"]


def backend_database(backend: str, folder: Path) -> Iterator[str]:
    """A fresh records database on ``backend``: a SQLite file in ``folder``, or a new
    PostgreSQL database."""
    if backend == "sqlite":
        yield f"sqlite:///{folder / 'records.sqlite3'}"
    else:
        yield from postgres_database()


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The records database of a store, server or end-to-end test, once on each backend: a
    SQLite file in ``tmp_path`` and a fresh PostgreSQL database."""
    yield from backend_database(request.param, tmp_path)


@pytest.fixture(scope="module", params=BACKENDS)
def module_database_url(request: pytest.FixtureRequest,
                        tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``database_url`` shared by a whole test module (module-scoped servers)."""
    yield from backend_database(request.param, tmp_path_factory.mktemp("records"))


@pytest.fixture()
def postgres_url() -> Iterator[str]:
    """A fresh PostgreSQL database only (tests of what SQLite cannot show: several processes)."""
    yield from postgres_database()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """One line for the log: how the tests on PostgreSQL ended (CI shows they ran)."""
    outcomes: dict[str, set[str]] = {}
    for outcome in ("passed", "failed", "error", "skipped"):
        for report in terminalreporter.stats.get(outcome, []):
            nodeid = getattr(report, "nodeid", "")
            if "postgres" in nodeid.lower():
                outcomes.setdefault(outcome, set()).add(nodeid)
    if outcomes:
        counts = ", ".join(f"{len(outcomes.get(name, ()))} {name}"
                           for name in ("passed", "failed", "error", "skipped"))
        terminalreporter.write_line(f"tests on PostgreSQL: {counts}")
