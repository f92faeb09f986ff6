r"""Gaussian expectations of the activations: the one nonlinear step of the kernel recursion.

For a centred Gaussian pair $(u, v)$ with standard deviations $s_1, s_2$ and correlation $\rho$
each function here returns

.. math::

    T &= \E[\phi(u) \phi(v)] \quad \text{(feeds the NNGP kernel)} \\
    \dot T &= \E[\phi'(u) \phi'(v)] \quad \text{(feeds the NTK)}

(the paper's Lemma E.2 and Prop. E.2, without its constant $c_\phi$, which the book puts in the
weight scale ``sigma_w``; chapter "Neural tangent kernels"). Inputs are the standard deviations and
the correlation, not the covariances, so nothing squares a large number: the formulas stay finite
for standard deviations from 0 to $10^{150}$ in float64 and to $10^{15}$ in float32.

Methods and accuracy (float64):

* ReLU and Leaky ReLU: the arc-cosine kernels (Cho and Saul 2009), closed form, with
  $\theta = \arccos \rho$ (computed by :func:`arccos`, to 2 ulp in float64); exact up to rounding.
* GELU $x \Phi(x)$: closed form (Tsuchida et al. 2021), rewritten in the bounded quantities
  $r = s^2 / (1 + s^2)$; exact up to rounding.
* erf: closed form (Williams 1997); exact up to rounding.
* SiLU and tanh: no closed form exists. Both are averages of GELU and erf over a scale mixture
  (:mod:`companion.kernels.scale_mixture`), integrated with a 20-node Gauss rule: absolute error
  below about $10^{-12} s_1 s_2$ ($10^{-12}$ for tanh) at every scale; the tests check it against
  adaptive quadrature.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from companion.arch import LEAKY_RELU_SLOPE
from companion.kernels.scale_mixture import DEFAULT_NODES, kolmogorov_rule

__all__ = ["DUALS", "Dual", "dual", "arccos", "relu", "leaky_relu", "gelu", "erf", "silu", "tanh"]

Dual = Callable[[jax.Array, jax.Array, jax.Array], tuple[jax.Array, jax.Array]]


def _asin_correction(degree: int) -> np.ndarray:
    r"""Chebyshev coefficients, on $t \in [0, 1/4]$, of $h(t) = (\arcsin(\sqrt t) / \sqrt t - 1) / t$.

    Interpolated once at import in float64 from NumPy's ``arcsin`` (a series where $t < 10^{-4}$,
    whose first omitted term is below $10^{-17}$). $\arcsin\sqrt t / \sqrt t$ is analytic on the disc
    $|t| < 1$, so the coefficients fall by a factor of about 14 per degree.
    """
    from numpy.polynomial import chebyshev

    def h(u: np.ndarray) -> np.ndarray:
        t = (u + 1) / 8
        root = np.sqrt(t)
        series = 1 / 6 + 3 * t / 40 + 15 * t**2 / 336 + 105 * t**3 / 3456
        with np.errstate(divide="ignore", invalid="ignore"):
            exact = (np.arcsin(root) / root - 1) / t
        return np.where(t < 1e-4, series, exact)

    return chebyshev.chebinterpolate(h, degree)


#: Degree of the ``asin`` correction per dtype: the smallest that reaches the dtype's rounding
#: (2 ulp in float64, 1.3 ulp in float32 against NumPy's float64 ``arccos``; tests/test_kernels.py).
_ASIN_DEGREE = {np.dtype(np.float64): 12, np.dtype(np.float32): 5}
_ASIN_COEFFICIENTS = {dt: _asin_correction(degree).astype(dt) for dt, degree in _ASIN_DEGREE.items()}


def arccos(rho: jax.Array) -> jax.Array:
    r"""$\arccos\rho$ from elementwise arithmetic and one square root, which XLA vectorises.

    On a CPU, XLA's own ``arccos`` and ``arctan2`` take about three times as long in float64 and five
    times in float32, and the arc-cosine duals spend most of the kernel recursion's time here.
    With $a = |\rho|$: for $a \le 1/2$,
    $\arccos a = \pi/2 - \arcsin a$; otherwise $\arccos a = 2 \arcsin\sqrt{(1 - a)/2}$ (where
    $1 - a$ is exact, so small angles keep their relative accuracy); and
    $\arccos(-a) = \pi - \arccos a$. In both cases $\arcsin s = s + s\,t\,h(t)$ with $t = s^2 \le 1/4$
    and $h$ a Chebyshev interpolant of degree 12 (float64) or 5 (float32), computed once at import
    from NumPy's ``arcsin``. Other dtypes use ``jnp.arccos``.
    """
    coefficients = _ASIN_COEFFICIENTS.get(np.dtype(rho.dtype))
    if coefficients is None:
        return jnp.arccos(rho)
    a = jnp.abs(rho)
    near_zero = a <= 0.5
    t = jnp.where(near_zero, a * a, (1 - a) / 2)
    s = jnp.where(near_zero, a, jnp.sqrt(t))
    u = 8 * t - 1  # [0, 1/4] -> [-1, 1]
    b1, b2 = jnp.zeros_like(u), jnp.zeros_like(u)
    for c in coefficients[:0:-1]:  # Clenshaw's recurrence
        b1, b2 = 2 * u * b1 - b2 + c, b1
    asin_s = s + s * (t * (u * b1 - b2 + coefficients[0]))
    theta = jnp.where(near_zero, np.pi / 2 - asin_s, 2 * asin_s)
    return jnp.where(rho >= 0, theta, np.pi - theta)


def _angle(rho: jax.Array) -> tuple[jax.Array, jax.Array]:
    r"""$\theta = \arccos \rho$ (:func:`arccos`) and $\sin \theta = \sqrt{(1 - \rho)(1 + \rho)}$."""
    sin = jnp.sqrt(jnp.maximum((1 - rho) * (1 + rho), 0.0))
    return arccos(rho), sin


def abrelu(slope_neg: float, slope_pos: float) -> Dual:
    r"""$\phi(x) = b \max(x, 0) + a \min(x, 0)$ with $a$ = ``slope_neg``, $b$ = ``slope_pos``: the
    arc-cosine kernel of degree 1,

    .. math::

        T &= s_1 s_2 \, [(a - b)^2 \sin \theta + ((a^2 + b^2) \pi - (a - b)^2 \theta) \rho] / (2 \pi) \\
        \dot T &= (a^2 + b^2) / 2 - (a - b)^2 \theta / (2 \pi)
    """
    a, b = float(slope_neg), float(slope_pos)
    mixed = (a - b) ** 2 / (2 * np.pi)
    even = (a**2 + b**2) / 2

    def fn(s1: jax.Array, s2: jax.Array, rho: jax.Array) -> tuple[jax.Array, jax.Array]:
        theta, sin = _angle(rho)
        tdot = even - mixed * theta
        return s1 * s2 * (mixed * sin + tdot * rho), tdot

    return fn


relu = abrelu(0.0, 1.0)
relu.__doc__ = r"ReLU: $T = s_1 s_2 (\sin t + (\pi - t) \cos t) / (2 \pi)$, $\dot T = (\pi - t) / (2 \pi)$, $\cos t = \rho$."
leaky_relu = abrelu(LEAKY_RELU_SLOPE, 1.0)
leaky_relu.__doc__ = f"Leaky ReLU with negative slope {LEAKY_RELU_SLOPE} (see :func:`abrelu`)."


def gelu(s1: jax.Array, s2: jax.Array, rho: jax.Array) -> tuple[jax.Array, jax.Array]:
    r"""GELU $\phi(x) = x \Phi(x)$.

    With $a = s_1^2$, $b = s_2^2$, $c = \rho s_1 s_2$, $P = (1 + a)(1 + b)$, $\delta^2 = P - c^2$:

    .. math::

        T &= c / 4 + c \arcsin(c / \sqrt{P}) / (2 \pi) + (c^2 + a b \delta^2) / (2 \pi P \delta) \\
        \dot T &= 1/4 + \arcsin(c / \sqrt{P}) / (2 \pi) + c \, (1 / \delta^2 + 1 / (1 + a) + 1 / (1 + b)) / (2 \pi \delta)

    Evaluated through $\hat c = c / \sqrt{P}$ and $\hat d = \delta / \sqrt{P}$, both in $[0, 1]$.
    """
    p1, p2 = 1 + s1 * s1, 1 + s2 * s2
    i1, i2 = 1 / p1, 1 / p2
    r1, r2 = s1 * s1 * i1, s2 * s2 * i2
    rr = jnp.sqrt(r1 * r2)
    chat = rho * rr
    # 1 - chat^2 = (1 - r1 r2) + r1 r2 (1 - rho^2), and 1 - r1 r2 = 1/(p1 p2) + r1/p2 + r2/p1 > 0.
    dhat2 = i1 * i2 + r1 * i2 + r2 * i1 + rr * rr * (1 - rho) * (1 + rho)
    dhat = jnp.sqrt(dhat2)
    root = jnp.sqrt(p1) * jnp.sqrt(p2)
    # arcsin(chat) as arctan2(chat, dhat): accurate even when chat rounds to 1 (large s, rho = 1).
    angle = jnp.arctan2(chat, dhat)
    c = rho * s1 * s2
    t = c / 4 + c * angle / (2 * np.pi) + (chat * chat / (root * dhat) + r1 * r2 * root * dhat) / (2 * np.pi)
    tdot = 0.25 + angle / (2 * np.pi) + chat / (2 * np.pi * dhat) * (i1 * i2 / dhat2 + i1 + i2)
    return t, tdot


def erf(s1: jax.Array, s2: jax.Array, rho: jax.Array) -> tuple[jax.Array, jax.Array]:
    r"""erf: $T = (2/\pi) \arcsin(2c / \sqrt{e_1 e_2})$, $\dot T = (4/\pi) / \sqrt{e_1 e_2 - 4 c^2}$, $e_i = 1 + 2 s_i^2$."""
    e1, e2 = 1 + 2 * s1 * s1, 1 + 2 * s2 * s2
    i1, i2 = 1 / e1, 1 / e2
    r1, r2 = 2 * s1 * s1 * i1, 2 * s2 * s2 * i2
    rr = jnp.sqrt(r1 * r2)
    chat = rho * rr
    dhat2 = i1 * i2 + r1 * i2 + r2 * i1 + rr * rr * (1 - rho) * (1 + rho)
    t = (2 / np.pi) * jnp.arctan2(chat, jnp.sqrt(dhat2))
    tdot = (4 / np.pi) / (jnp.sqrt(e1) * jnp.sqrt(e2) * jnp.sqrt(dhat2))
    return t, tdot


def _mixture(base: Dual, scale: float, nodes: int) -> Dual:
    r"""$\phi(x) = \E_K[m(K) \psi(x / (a K))]$ with $a$ = ``scale``, $\psi$ the activation of ``base``.

    For SiLU ($\psi$ = GELU, $a = 2$, $m(K) = 2K$) and tanh ($\psi$ = erf, $a = \sqrt{2}$, $m = 1$):
    $T = \sum_{ij} w_i w_j m_i m_j T_\psi(s_1 / (a k_i), s_2 / (a k_j), \rho)$
    and $\dot T = \sum_{ij} w_i w_j m_i m_j \dot T_\psi(\dots) / (a^2 k_i k_j)$.
    """
    k, w = kolmogorov_rule(nodes)
    silu_like = base is gelu

    def fn(s1: jax.Array, s2: jax.Array, rho: jax.Array) -> tuple[jax.Array, jax.Array]:
        dtype = jnp.result_type(s1, s2, rho)
        kk, ww = jnp.asarray(k, dtype), jnp.asarray(w, dtype)
        out_mult = scale * kk if silu_like else jnp.ones_like(kk)
        deriv_mult = out_mult / (scale * kk)
        t1, t2, r = (jnp.asarray(v, dtype)[..., None] for v in (s1, s2, rho))
        s2_scaled = t2 / (scale * kk)

        def body(carry, node):
            ki, wi, mi, di = node
            t, tdot = base(t1 / (scale * ki), s2_scaled, r)
            carry_t, carry_d = carry
            return (carry_t + wi * mi * (t * (ww * out_mult)).sum(-1),
                    carry_d + wi * di * (tdot * (ww * deriv_mult)).sum(-1)), None

        shape = jnp.broadcast_shapes(jnp.shape(s1), jnp.shape(s2), jnp.shape(rho))
        zero = jnp.zeros(shape, dtype)
        (t, tdot), _ = jax.lax.scan(body, (zero, zero), (kk, ww, out_mult, deriv_mult))
        return t, tdot

    fn.is_quadrature = True  # type: ignore[attr-defined]
    return fn


silu = _mixture(gelu, 2.0, DEFAULT_NODES)
silu.__doc__ = r"SiLU/Swish $x \operatorname{sigmoid}(x)$: average of GELU kernels over the Kolmogorov scale mixture."
tanh = _mixture(erf, float(np.sqrt(2.0)), DEFAULT_NODES)
tanh.__doc__ = "tanh: average of erf kernels over the Kolmogorov scale mixture."

#: The activations the kernels support, by :attr:`companion.arch.MLPSpec.activation` name.
DUALS: dict[str, Dual] = {
    "relu": relu,
    "leaky_relu": leaky_relu,
    "gelu": gelu,
    "silu": silu,
    "tanh": tanh,
    "erf": erf,
}


def dual(activation: str) -> Dual:
    r"""The Gaussian expectations $(T, \dot T)$ of ``activation`` (a clear error for unknown names)."""
    if activation not in DUALS:
        raise ValueError(
            f"no infinite-width kernel for activation {activation!r}; the kernels support "
            f"{', '.join(DUALS)}"
        )
    return DUALS[activation]
