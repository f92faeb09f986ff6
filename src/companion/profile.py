"""The ``ci`` / ``full`` switch that sizes every experiment of the book.

One environment variable, ``COMPANION_PROFILE``, chooses between

* ``ci``: small sizes that keep every qualitative claim of a chapter true and run in minutes on
  two CPU cores (what continuous integration and a laptop use), and
* ``full``: the paper's protocol (widths, seeds, epochs), meant for a GPU.

When the variable is unset, the profile is ``full`` if JAX sees a GPU and ``ci`` otherwise.
Chapters never type sizes into cells: each experiment module keeps one frozen configuration per
profile and :func:`select` picks the active one.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TypeVar

__all__ = ["ENV_VAR", "PROFILES", "active", "select", "UnknownProfileError"]

ENV_VAR = "COMPANION_PROFILE"
PROFILES = ("ci", "full")

T = TypeVar("T")


class UnknownProfileError(ValueError):
    """Raised for a profile name other than ``ci`` or ``full``."""


def _check(name: str, source: str) -> str:
    value = name.strip().lower()
    if value not in PROFILES:
        raise UnknownProfileError(
            f"{source} is {name!r}, but the profile must be one of {', '.join(PROFILES)}; "
            f"set {ENV_VAR}=ci for the fast CPU profile or {ENV_VAR}=full for the paper's protocol."
        )
    return value


def _jax_sees_gpu() -> bool:
    import jax

    return any(device.platform in ("gpu", "cuda", "rocm") for device in jax.devices())


def active() -> str:
    """Return the active profile name: ``$COMPANION_PROFILE``, else ``full`` on a GPU, else ``ci``."""
    value = os.environ.get(ENV_VAR, "")
    if value.strip():
        return _check(value, f"${ENV_VAR}")
    return "full" if _jax_sees_gpu() else "ci"


def select(configs: Mapping[str, T], profile: str | None = None) -> T:
    """Pick the configuration of ``profile`` (default: :func:`active`) from ``{"ci": ..., "full": ...}``."""
    name = active() if profile is None else _check(profile, "the profile argument")
    missing = [p for p in PROFILES if p not in configs]
    if missing:
        raise KeyError(f"configuration has no entry for profile(s) {missing}")
    return configs[name]
