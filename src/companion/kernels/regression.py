r"""Kernel regression with the NTK and the paper's output bound (Thm 3.3).

Chapter "Bounded outputs" uses both. An infinitely wide network trained by gradient flow on the
squared loss to convergence predicts, in expectation over its initialisation (Lee et al. 2019;
the paper's Sec. 2):

.. math::

    \E[f_\infty(x)] = \Theta(x, X) \, \Theta(X, X)^{-1} y,

the posterior mean of a noiseless Gaussian process with kernel $\Theta$. Write
$\Theta(x, x') = \psi(x) \cdot \psi(x')$ for a feature map $\psi$. Then the prediction is
$\psi(x) \cdot \beta$ with $\beta$ the minimum-norm interpolant, whose norm is the RKHS norm
$\|\beta\| = \sqrt{y^\top \Theta(X, X)^{-1} y}$, and Cauchy-Schwarz gives the chain

.. math::

    |\E f(x)| &\leq \sqrt{\Theta(x, x)} \sqrt{y^\top \Theta^{-1} y} && \text{(pointwise)} \\
    &\leq \sqrt{C} \sqrt{y^\top \Theta^{-1} y} && (C = \sup_x \Theta(x, x), \text{ Thm 3.2}) \\
    &\leq \sqrt{C / \lmin} \, \|y\|_2 && \text{(the paper's Thm 3.3)} \\
    &\leq \sqrt{C n / \lmin} \, \max_i |y_i| && \text{(its second form)}

:func:`output_bound` returns every link; the chapter measures how tight each one is.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import numpy as np
from scipy import linalg

from companion.arch import MLPSpec
from companion.kernels.recursion import as_inputs, check_spec, kernel, kernel_diag

__all__ = ["Regression", "OutputBound", "ntk_regression", "output_bound", "diagonal_sup", "diagonal_profile"]

#: Relative jitters (times the mean of the Gram diagonal) tried, in order, when the Gram matrix is
#: not numerically positive definite and no jitter was given.
JITTER_LADDER = (0.0, 1e-14, 1e-13, 1e-12, 1e-11, 1e-10, 1e-9, 1e-8)


@dataclasses.dataclass(frozen=True)
class Regression:
    r"""The infinite-time NTK prediction (:func:`ntk_regression`).

    Attributes
    ----------
    mean:
        $\Theta(x_\text{test}, X) \Theta(X, X)^{-1} y$, shape ``(n_test,)``.
    alpha:
        The representer weights $\Theta(X, X)^{-1} y$, shape ``(n_train,)``.
    jitter:
        What was added to the Gram diagonal to factorise it (0.0 if nothing).
    """

    mean: np.ndarray
    alpha: np.ndarray
    jitter: float


@dataclasses.dataclass(frozen=True)
class OutputBound:
    """The bound of Thm 3.3 and its components (:func:`output_bound`)."""

    bound: float
    C: float
    lambda_min: float
    y_norm: float
    rkhs_norm: float
    n_train: int
    y_max: float

    @property
    def rkhs_bound(self) -> float:
        r"""$\sqrt{C} \|f\|_H$: the bound before the eigenvalue step, never larger than :attr:`bound`."""
        return math.sqrt(self.C) * self.rkhs_norm

    @property
    def max_bound(self) -> float:
        r"""$\sqrt{C n / \lmin} \max_i |y_i|$: the paper's second, looser form."""
        return math.sqrt(self.C * self.n_train / self.lambda_min) * self.y_max


def _targets(y: object, n: int) -> np.ndarray:
    values = np.asarray(y, dtype=np.float64)
    if values.ndim == 2 and values.shape[1] == 1:
        values = values[:, 0]
    if values.shape != (n,):
        raise ValueError(f"targets must have shape ({n},) to match the training inputs, got {values.shape}")
    if not np.all(np.isfinite(values)):
        raise ValueError("targets contain NaN or infinite values")
    return values


def _cholesky(gram: np.ndarray, jitter: float | None) -> tuple[tuple[np.ndarray, bool], float]:
    scale = float(np.mean(np.diag(gram)))
    ladder = JITTER_LADDER if jitter is None else (None,)
    for relative in ladder:
        used = float(jitter) if relative is None else relative * scale
        try:
            return linalg.cho_factor(gram + used * np.eye(len(gram)), lower=True), used
        except linalg.LinAlgError:
            continue
    raise ValueError(
        "the NTK Gram matrix of the training inputs is numerically singular (are some inputs "
        f"repeated?) even with jitter {used:.3g}; remove duplicates or pass a larger jitter"
    )


def ntk_regression(
    x_train: object,
    y_train: object,
    x_test: object,
    spec: MLPSpec,
    *,
    jitter: float | None = None,
    block_size: int | None = None,
) -> Regression:
    r"""The infinite-time mean prediction $\Theta(x, X) \Theta(X, X)^{-1} y$ of the network ``spec``.

    Float64 throughout, Cholesky factorisation of the Gram matrix. ``jitter=None`` adds nothing
    unless the factorisation fails, then the smallest of :data:`JITTER_LADDER` (relative to the
    mean diagonal) that works; the value used is returned in :attr:`Regression.jitter`. A number
    is added as given.
    """
    check_spec(spec)
    xa = as_inputs(x_train, "x_train")
    xt = as_inputs(x_test, "x_test", xa.shape[1])
    y = _targets(y_train, xa.shape[0])
    if jitter is not None and not (np.isfinite(jitter) and jitter >= 0):
        raise ValueError(f"jitter must be a finite non-negative number or None, got {jitter!r}")
    # One kernel call for the Gram matrix and the test rows (one compiled program, not two).
    n = xa.shape[0]
    both = kernel(np.concatenate([xa, xt]), xa, spec, block_size=block_size).ntk
    gram = (both[:n] + both[:n].T) / 2
    factor, used = _cholesky(gram, jitter)
    alpha = linalg.cho_solve(factor, y)
    return Regression(mean=both[n:] @ alpha, alpha=alpha, jitter=used)


#: Grid of $r = \|x\|^2 / n_0$ on which :func:`diagonal_profile` evaluates the diagonal.
PROFILE_GRID = np.concatenate([[0.0], np.logspace(-12, 40, 1041)])


def diagonal_profile(spec: MLPSpec, r: np.ndarray = PROFILE_GRID) -> np.ndarray:
    r"""$\Theta(x, x)$ as a function of $r = \|x\|^2 / n_0$ (it depends on $x$ only through $r$)."""
    return kernel_diag(np.sqrt(np.asarray(r, dtype=np.float64))[:, None], spec).ntk


@functools.lru_cache(maxsize=256)
def diagonal_sup(spec: MLPSpec) -> float:
    r"""$C = \sup_x \Theta(x, x)$ (Thm 3.2): ``inf`` without LayerNorm, else a 1-D maximisation.

    The diagonal depends on $x$ only through $r = \|x\|^2 / n_0$, so $C$ is the maximum of a
    function of $r \geq 0$: evaluated at $r = 0$ and on a grid of 20 points per decade from
    $10^{-12}$ to $10^{40}$ (:func:`diagonal_profile`), then on two successively finer grids of the same
    size around the best point (the maximum is smooth there, so this is accurate to rounding).
    Without LayerNorm the diagonal grows without bound (chapter "Explosion without LayerNorm") and
    $C = \infty$; so it is when the diagonal still grows over the grid's last decade, as for
    0-homogeneous activations with a LayerNorm after the first layer (chapter "Beyond ReLU").
    Results are cached per ``spec``.
    """
    check_spec(spec)
    if not spec.layernorm:
        return math.inf
    r = PROFILE_GRID
    diag = diagonal_profile(spec)
    best = int(np.argmax(diag))
    if best == len(r) - 1 and diag[-1] > diag[-21] * (1 + 1e-9):
        return math.inf  # still growing at |x|^2 / n0 = 1e40: unbounded (e.g. tanh, later LayerNorm)
    value = float(diag[best])
    for _ in range(2):
        if best in (0, len(r) - 1):
            break
        lo = r[best - 1] if best > 1 else r[1] / 10
        r = np.concatenate([[0.0], np.geomspace(lo, r[best + 1], len(PROFILE_GRID) - 1)])
        diag = diagonal_profile(spec, r)
        best = int(np.argmax(diag))
        value = max(value, float(diag[best]))
    return value


def output_bound(
    x_train: object,
    y_train: object,
    spec: MLPSpec,
    *,
    C: float | None = None,
    gram: np.ndarray | None = None,
) -> OutputBound:
    r"""The bound $\sup_x |\E f(x)| \leq \sqrt{C / \lmin} \, \|y\|_2$ of Thm 3.3, with its components.

    ``C`` defaults to :func:`diagonal_sup` (the smallest valid constant); ``lambda_min`` is the
    smallest eigenvalue $\lmin$ of $\Theta(X, X)$. Without LayerNorm $C$ and the bound are infinite.
    Pass ``gram`` (the NTK Gram matrix of ``x_train``) if it is already computed.
    """
    check_spec(spec)
    xa = as_inputs(x_train, "x_train")
    y = _targets(y_train, xa.shape[0])
    if gram is None:
        gram = kernel(xa, None, spec).ntk
    elif np.shape(gram) != (xa.shape[0], xa.shape[0]):
        raise ValueError(f"gram must have shape ({xa.shape[0]}, {xa.shape[0]}), got {np.shape(gram)}")
    eigenvalues, vectors = np.linalg.eigh(gram)
    lam = float(eigenvalues[0])
    if lam <= len(y) * np.finfo(np.float64).eps * eigenvalues[-1]:
        raise ValueError(
            f"the NTK Gram matrix is not positive definite (smallest eigenvalue {lam:.3g}; "
            "Assumption 3.3 fails, e.g. repeated inputs or sigma_b = 0)"
        )
    rkhs = float(np.sqrt(np.sum((vectors.T @ y) ** 2 / eigenvalues)))
    constant = diagonal_sup(spec) if C is None else float(C)
    return OutputBound(
        bound=math.sqrt(constant / lam) * float(np.linalg.norm(y)),
        C=constant,
        lambda_min=lam,
        y_norm=float(np.linalg.norm(y)),
        rkhs_norm=rkhs,
        n_train=xa.shape[0],
        y_max=float(np.max(np.abs(y))),
    )
