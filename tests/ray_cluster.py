"""A Ray on this machine for the tests of ``--backend ray``: started once per test module,
shut down after it; its workers import the tests' helper modules (``parallel_jobs``)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

CPUS = 2
TESTS = Path(__file__).parent


@contextmanager
def local_ray() -> Iterator[object]:
    """``ray``, initialized with ``CPUS`` CPUs and no dashboard, until the block ends."""
    ray = pytest.importorskip("ray")
    path = os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH")]))
    ray.init(num_cpus=CPUS, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": path}})
    try:
        yield ray
    finally:
        ray.shutdown()
