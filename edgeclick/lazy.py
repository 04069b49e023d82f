"""Lazy package APIs (PEP 562): a package names its API in `__init__` without importing every module.

    __getattr__, __all__ = lazy_api(__name__, {"Session": ".session", "open_backend": ".artifact"})

`from edgeclick.runtimes import Session` then imports `.session` on first use only, so importing one
small module of the package (or `edgeclick --help`) loads no backend, exporter or conversion tool.
"""
from __future__ import annotations

import importlib
from typing import Any, Callable


def lazy_api(package: str, names: dict[str, str]) -> tuple[Callable[[str], Any], list[str]]:
    """(`__getattr__`, `__all__`) for `package`: each name → the (relative) module that defines it."""

    def __getattr__(name: str) -> Any:
        if name not in names:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(names[name], package), name)

    return __getattr__, sorted(names)
