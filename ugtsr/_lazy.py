"""PEP 562 lazy public names for packages whose names live in heavier submodules (torch, triton):
``ugtsr``, ``ugtsr.train`` and ``ugtsr.kernels`` import them only when first used."""
from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Iterable
from typing import Any


def lazy_attributes(package: str, names: dict[str, str],
                    exported: Iterable[str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for ``package``: ``names`` maps a public name to the module that
    defines it; a resolved name is cached on the package, so later lookups are plain attributes."""
    listed = sorted(exported)

    def __getattr__(name: str) -> Any:
        module = names.get(name)
        if module is None:
            raise AttributeError(f"module '{package}' has no attribute '{name}'")
        value = getattr(importlib.import_module(module), name)
        setattr(sys.modules[package], name, value)
        return value

    def __dir__() -> list[str]:
        return listed

    return __getattr__, __dir__
