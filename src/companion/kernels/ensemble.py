r"""The linearised infinitely wide network after gradient descent: mean and variance over initialisations.

Chapter "From the theory's networks to the experiments'" compares trained networks with these
predictions. With the loss $\frac{1}{n} \sum_i (f(x_i) - y_i)^2$ and learning rate ``lr``, the
residual on the training set of the linearised network evolves as $(I - \eta \Theta)^t y$ with
$\eta = 2 \cdot \text{lr} / n$ (Lee et al. 2019). After ``t`` steps
$f_t(x) = f_0(x) + A(x) (y - f_0(X))$ with $A(x) = \Theta(x, X) \Theta^{-1} (I - (I - \eta \Theta)^t)$
and $f_0$ the Gaussian process with the NNGP kernel ``K``: over initialisations the prediction is
Gaussian with mean $A(x) y$ and variance $K(x, x) - 2 A(x) K(X, x) + A(x) K(X, X) A(x)^\top$.
:func:`neural_tangents_ensemble` computes the same with neural-tangents, the independent check.
"""

from __future__ import annotations

import numpy as np
from scipy import linalg

from companion.arch import MLPSpec
from companion.kernels.recursion import kernel, kernel_diag
from companion.kernels.reference import stax_model

__all__ = ["gd_kernel_mean", "gd_kernel_ensemble", "neural_tangents_ensemble"]


def gd_kernel_mean(x: np.ndarray, y: np.ndarray, x_test: np.ndarray, spec: MLPSpec, lr: float, steps: int) -> np.ndarray:
    r"""Expected prediction of the infinitely wide network after ``steps`` of full-batch gradient
    descent on $\operatorname{mean} (f - y)^2$ with learning rate ``lr``: $\Theta(x, X) \Theta^{-1} (I - (I - \eta \Theta)^t) y$."""
    return gd_kernel_ensemble(x, y, x_test, spec, lr, steps)[0]


def gd_kernel_ensemble(x: np.ndarray, y: np.ndarray, x_test: np.ndarray, spec: MLPSpec, lr: float | None,
                       steps: int | None, full_cov: bool = False) -> tuple[np.ndarray, np.ndarray]:
    r"""Mean and variance over initialisations of the linearised infinitely wide network at ``x_test``.

    After ``steps`` of full-batch gradient descent on $\operatorname{mean} (f - y)^2$ with learning rate ``lr``
    ($\eta = 2 \cdot \text{lr} / n$), or trained to convergence when ``steps`` is ``None``:
    $A = \Theta(x, X) \Theta^{-1} (I - (I - \eta \Theta)^t)$, mean ``A y`` and variance
    $K(x, x) - 2 A K(X, x) + A K(X, X) A^\top$ with ``K`` the NNGP kernel (Lee et al. 2019).
    With ``full_cov`` the second output is the covariance between the test points,
    $K(x, x') - A(x) K(X, x') - A(x') K(X, x) + A(x) K(X, X) A(x')^\top$, whose diagonal is that variance.
    """
    train = kernel(x, x, spec)
    cross = kernel(x_test, x, spec)
    lam, vec = linalg.eigh(train.ntk)
    if steps is None:
        if lam.min() <= 0:
            raise ValueError("the NTK Gram matrix is not positive definite; the converged network is undefined")
        filt = 1 / lam
    else:
        eta = 2 * lr / len(y)
        if eta * lam.max() >= 2:
            raise ValueError(f"gradient descent with learning rate {lr} diverges on this kernel "
                             f"(eta * lambda_max = {eta * lam.max():.2f} >= 2); lower the learning rate")
        lam = np.maximum(lam, 0.0)
        # (1 - (1 - eta lam)^t) / lam, continued by eta t at lam = 0
        with np.errstate(divide="ignore", invalid="ignore"):
            filt = np.where(lam > 1e-12, (1 - (1 - eta * lam) ** steps) / lam, eta * steps)
    a = ((cross.ntk @ vec) * filt) @ vec.T  # A(x) for every test point, (n_test, n)
    if full_cov:
        mixed = a @ cross.nngp.T
        cov = kernel(x_test, x_test, spec).nngp - mixed - mixed.T + a @ train.nngp @ a.T
        return a @ y, (cov + cov.T) / 2
    variance = kernel_diag(x_test, spec).nngp - 2 * np.sum(a * cross.nngp, axis=1) + np.sum((a @ train.nngp) * a, axis=1)
    return a @ y, np.maximum(variance, 0.0)


def neural_tangents_ensemble(x: np.ndarray, y: np.ndarray, x_test: np.ndarray, spec: MLPSpec, lr: float | None,
                             steps: int | None, full_cov: bool = False) -> tuple[np.ndarray, np.ndarray]:
    r"""The same mean and variance from neural-tangents' ``gradient_descent_mse_ensemble`` (an independent code).

    neural-tangents trains in continuous time on $\|f - y\|^2 / (2 n)$; our loss $\operatorname{mean} (f - y)^2$
    is twice that, so ``lr`` for ``steps`` steps is its time ``t = 2 lr steps`` (gradient flow: equal
    to :func:`gd_kernel_ensemble` when $\eta \lambda_\text{max}$ is small, exactly at ``steps=None``).
    ``full_cov`` as in :func:`gd_kernel_ensemble`.
    """
    import jax
    import jax.numpy as jnp

    from companion.nt import nt

    _, _, kernel_fn = stax_model(spec)
    with jax.enable_x64(True):
        predict = nt.predict.gradient_descent_mse_ensemble(kernel_fn, jnp.asarray(x), jnp.asarray(y)[:, None],
                                                           diag_reg=0.0)
        t = None if steps is None else 2 * lr * steps
        out = predict(t=t, x_test=jnp.asarray(x_test), get="ntk", compute_cov=True)
        cov = np.asarray(out.covariance)
        return np.asarray(out.mean)[:, 0], cov.copy() if full_cov else np.diagonal(cov).copy()
