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

__all__ = ["ENV_VAR", "PROFILES", "active", "select", "normalise", "UnknownProfileError"]

ENV_VAR = "COMPANION_PROFILE"
PROFILES = ("ci", "full")

T = TypeVar("T")


class UnknownProfileError(ValueError):
    """Raised for a profile name other than ``ci`` or ``full``."""


def _check(name: str, source: str) -> str:
    value = normalise(name)
    if value not in PROFILES:
        raise UnknownProfileError(
            f"{source} is {name!r}, but the profile must be one of {', '.join(PROFILES)}; "
            f"set {ENV_VAR}=ci for the fast CPU profile or {ENV_VAR}=full for the paper's protocol."
        )
    return value


def normalise(name: str) -> str:
    """A profile name as the switch reads it: ``" CI "`` -> ``"ci"`` (what ``--profile`` accepts)."""
    return name.strip().lower()


def _jax_sees_gpu() -> bool:
    import jax

    try:
        devices = jax.devices()
    except Exception as error:  # e.g. JAX_PLATFORMS=cuda on a machine without a GPU: a bare AssertionError
        platforms = os.environ.get("JAX_PLATFORMS", "")
        raise RuntimeError(
            f"JAX cannot start {'the backend $JAX_PLATFORMS=' + platforms if platforms else 'a device'} "
            f"({type(error).__name__}{': ' + str(error) if str(error) else ''}); "
            + ("unset $JAX_PLATFORMS or set it to cpu" if platforms else "run `python -m companion doctor`")
        ) from error
    return any(device.platform in ("gpu", "cuda", "rocm") for device in devices)


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
