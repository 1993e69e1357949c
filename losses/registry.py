"""Name → :class:`LossSpec` lookup, tolerant of case, underscores, hyphens and spaces."""

from __future__ import annotations

import difflib
import functools
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from lossd.losses.errors import UnknownLossError
from lossd.losses.spec import LossSpec

_LONGEST_SUGGESTED = 80


@functools.lru_cache(maxsize=4096)  # bounded: names arrive from clients
def normalize_name(name: str) -> str:
    """The lookup key of a loss name: ``"Mean_Squared-Error"`` → ``"meansquarederror"``."""
    return "".join(ch for ch in name.lower() if ch not in "_- ")


class Registry:
    """The set of registered losses, keyed by canonical name and every alias."""

    def __init__(self, specs: Iterable[LossSpec] = ()) -> None:
        self._specs: dict[str, LossSpec] = {}
        self._keys: dict[str, str] = {}  # normalized name or alias -> canonical name
        self._presets: dict[str, Mapping[str, Any]] = {}  # normalized alias -> preset parameters
        for spec in specs:
            self.register(spec)

    def register(self, spec: LossSpec) -> LossSpec:
        """Add ``spec``; refuses a name or alias that already resolves to another loss."""
        for name in (spec.name, *spec.aliases):
            key = normalize_name(name)
            owner = self._keys.get(key)
            if owner is not None and owner != spec.name:
                raise ValueError(f"name {name!r} of {spec.name!r} already belongs to {owner!r}")
            self._keys[key] = spec.name
        for alias, preset in spec.presets.items():
            self._presets[normalize_name(alias)] = preset
        self._specs[spec.name] = spec
        return spec

    def get(self, name: str) -> LossSpec:
        """The spec for ``name`` or any alias; raises :class:`UnknownLossError` with suggestions."""
        canonical = self._keys.get(normalize_name(name))
        if canonical is None:
            raise UnknownLossError(name, self.suggest(name))
        return self._specs[canonical]

    def resolve(self, name: str) -> tuple[LossSpec, Mapping[str, Any]]:
        """The spec for ``name`` and the parameters its alias presets (empty for most names)."""
        spec = self.get(name)
        return spec, self._presets.get(normalize_name(name), {})

    def canonical(self, name: str) -> str | None:
        """The canonical name ``name`` resolves to, or None (never raises)."""
        return self._keys.get(normalize_name(name))

    def suggest(self, name: str, limit: int = 3) -> list[str]:
        """Canonical names of the losses whose names or aliases are closest to ``name``."""
        if len(name) > _LONGEST_SUGGESTED:  # nothing that long is close to a loss name, and difflib is quadratic
            return []
        matches = difflib.get_close_matches(normalize_name(name), list(self._keys), n=limit * 3, cutoff=0.6)
        found: list[str] = []
        for key in matches:
            canonical = self._keys[key]
            if canonical not in found:
                found.append(canonical)
        return found[:limit]

    def __iter__(self) -> Iterator[LossSpec]:
        return iter(sorted(self._specs.values(), key=lambda s: s.name))

    def __len__(self) -> int:
        return len(self._specs)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and normalize_name(name) in self._keys
