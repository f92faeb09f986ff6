"""The soft-cosine similarity of the paper's Def. C.1, on which a network that starts with Linear ->
LayerNorm depends (Thm C.1; chapter "One LayerNorm bounds the kernel")."""

from __future__ import annotations

import numpy as np

from companion.kernels.inputs import as_inputs

__all__ = ["soft_cosine", "augmented_unit"]


def soft_cosine(x1: object, x2: object | None = None, sigma2: float = 0.01) -> np.ndarray:
    r"""The soft-cosine similarity $S(x, x'; \sigma^2)$ of the paper's Def. C.1, shape ``(n1, n2)``.

    .. math::

        S(x, x'; \sigma^2) = \frac{x \cdot x' / n_0 + \sigma^2}{\sqrt{(\|x\|^2 / n_0 + \sigma^2)(\|x'\|^2 / n_0 + \sigma^2)}},

    the cosine of the augmented vectors $(x / \sqrt{n_0}, \sigma)$ and $(x' / \sqrt{n_0}, \sigma)$, with
    $\sigma^2$ = ``sigma2``. By Thm C.1 the NTK of a network that starts with Linear -> LayerNorm
    depends on its inputs only through $S$
    (chapter "One LayerNorm bounds the kernel").
    """
    a = as_inputs(x1, "x1")
    b = a if x2 is None else as_inputs(x2, "x2", a.shape[1])
    if not (np.isfinite(sigma2) and sigma2 >= 0):
        raise ValueError(f"sigma2 must be a finite non-negative number, got {sigma2!r}")
    n0 = a.shape[1]
    # Unit augmented vectors (x / sqrt(n0), sigma) / norm, computed without squaring large numbers.
    ua, ub = augmented_unit(a, sigma2), augmented_unit(b, sigma2)
    return np.clip(ua @ ub.T, -1.0, 1.0)


def augmented_unit(x: np.ndarray, sigma2: float) -> np.ndarray:
    r"""Rows $(x / \sqrt{n_0}, \sigma)$ scaled to unit length: the soft-cosine is their inner product."""
    augmented = np.concatenate([x / np.sqrt(x.shape[1]), np.full((x.shape[0], 1), np.sqrt(sigma2))], axis=1)
    largest = np.max(np.abs(augmented), axis=1, keepdims=True)
    if np.any(largest == 0):
        raise ValueError("the soft-cosine of a zero input is undefined when sigma2 = 0")
    scaled = augmented / largest  # entries in [-1, 1]: the norm cannot overflow
    return scaled / np.linalg.norm(scaled, axis=1, keepdims=True)
