"""The argument checks of :mod:`companion.train`: data, seeds, epochs, learning rates, grouping.

Each bad argument gets one sentence that says what was given and what to give instead.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from companion.arch import MLPSpec
from companion.models import MLP, check_inputs


def _check_learning_rate(learning_rate: object) -> float:
    if isinstance(learning_rate, (bool, np.bool_)) or not (
        isinstance(learning_rate, numbers.Real) and learning_rate > 0 and math.isfinite(learning_rate)
    ):
        raise ValueError(f"learning_rate must be a positive number, got {learning_rate!r}")
    return float(learning_rate)


def _positive_int(value: object, name: str, allow_none: bool = False) -> int | None:
    """``value`` as an ``int`` if it is a positive integer (numpy integers too), else a clear error."""
    if value is None and allow_none:
        return None
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} must be a positive integer{' or None (full batch)' if allow_none else ''}, got {value!r}")
    return int(value)


def _check_inputs(module: nn.Module | None, x: jax.Array) -> None:
    """MLPs (``None``: an MLP to come) take ``(n, d)``; other modules take ``(n, ...)`` and check the rest."""
    if module is None or isinstance(module, MLP) or getattr(x, "ndim", 0) < 2:
        check_inputs(x)


def _as_model(model: MLPSpec | nn.Module) -> nn.Module:
    if isinstance(model, MLPSpec):
        return MLP(model)
    if isinstance(model, nn.Module):
        return model
    raise TypeError(f"expected an MLPSpec or a flax module, got {type(model).__name__}")


def _as_array(values: np.typing.ArrayLike, dtype: Any, what: str) -> jax.Array:
    """``values`` in ``dtype``; finite values too large for it are an error, not a silent infinity."""
    raw, limit = np.asarray(values), float(np.finfo(dtype).max)
    if raw.dtype.kind == "f" and raw.size and float(np.finfo(raw.dtype).max) > limit:
        largest = float(np.max(np.abs(raw), initial=0.0, where=np.isfinite(raw)))
        if largest > limit:
            raise ValueError(
                f"{what} reach {largest:.3g}, too large for {np.dtype(dtype).name} (largest {limit:.3g}); "
                f"rescale them or use dtype=jax.numpy.float64"
            )
    return jnp.asarray(values, dtype=dtype)


def _check_data(
    x: np.typing.ArrayLike, y: np.typing.ArrayLike, dtype: Any, module: nn.Module | None = None
) -> tuple[jax.Array, jax.Array]:
    x = _as_array(x, dtype, "inputs")
    y = _as_array(y, dtype, "targets")
    _check_inputs(module, x)
    if x.ndim >= 2 and x.shape[-1] == 0:
        raise ValueError(f"inputs have shape {tuple(x.shape)}: no features; give at least one feature per point")
    if x.ndim == 2 and y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.shape != x.shape[:-1]:
        raise ValueError(
            f"targets must have shape {x.shape[:-1]} to match {x.shape[0]} inputs, got {tuple(y.shape)}"
        )
    if x.shape[0] == 0:
        raise ValueError("cannot train on an empty data set")
    if not (bool(jnp.all(jnp.isfinite(x))) and bool(jnp.all(jnp.isfinite(y)))):
        raise ValueError("training data contain NaN or infinity; clean or drop those rows first")
    return x, y


def _check_run_arguments(seeds: Sequence[int], epochs: int, batch_size: int | None) -> tuple[tuple[int, ...], int, int | None]:
    seeds = tuple(seeds)
    bad = [s for s in seeds if isinstance(s, (bool, np.bool_)) or not isinstance(s, numbers.Integral) or not 0 <= s < 2**32]
    if bad:
        raise ValueError(f"seeds must be integers from 0 to 2**32 - 1, got {bad[0]!r}")
    seeds = tuple(int(s) for s in seeds)
    if not seeds:
        raise ValueError("give at least one seed")
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds must be distinct, got {seeds}")
    return seeds, _positive_int(epochs, "epochs"), _positive_int(batch_size, "batch_size", allow_none=True)


#: Runs per compiled program that :func:`companion.train.fit_variants` picks on a CPU: each group's
#: activations (runs x rows x width floats) should stay near the caches; the performance appendix
#: measures time per run-epoch against this number.
CPU_RUNS_PER_PROGRAM = 2


def _check_runs_per_program(runs_per_program: object, runs: int, platform: str) -> int:
    """How many runs one vmapped group trains: ``None`` picks ``CPU_RUNS_PER_PROGRAM`` on a CPU and
    all runs on an accelerator; a positive integer is used as given (capped at ``runs``)."""
    if runs_per_program is None:
        return min(runs, CPU_RUNS_PER_PROGRAM) if platform == "cpu" else runs
    if isinstance(runs_per_program, (bool, np.bool_)) or not isinstance(runs_per_program, numbers.Integral) \
            or runs_per_program < 1:
        raise ValueError(f"runs_per_program must be a positive integer or None (chosen for the device), "
                         f"got {runs_per_program!r}")
    return min(runs, int(runs_per_program))
