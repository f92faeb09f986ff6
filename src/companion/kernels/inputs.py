"""What the infinite-width kernels accept: the architecture, the inputs and their dtype.

Every entry point of :mod:`companion.kernels.recursion` checks its arguments here first, so bad input
gets one clear error before any work (chapter "Troubleshooting" lists these guarantees).
"""

from __future__ import annotations

import numpy as np

from companion.arch import MLPSpec
from companion.kernels import duals

__all__ = ["check_spec", "as_inputs", "checked_inputs", "overflow_error"]


def check_spec(spec: MLPSpec) -> None:
    """Raise a clear error unless ``spec`` describes a network these kernels cover."""
    if not isinstance(spec, MLPSpec):
        raise TypeError(f"spec must be a companion.arch.MLPSpec, got {type(spec).__name__}")
    duals.dual(spec.activation)
    # RMSNorm between a linear map and its activation *is* LayerNorm at infinite width (the mean of
    # the pre-activations across units tends to 0), so it shares these kernels.
    if spec.layernorm and spec.norm not in ("layernorm", "rmsnorm"):
        raise ValueError(
            f"the infinite-width kernels cover LayerNorm only (and RMSNorm, the same at infinite width), "
            f"not {spec.norm!r}; BatchNorm at evaluation is a fixed per-feature affine map, so use the "
            f"network without it; companion.experiments.normalisation derives DyT's kernel diagonal"
        )
    if spec.layernorm and spec.ln_affine:
        raise ValueError(
            "the infinite-width kernels cover LayerNorm without affine parameters (the paper's); "
            "use ln_affine=False"
        )
    if spec.layernorm and spec.norm_position == "post":
        raise ValueError(
            f"the infinite-width kernels cover LayerNorm between a linear map and its activation, "
            f"not {spec.label}; companion.experiments.normalisation derives its diagonal"
        )


def as_inputs(x: object, name: str = "x", n_features: int | None = None) -> np.ndarray:
    """``x`` as a finite float64 array of shape ``(n, n_features)``, or a clear ``ValueError``."""
    try:
        array = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a numeric array of shape (n_points, n_features)") from None
    if array.ndim != 2:
        raise ValueError(
            f"{name} must be a 2-D array of shape (n_points, n_features), got shape {array.shape}; "
            f"reshape 1-D inputs with x[:, None]"
        )
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise ValueError(f"{name} is empty (shape {array.shape}); it needs at least one point and one feature")
    if n_features is not None and array.shape[1] != n_features:
        raise ValueError(f"{name} has {array.shape[1]} features but the other inputs have {n_features}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} contains NaN or infinite values; the kernels need finite inputs")
    return array


def _dtype(dtype: object) -> np.dtype:
    dt = np.dtype(dtype)
    if dt not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise ValueError(f"dtype must be float32 or float64, got {dt}")
    return dt


def _check_range(x: np.ndarray, dt: np.dtype, name: str) -> None:
    largest = float(np.max(np.abs(x)))
    if largest > float(np.finfo(dt).max):
        raise ValueError(
            f"{name} has entries up to {largest:.3g}, too large for {dt.name} (largest {np.finfo(dt).max:.3g}); "
            f"use dtype=float64 or rescale the inputs"
        )


def _check_degenerate(x: np.ndarray, spec: MLPSpec) -> None:
    if spec.layernorm and spec.sigma_b == 0 and spec.ln_eps == 0 and np.any(np.all(x == 0, axis=1)):
        raise ValueError(
            "with sigma_b = 0 and no LayerNorm epsilon a zero input has zero pre-activations, which "
            "LayerNorm cannot normalise; use sigma_b > 0 (the paper's theory requires it)"
        )


def checked_inputs(x1: object, x2: object | None, spec: MLPSpec, dtype: object) -> tuple[np.ndarray, np.ndarray, np.dtype]:
    """Checked inputs of every entry point: finite 2-D arrays representable in ``dtype``."""
    check_spec(spec)
    a = as_inputs(x1, "x1" if x2 is not None else "x")
    b = a if x2 is None else as_inputs(x2, "x2", a.shape[1])
    dt = _dtype(dtype)
    for array, name in ((a, "x1"), (b, "x2")) if x2 is not None else ((a, "x"),):
        _check_range(array, dt, name)
        _check_degenerate(array, spec)
    return a, b, dt


def overflow_error(dt: np.dtype, *inputs: np.ndarray) -> ValueError:
    """The error for a kernel that overflowed ``dtype``: what grows, and what to do about it."""
    largest = max(float(np.max(np.abs(x))) for x in inputs)
    return ValueError(
        f"the kernel of these inputs overflows {dt.name} (largest {np.finfo(dt).max:.3g}): without a "
        f"LayerNorm in the first hidden layer it grows like |x|^2 (here |x| is up to {largest:.3g}); "
        + ("use dtype=float64 or rescale the inputs" if dt == np.float32 else "rescale the inputs")
    )
