"""A Ray on this machine for the tests of ``--backend ray``: started once per test module,
shut down after it; its workers import the tests' helper modules (``parallel_jobs``)."""

from __future__ import annotations

import builtins
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

CPUS = 2
TESTS = Path(__file__).parent


def ray_or_skip() -> object:
    """The ``ray`` module; the test skips where Ray is not installed, except in CI
    (``NEOPAIN_TEST_RAY=required``), where Ray's tests must run."""
    if os.environ.get("NEOPAIN_TEST_RAY") == "required":
        import ray

        return ray
    return pytest.importorskip("ray")


@contextmanager
def local_ray() -> Iterator[object]:
    """``ray``, initialized with ``CPUS`` CPUs and no dashboard, until the block ends."""
    ray = ray_or_skip()
    path = os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH")]))
    # address="local": a Ray of its own, never one of RAY_ADDRESS or `ray start`
    ray.init(address="local", num_cpus=CPUS, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": path}})
    try:
        yield ray
    finally:
        ray.shutdown()


def without_ray(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make ``import ray`` fail for the rest of the test, as where Ray is not installed."""
    real_import = builtins.__import__

    def no_ray(name, *args, **kwargs):
        if name == "ray" or name.startswith("ray."):
            raise ImportError("No module named 'ray'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_ray)
    monkeypatch.delitem(sys.modules, "ray", raising=False)
