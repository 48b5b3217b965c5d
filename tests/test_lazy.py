"""Packages whose names load on first use: every advertised name resolves, and an unknown one
is a plain AttributeError (the export tables are the only list of these names)."""

from __future__ import annotations

import importlib

import pytest


@pytest.mark.parametrize("package", ["neopain.models", "neopain.training"])
def test_every_exported_name_resolves(package):
    module = importlib.import_module(package)
    assert module.__all__
    for name in module.__all__:
        assert getattr(module, name) is not None, name
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        module.nope  # noqa: B018
