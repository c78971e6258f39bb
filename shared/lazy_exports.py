"""Package names that load on first use (PEP 562), so a light submodule import stays light.

A package ``__init__`` lists ``{module: (names, ...)}`` and sets::

    __getattr__, __all__ = lazy_exports(__name__, globals(), _EXPORTS)
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(
    package: str, namespace: dict[str, Any], exports: Mapping[str, tuple[str, ...]]
) -> tuple[Callable[[str], Any], list[str]]:
    """A module ``__getattr__`` importing each name's module on first use (then cached), and ``__all__``."""
    module_of = {name: module for module, names in exports.items() for name in names}

    def __getattr__(name: str) -> Any:
        if name not in module_of:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module_of[name]), name)
        namespace[name] = value  # later lookups skip this function
        return value

    return __getattr__, sorted(module_of)
