"""Package names that load on first use (PEP 562), so that importing one light module of a
package does not import the heavy ones (torch) its ``__init__`` re-exports."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from importlib import import_module
from typing import Any


def lazy_exports(package: str, exports: Mapping[str, tuple[str, ...]]
                 ) -> tuple[Callable[[str], Any], list[str]]:
    """``(__getattr__, __all__)`` for ``package``: each name of ``exports`` (module → names) is
    imported from its module when first asked for.

    Example:
        >>> __getattr__, __all__ = lazy_exports(__name__, {"neopain.models.cfg": ("ModelCfg",)})
    """
    module_of = {name: module for module, names in exports.items() for name in names}

    def __getattr__(name: str) -> Any:
        if name not in module_of:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(import_module(module_of[name]), name)

    return __getattr__, sorted(module_of)
