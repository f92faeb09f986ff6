r"""Chapter "Bounded outputs": the paper's Thm 3.3 measured, and Prop. 3.4 built.

* :func:`datasets` and :func:`tightness`: on several training sets and LayerNorm placements,
  the largest mean prediction $\sup_x |\E f(x)|$ found along many rays against every link of the
  chain of :mod:`companion.kernels.regression` (pointwise RKHS bound, Thm 3.3's
  $\sqrt{C / \lmin} \, \|y\|$, its $\max_i |y_i|$ form) and against the worst case over all targets.
* :func:`prop34_network`: an explicit finite network with a LayerNorm whose training loss is zero
  and whose output far away is as large as we like (the paper's Prop. 3.4 and App. I). Its first
  block is the paper's ``Linear(1 -> 4) -> LN -> ReLU`` with weights ``(eps, -eps, 0, 0)`` and biases
  ``(0, 0, 1, -1)``; the next layer computes ``relu(s - s_j)`` of the scalar $s = h_1 - h_2$, which
  the LayerNorm maps almost linearly for $|\epsilon x| \ll 1$; the read-out is the piecewise-linear
  interpolant of the data in ``s``.
* :func:`checks`: the chapter's claims on Thm 3.3 as asserts, with ``C`` derived by hand and
  ``lambda_min`` from neural-tangents' Gram matrix (the chapter's last cell and the
  fault-injection test call it).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from companion import profile
from companion.arch import MLPSpec, theory_spec
from companion.data.toy import make_1d
from companion.kernels import OutputBound, kernel, ntk_regression, output_bound
from companion.models import MLP

__all__ = [
    "Config",
    "CONFIGS",
    "config",
    "architectures",
    "datasets",
    "probe_points",
    "Tightness",
    "tightness",
    "prop34_network",
    "Prop34",
    "prop34",
    "NOTES_BOUND",
    "checks",
]

#: The notes' independent NumPy check of Thm 3.3 (20 points of sin(2x) on [-3, 3], LayerNorm first,
#: two hidden layers): ``lambda_min`` and $\sqrt{C / \lmin} \, \|y\|$, to the digits they give.
NOTES_BOUND = {"lambda_min": 2.6e-3, "bound": 107.0}


@dataclasses.dataclass(frozen=True)
class Config:
    """Sizes of the chapter's computations; one instance per profile in :data:`CONFIGS`."""

    n_1d: int
    n_nd: int
    directions: int
    radii: int
    epsilons: tuple[float, ...] = (1.0, 1e-1, 1e-2, 1e-3, 1e-4, 1e-6)
    prop_points: int = 20
    depth: int = 2
    seed: int = 0


CONFIGS = {
    "ci": Config(n_1d=20, n_nd=40, directions=64, radii=41),
    "full": Config(n_1d=100, n_nd=200, directions=512, radii=161),
}


def config(profile_name: str | None = None) -> Config:
    """The configuration of the active profile (or of ``profile_name``)."""
    return profile.select(CONFIGS, profile_name)


def architectures(cfg: Config) -> dict[str, MLPSpec]:
    """The paper's ReLU network with a LayerNorm in the first, the second, or every hidden layer."""
    base = theory_spec(depth=cfg.depth)
    specs = [base.replace(layernorm=p) for p in ("first", "second", "every")]
    return {spec.label: spec for spec in specs}


def datasets(cfg: Config) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The three 1-D toy problems and two higher-dimensional regression sets (inputs, targets)."""
    out = {}
    for target in ("sine", "linear", "quadratic"):
        data = make_1d(target, n=cfg.n_1d, seed=cfg.seed)
        out[f"{target} (1-D)"] = (data.x, data.y)
    rng = np.random.default_rng(cfg.seed)
    x2 = rng.uniform(-2, 2, size=(cfg.n_nd, 2))
    out["waves (2-D)"] = (x2, np.sin(2 * x2[:, 0]) * np.cos(x2[:, 1]))
    x9 = rng.normal(size=(cfg.n_nd, 9))
    w = rng.normal(size=9) / 3
    out["Gaussian (9-D)"] = (x9, np.tanh(x9 @ w) + 0.1 * rng.normal(size=cfg.n_nd))
    return out


def probe_points(cfg: Config, x: np.ndarray) -> np.ndarray:
    """The training inputs and points on random rays (plus the coordinate axes) at radii 0.1 to 1e8."""
    rng = np.random.default_rng(cfg.seed + 1)
    d = x.shape[1]
    directions = np.concatenate([np.eye(d), -np.eye(d), rng.normal(size=(cfg.directions, d))])
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    radii = np.logspace(-1, 8, cfg.radii)
    rays = (radii[:, None, None] * directions[None]).reshape(-1, d)
    return np.concatenate([x, rays])


@dataclasses.dataclass
class Tightness:
    """One training set and architecture: the largest prediction found and the bounds on it."""

    bound: OutputBound
    sup: float
    sup_worst_target: float

    @property
    def ratios(self) -> dict[str, float]:
        r"""$\sup |\E f|$ divided by each bound (1 means tight), and the worst case over targets."""
        b = self.bound
        return {
            "pointwise RKHS": self.sup / b.rkhs_bound,
            "Thm 3.3": self.sup / b.bound,
            "max-|y| form": self.sup / b.max_bound,
            "worst target": self.sup_worst_target / b.bound,
        }


def tightness(cfg: Config, x: np.ndarray, y: np.ndarray, spec: MLPSpec) -> Tightness:
    r"""Measure $\sup |\E f|$ over :func:`probe_points`, and the worst case over targets of norm $\|y\|$.

    For a fixed test point ``x`` the largest $|\Theta(x, X) \Theta(X, X)^{-1} y|$ over targets with
    $\|y\|_2 = r$ is $r \|\Theta(X, X)^{-1} \Theta(X, x)\|$; its supremum over the probe points is the
    best constant Thm 3.3 could have on these inputs.
    """
    n = len(x)
    both = kernel(np.concatenate([x, probe_points(cfg, x)]), x, spec).ntk  # one compiled call
    gram = (both[:n] + both[:n].T) / 2
    bound = output_bound(x, y, spec, gram=gram)
    weights = np.linalg.solve(gram, both.T)  # Theta(X, X)^-1 Theta(X, x) for every probe x
    mean = y @ weights
    worst = np.linalg.norm(weights, axis=0).max() * bound.y_norm
    return Tightness(bound, float(np.max(np.abs(mean))), float(worst))


def prop34_network(x: np.ndarray, y: np.ndarray, eps: float) -> tuple[MLPSpec, dict]:
    r"""An explicit zero-training-loss network with one LayerNorm whose far-away output grows like 1/eps.

    Architecture: ``MLPSpec(depth=2, width=max(4, n), layernorm={1}, ln_eps=0)`` in the standard
    parametrisation (``x W + b``). Layer 1 has weights ``(eps, -eps, 0, ...)`` and biases
    ``(0, 0, 1, -1, 0, ...)``, so after LayerNorm and ReLU $s = h_1 - h_2 = \epsilon x / \sigma(x)$ with
    $\sigma(x)^2 = 2 (1 + \epsilon^2 x^2) / \text{width}$: increasing in ``x``, almost linear for
    $|\epsilon x| \ll 1$, and bounded by $\sqrt{\text{width} / 2}$. Layer 2 computes ``relu(s_1 - s)`` and
    ``relu(s - s_j)`` at the training points' values $s_j$; the read-out combines them into the
    piecewise-linear interpolant of $(s_j, y_j)$. The training inputs must be 1-D and distinct.
    """
    if x.ndim != 2 or x.shape[1] != 1:
        raise ValueError("the construction is written for 1-D inputs of shape (n, 1)")
    order = np.argsort(x[:, 0])
    xs, ys = x[order, 0], np.asarray(y, dtype=np.float64)[order]
    if np.any(np.diff(xs) <= 0):
        raise ValueError("training inputs must be distinct")
    n = len(xs)
    width = max(4, n)
    spec = MLPSpec(depth=2, width=width, layernorm={1}, ln_eps=0.0, parametrisation="standard", sigma_b=0.0)
    w1 = np.zeros((1, width))
    w1[0, :2] = (eps, -eps)
    b1 = np.zeros(width)
    b1[2:4] = (1.0, -1.0)
    sigma = np.sqrt(2 * (1 + (eps * xs) ** 2) / width)
    knots = eps * xs / sigma
    slopes = np.diff(ys) / np.diff(knots)
    w2 = np.zeros((width, width))
    b2 = np.zeros(width)
    w2[:2, 0], b2[0] = (-1.0, 1.0), knots[0]  # relu(s_1 - s)
    w2[0, 1 : n], w2[1, 1 : n], b2[1:n] = 1.0, -1.0, -knots[: n - 1]  # relu(s - s_j), j < n
    w3 = np.zeros((width, 1))
    w3[0, 0] = -slopes[0]
    w3[1:n, 0] = np.concatenate([[slopes[0]], np.diff(slopes)])
    params = {
        "dense_1": {"kernel": w1, "bias": b1},
        "dense_2": {"kernel": w2, "bias": b2},
        "readout": {"kernel": w3, "bias": np.array([ys[0]])},
    }
    return spec, params


def _apply(spec: MLPSpec, params: dict, x: np.ndarray) -> np.ndarray:
    with jax.enable_x64(True):
        p = jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float64), params)
        return np.asarray(MLP(spec).apply({"params": p}, jnp.asarray(x, jnp.float64)))[:, 0]


@dataclasses.dataclass
class Prop34:
    """The construction for several ``eps``: training loss and largest output, against Thm 3.3's bound."""

    epsilons: np.ndarray
    train_mse: np.ndarray
    sup: np.ndarray
    far: np.ndarray
    grid: np.ndarray
    outputs: dict[float, np.ndarray]
    bound: OutputBound
    ntk_mean: np.ndarray

    @property
    def ntk_sup(self) -> float:
        """Largest mean prediction of the trained infinitely wide network on :attr:`grid`."""
        return float(np.max(np.abs(self.ntk_mean)))


def prop34(cfg: Config) -> Prop34:
    """Build :func:`prop34_network` on the toy sine for each ``eps``; compare with the NTK's bound."""
    data = make_1d("sine", n=cfg.prop_points, seed=cfg.seed)
    grid = np.concatenate([-np.logspace(12, -2, 281), np.logspace(-2, 12, 281)])
    mse, sup, far, outputs = [], [], [], {}
    for eps in cfg.epsilons:
        spec, params = prop34_network(data.x, data.y, eps)
        mse.append(float(np.mean((_apply(spec, params, data.x) - data.y) ** 2)))
        out = _apply(spec, params, grid[:, None])
        outputs[eps] = out
        sup.append(float(np.max(np.abs(out))))
        far.append(float(out[-1]))
    theory = theory_spec(depth=2, layernorm="first")
    bound = output_bound(data.x, data.y, theory)
    ntk_mean = ntk_regression(data.x, data.y, grid[:, None], theory).mean
    return Prop34(np.array(cfg.epsilons), np.array(mse), np.array(sup), np.array(far), grid, outputs, bound, ntk_mean)


def checks(cfg: Config | None = None) -> dict[str, float]:
    r"""Assert the chapter's claims on Thm 3.3 against independent computations; return what was measured.

    * The notes' independent check is reproduced: ``lambda_min`` within 1e-4 of 2.6e-3 and the bound
      within 1 of 107 (:data:`NOTES_BOUND`).
    * On every data set of :func:`datasets` and every architecture of :func:`architectures`: the
      constant ``C`` the book uses is the hand-derived one
      (:func:`companion.experiments.bounded_kernel.relu_constant`, finite), ``lambda_min`` is that
      of neural-tangents' Gram matrix, the largest prediction found obeys the pointwise bound
      $\sqrt{C} \|f\|_H$ and Thm 3.3's $\sqrt{C / \lmin} \, \|y\|$ computed from those independent
      values (so does the worst target of the same norm), and stays below half of it.

    Raises ``AssertionError`` naming the claim that fails.
    """
    from companion.experiments.bounded_kernel import relu_constant
    from companion.experiments.ntk_background import neural_tangents_ntk

    cfg = config() if cfg is None else cfg
    x_notes = np.linspace(-3, 3, 20)[:, None]
    notes = output_bound(x_notes, np.sin(2 * x_notes[:, 0]), theory_spec(layernorm="first"))
    assert abs(notes.lambda_min - NOTES_BOUND["lambda_min"]) < 1e-4, f"lambda_min {notes.lambda_min:.3e} is not the notes' 2.6e-3"
    assert abs(notes.bound - NOTES_BOUND["bound"]) < 1, f"the bound {notes.bound:.1f} is not the notes' 107"
    measured = {"notes_bound": notes.bound, "largest_ratio": 0.0, "C_error": 0.0, "lambda_error": 0.0}
    specs = architectures(cfg)
    for name, (x, y) in datasets(cfg).items():
        for label, spec in specs.items():
            r = tightness(cfg, x, y, spec)
            constant = relu_constant(spec.depth, spec.layernorm, spec.sigma_b)
            c_error = abs(r.bound.C / constant - 1)
            assert np.isfinite(r.bound.C) and c_error < 1e-9, f"{name}, {label}: C = {r.bound.C:.6f}, derived {constant:.6f}"
            lam = float(np.linalg.eigvalsh(neural_tangents_ntk(spec, x, x))[0])
            lam_error = abs(r.bound.lambda_min / lam - 1)
            assert lam_error < 1e-6, f"{name}, {label}: lambda_min {r.bound.lambda_min:.4e}, neural-tangents {lam:.4e}"
            bound = np.sqrt(constant / lam) * np.linalg.norm(y)
            assert r.sup <= np.sqrt(constant) * r.bound.rkhs_norm * (1 + 1e-9), f"{name}, {label}: |E f| > sqrt(C) |f|_H"
            assert r.sup_worst_target <= bound * (1 + 1e-9), f"{name}, {label}: Thm 3.3 fails for the worst target"
            assert r.sup < 0.5 * bound, f"{name}, {label}: the bound should be loose (sup / bound = {r.sup / bound:.3f})"
            measured["largest_ratio"] = max(measured["largest_ratio"], float(r.sup / bound))
            measured["C_error"] = max(measured["C_error"], float(c_error))
            measured["lambda_error"] = max(measured["lambda_error"], float(lam_error))
    return measured
