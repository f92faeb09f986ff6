r"""NTK regression on tens of thousands of training points, in float64, within one machine's memory.

:func:`companion.kernels.ntk_regression` builds the Gram matrix, a copy with the jitter added
and the Cholesky factor: three ``n x n`` matrices. At the protein chapter's ``n = 40,132`` one
float64 matrix is 12.9 GB, so :func:`large_ntk_regression` holds exactly one:

1. :func:`gram_upper` fills the upper triangle of a preallocated Fortran-ordered array block by
   block, each block one call of the public :func:`companion.kernels.kernel` (so any speed-up of
   the kernel recursion is a speed-up here);
2. the jitter is added to the diagonal in place;
3. a blocked Cholesky factorisation overwrites it in place (:func:`factorise_in_place`: LAPACK on
   blocks of ordinary size), and triangular solves give the representer weights
   $\alpha = (\Theta + \text{jitter} \cdot I)^{-1} y$;
4. predictions $\Theta(x, X) \alpha$ are accumulated block by block (no ``n_test x n`` matrix).

Cost: $n^2 / 2$ kernel evaluations and $n^3 / 3$ floating-point operations for the factor
(the latter dominates beyond a few thousand points); memory $8 n^2$ bytes plus one block.

The jitter is relative: ``relative_jitter`` times the mean of the diagonal of $\Theta$ is added. A noiseless GP (the
paper's object) has none; numerically the smallest value that factorises is used, as in
:func:`ntk_regression`. A failed factorisation destroys the matrix, so each further rung of the
ladder recomputes it: pass the ``relative_jitter`` found on a subsample to avoid that.
"""

from __future__ import annotations

import dataclasses
import resource
import sys
import time
from collections.abc import Callable, Mapping, Sequence

import numpy as np
from scipy import linalg
from scipy.linalg import lapack

from companion.arch import MLPSpec
from companion.kernels.recursion import as_inputs, check_spec, kernel, kernel_diag

__all__ = ["LargeRegression", "gram_upper", "factorise_in_place", "large_ntk_regression", "predict_blocked",
           "peak_memory_bytes", "ensemble_moments", "solve_factored"]

#: Rows and columns per kernel call when filling a Gram matrix ($2048^2$ float64: 32 MiB per block).
BLOCK = 2048

#: Relative jitters tried in order when none is given (the first is none at all).
LADDER = (0.0, 1e-12, 1e-10, 1e-8, 1e-6)


@dataclasses.dataclass(frozen=True)
class LargeRegression:
    r"""Result of :func:`large_ntk_regression`.

    ``means`` maps each name of the test sets to $\Theta(x, X) \alpha$; ``jitter`` is the absolute
    value added to the diagonal, ``relative_jitter`` the same divided by the mean diagonal;
    ``seconds`` splits the wall time into ``kernel``, ``factor`` and ``predict``.
    """

    means: dict[str, np.ndarray]
    alpha: np.ndarray
    jitter: float
    relative_jitter: float
    seconds: dict[str, float]
    n_train: int


def peak_memory_bytes() -> int:
    """Peak resident memory of this process so far, in bytes.

    On Linux the kernel's high-water mark ``VmHWM``, which starts afresh when a program starts;
    ``ru_maxrss`` (used elsewhere) can carry over the peak of the parent that started the process.
    """
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


def _blocks(n: int, block: int) -> list[tuple[int, int]]:
    return [(i, min(i + block, n)) for i in range(0, n, block)]


def gram_upper(
    x: np.ndarray,
    spec: MLPSpec,
    *,
    block_size: int = BLOCK,
    out: np.ndarray | None = None,
    which: str = "ntk",
    step: Callable[[], None] | None = None,
) -> np.ndarray:
    """The upper triangle (and diagonal) of the Gram matrix of ``x``, Fortran-ordered, float64.

    The strict lower triangle of a new array is left unset (``np.empty``): LAPACK's upper
    factorisation never reads it. ``out`` reuses an ``(n, n)`` Fortran-ordered float64 array.
    ``which`` is ``ntk`` or ``nngp``; ``step`` is called after each block (a progress bar).
    """
    check_spec(spec)
    x = as_inputs(x, "x")
    if which not in ("ntk", "nngp"):
        raise ValueError(f"which must be 'ntk' or 'nngp', got {which!r}")
    n = x.shape[0]
    if out is None:
        out = np.empty((n, n), dtype=np.float64, order="F")
    elif out.shape != (n, n) or out.dtype != np.float64 or not out.flags.f_contiguous:
        raise ValueError(f"out must be a Fortran-ordered float64 array of shape ({n}, {n})")
    spans = _blocks(n, block_size)
    for bi, (i0, i1) in enumerate(spans):
        for j0, j1 in spans[bi:]:
            cols = None if j0 == i0 else x[j0:j1]  # diagonal blocks: exactly symmetric
            out[i0:i1, j0:j1] = getattr(kernel(x[i0:i1], cols, spec, block_size=block_size), which)
            if step is not None:
                step()
    return out


def factorise_in_place(gram: np.ndarray, jitter: float, block_size: int = BLOCK) -> bool:
    r"""Add ``jitter`` to the diagonal and overwrite the upper triangle with the Cholesky factor
    $U$ (``gram`` $= U^\top U$), block by block.

    A right-looking blocked algorithm: LAPACK ``dpotrf`` on each ``block_size`` diagonal block,
    triangular solves for its row of blocks, and matrix products for the trailing blocks. One call
    of ``dpotrf`` on the whole matrix would be simpler, but OpenBLAS's threaded ``dpotrf``
    crashes (segmentation fault) on matrices this large (we saw it at ``n = 40,132``); every call
    here works on blocks of ordinary size. Returns ``False`` (the matrix is then spoilt) when the
    matrix is not numerically positive definite.
    """
    if not gram.flags.f_contiguous:
        raise ValueError("the Gram matrix must be Fortran-ordered, or LAPACK would work on a copy")
    gram.flat[:: gram.shape[0] + 1] += jitter
    spans = _blocks(gram.shape[0], block_size)
    for k, (k0, k1) in enumerate(spans):
        factor, info = lapack.dpotrf(np.asfortranarray(gram[k0:k1, k0:k1]), lower=0, clean=1)
        if info != 0:
            return False
        gram[k0:k1, k0:k1] = factor
        for q0, q1 in spans[k + 1:]:
            gram[k0:k1, q0:q1] = linalg.solve_triangular(factor, gram[k0:k1, q0:q1], trans="T", lower=False,
                                                        check_finite=False)
        for p, (p0, p1) in enumerate(spans[k + 1:], start=k + 1):
            left = gram[k0:k1, p0:p1].T
            for q0, q1 in spans[p:]:
                gram[p0:p1, q0:q1] -= left @ gram[k0:k1, q0:q1]
    return True


def solve_factored(factor: np.ndarray, y: np.ndarray, block_size: int = BLOCK) -> np.ndarray:
    r"""$(U^\top U)^{-1} y$ for the upper factor $U$ left by :func:`factorise_in_place`, block by block."""
    spans = _blocks(factor.shape[0], block_size)
    z = np.array(y, dtype=np.float64)
    for k, (k0, k1) in enumerate(spans):  # U^T z = y, forward
        for j0, j1 in spans[:k]:
            z[k0:k1] -= factor[j0:j1, k0:k1].T @ z[j0:j1]
        z[k0:k1] = linalg.solve_triangular(factor[k0:k1, k0:k1], z[k0:k1], trans="T", lower=False, check_finite=False)
    for k in range(len(spans) - 1, -1, -1):  # U alpha = z, backward
        k0, k1 = spans[k]
        for j0, j1 in spans[k + 1:]:
            z[k0:k1] -= factor[k0:k1, j0:j1] @ z[j0:j1]
        z[k0:k1] = linalg.solve_triangular(factor[k0:k1, k0:k1], z[k0:k1], lower=False, check_finite=False)
    return z


def predict_blocked(
    x_test: np.ndarray, x_train: np.ndarray, weights: np.ndarray, spec: MLPSpec, *, block_size: int = BLOCK,
    which: str = "ntk",
) -> np.ndarray:
    """``K(x_test, x_train) @ weights`` without forming the ``n_test x n_train`` matrix at once."""
    x_test = as_inputs(x_test, "x_test", x_train.shape[1])
    weights = np.asarray(weights, dtype=np.float64)
    out = np.zeros((x_test.shape[0], *weights.shape[1:]))
    for j0, j1 in _blocks(x_train.shape[0], block_size):
        for i0, i1 in _blocks(x_test.shape[0], block_size):
            out[i0:i1] += getattr(kernel(x_test[i0:i1], x_train[j0:j1], spec, block_size=block_size), which) @ weights[j0:j1]
    return out


def large_ntk_regression(
    x_train: object,
    y_train: object,
    x_tests: Mapping[str, object],
    spec: MLPSpec,
    *,
    relative_jitter: float | None = None,
    block_size: int = BLOCK,
    progress: Callable[[int], object] | None = None,
) -> LargeRegression:
    r"""$\Theta(x, X) (\Theta(X, X) + \text{jitter} \cdot I)^{-1} y$ for each test set, holding one ``n x n`` matrix.

    Same result as :func:`companion.kernels.ntk_regression` (to rounding), at any ``n`` whose
    $8 n^2$ bytes fit in memory. ``relative_jitter=None`` walks :data:`LADDER` (each failed rung
    recomputes the matrix); a number is used as given and a failure raises. ``progress(total)``
    returns a bar with ``update()`` (e.g. ``companion.progress.bar``-like); ``None`` shows nothing.
    """
    check_spec(spec)
    x = as_inputs(x_train, "x_train")
    y = np.asarray(y_train, dtype=np.float64).reshape(-1)
    if y.shape != (x.shape[0],) or not np.all(np.isfinite(y)):
        raise ValueError(f"y_train must be {x.shape[0]} finite targets to match x_train, got shape {y.shape}")
    tests = {name: as_inputs(v, f"x_tests[{name!r}]", x.shape[1]) for name, v in x_tests.items()}
    if relative_jitter is not None and not (np.isfinite(relative_jitter) and relative_jitter >= 0):
        raise ValueError(f"relative_jitter must be a finite non-negative number or None, got {relative_jitter!r}")
    n = x.shape[0]
    scale = float(np.mean(kernel_diag(x, spec).ntk))
    ladder: Sequence[float] = LADDER if relative_jitter is None else (float(relative_jitter),)
    seconds = {"kernel": 0.0, "factor": 0.0, "predict": 0.0}
    n_blocks = len(_blocks(n, block_size))
    gram = np.empty((n, n), dtype=np.float64, order="F")
    for relative in ladder:
        bar = progress(n_blocks * (n_blocks + 1) // 2) if progress is not None else None
        start = time.perf_counter()
        gram_upper(x, spec, block_size=block_size, out=gram, step=None if bar is None else lambda: bar.update())
        if bar is not None:
            bar.close()
        seconds["kernel"] += time.perf_counter() - start
        start = time.perf_counter()
        ok = factorise_in_place(gram, relative * scale, block_size)
        seconds["factor"] += time.perf_counter() - start
        if ok:
            break
    else:
        raise ValueError(
            f"the NTK Gram matrix of the {n} training inputs is not numerically positive definite even with "
            f"relative jitter {ladder[-1]:g} (repeated inputs?); remove duplicates or pass a larger relative_jitter"
        )
    alpha = solve_factored(gram, y, block_size)
    del gram
    start = time.perf_counter()
    means = {name: predict_blocked(xt, x, alpha, spec, block_size=block_size) for name, xt in tests.items()}
    seconds["predict"] = time.perf_counter() - start
    return LargeRegression(means=means, alpha=alpha, jitter=relative * scale, relative_jitter=relative,
                           seconds=seconds, n_train=n)


def ensemble_moments(
    x_train: object, y_train: object, x_test: object, spec: MLPSpec, *, relative_jitter: float = 0.0,
) -> tuple[np.ndarray, np.ndarray]:
    r"""Mean and covariance over initialisations of the infinite-width network trained to convergence.

    Lee et al. (2019, Eq. 16 at $t \to \infty$): with NNGP $K$, NTK $\Theta$ and
    $A = \Theta(X, X)^{-1} \Theta(X, x)$, the outputs at $x$ are Gaussian with mean $A^\top y$ and
    covariance $K(x, x) + A^\top K(X, X) A - A^\top K(X, x) - K(x, X) A$. Dense: for ``n`` of a few
    thousand (the same object as neural-tangents' ``gradient_descent_mse_ensemble(t=None)``).
    """
    check_spec(spec)
    x = as_inputs(x_train, "x_train")
    xt = as_inputs(x_test, "x_test", x.shape[1])
    y = np.asarray(y_train, dtype=np.float64).reshape(-1)
    train = kernel(x, None, spec)
    cross = kernel(xt, x, spec)
    test_nngp = kernel(xt, None, spec).nngp
    ntk = train.ntk
    ntk.flat[:: x.shape[0] + 1] += relative_jitter * float(np.mean(np.diag(ntk)))
    factor, info = lapack.dpotrf(np.asfortranarray(ntk), lower=0, clean=1)
    if info != 0:
        raise ValueError("the NTK Gram matrix is not numerically positive definite; pass a relative_jitter")
    a, _ = lapack.dpotrs(factor, np.ascontiguousarray(cross.ntk.T), lower=0)  # (n, n_test)
    mixed = cross.nngp @ a
    cov = test_nngp + a.T @ train.nngp @ a - mixed - mixed.T
    return a.T @ y, (cov + cov.T) / 2
