"""Every catalog case, gathered from the modules of this package (each defines ``CASES``)."""

from __future__ import annotations

import importlib
import pkgutil

from cases.base import Case

CASES: list[Case] = []
for _info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
    if _info.name != "base":
        CASES.extend(importlib.import_module(f"cases.{_info.name}").CASES)

__all__ = ["CASES", "Case"]
