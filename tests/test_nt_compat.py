"""companion.nt: neural-tangents imports on the pinned JAX, computes correct kernels, no TensorFlow.

It is also the independent reference of :func:`companion.kernels.empirical_ntk_fn`, the book's own
empirical NTK (JAX transforms only), which must not need neural-tangents at all.
"""

from __future__ import annotations

import subprocess
import sys

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from companion import nt as compat
from companion.arch import theory_spec
from companion.kernels import empirical_ntk, empirical_ntk_fn
from companion.models import MLP
from companion.nt import nt, stax


def test_import_without_tensorflow() -> None:
    assert nt.__version__ == compat.NT_VERSION_TESTED
    assert "tensorflow" not in sys.modules
    # Only names JAX actually lacks are added, and every added name now resolves.
    for dotted in compat.patched_names:
        module, _, name = dotted.rpartition(".")
        assert getattr(sys.modules[module], name) is not None


def test_shim_leaves_existing_names_alone() -> None:
    # jax.core.ShapedArray still exists publicly on the pinned JAX: it must not be replaced.
    assert "jax.core.ShapedArray" not in compat.patched_names
    from jax._src.core import ShapedArray

    assert jax.core.ShapedArray is ShapedArray


def _relu_expectations(cov: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """E[relu(u) relu(v)] and E[relu'(u) relu'(v)] for centred Gaussians with covariance ``cov``.

    The arc-cosine formulas (Cho and Saul 2009) with cos(theta) the correlation.
    """
    scale = np.sqrt(np.outer(np.diag(cov), np.diag(cov)))
    theta = np.arccos(np.clip(cov / scale, -1, 1))
    return (
        scale * (np.sin(theta) + (np.pi - theta) * np.cos(theta)) / (2 * np.pi),
        (np.pi - theta) / (2 * np.pi),
    )


def test_layernorm_after_dense_matches_hand_computation() -> None:
    w1, b1, w2, b2, eps = 1.5, 0.3, 1.0, 0.2, 1e-12
    _, _, kernel_fn = stax.serial(
        stax.Dense(1, W_std=w1, b_std=b1), stax.LayerNorm(eps=eps), stax.Relu(), stax.Dense(1, W_std=w2, b_std=b2)
    )
    x = np.array([[1.0, 2.0], [-0.5, 3.0], [0.1, 0.1], [-4.0, -1.0]])
    with jax.enable_x64(True):
        k = kernel_fn(jnp.asarray(x, jnp.float64), None, ("nngp", "ntk"))
        nngp, ntk = np.asarray(k.nngp), np.asarray(k.ntk)
    # By hand: first-layer covariance q; LayerNorm divides by sqrt(q + eps), so its output has
    # covariance rho = q / sqrt((q + eps)(q' + eps)) (the correlation, up to eps); ReLU gives the
    # arc-cosine expectations; the read-out adds its own terms.
    q = w1**2 * x @ x.T / x.shape[1] + b1**2
    rho = q / np.sqrt(np.outer(np.diag(q) + eps, np.diag(q) + eps))
    e_phi, e_dphi = _relu_expectations(rho)
    expected_nngp = w2**2 * e_phi + b2**2
    # NTK of the LayerNorm output is rho (the first layer's NTK q, divided by the two std's).
    expected_ntk = expected_nngp + w2**2 * e_dphi * rho
    np.testing.assert_allclose(nngp, expected_nngp, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(ntk, expected_ntk, rtol=1e-10, atol=1e-12)
    # The diagonal does not depend on the input: w2^2 / 2 + b2^2 + w2^2 / 2 (up to eps / q).
    np.testing.assert_allclose(np.diag(ntk), w2**2 + b2**2, rtol=1e-10)


class _TinyMLP(nn.Module):
    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        h = nn.relu(nn.Dense(16)(x))
        h = nn.LayerNorm(use_bias=False, use_scale=False)(h)
        return nn.Dense(1)(h)


@pytest.mark.parametrize("implementation", [1, 2, 3])
def test_empirical_ntk_runs_on_a_flax_model(implementation: int) -> None:
    if implementation == 3 and jax.__version_info__ >= (0, 10):
        pytest.skip("neural-tangents' structured derivatives (implementation 3) break on jax 0.10 and later; "
                    "the book computes empirical NTKs with companion.kernels.empirical_ntk_fn instead")
    model = _TinyMLP()
    x = jax.random.normal(jax.random.key(0), (5, 3))
    params = model.init(jax.random.key(1), x)

    def f(p: dict, inputs: jax.Array) -> jax.Array:
        return model.apply(p, inputs)

    ntk_fn = nt.empirical_ntk_fn(f, trace_axes=(-1,), implementation=implementation)
    ntk = np.asarray(ntk_fn(x, None, params))
    # Reference: the Gram matrix of per-example parameter gradients.
    grads = jax.vmap(lambda xi: jax.grad(lambda p: f(p, xi[None])[0, 0])(params))(x)
    flat = np.concatenate([np.asarray(g).reshape(x.shape[0], -1) for g in jax.tree_util.tree_leaves(grads)], axis=1)
    np.testing.assert_allclose(ntk, flat @ flat.T, rtol=2e-4, atol=1e-5)


@pytest.mark.parametrize(
    "spec",
    [
        theory_spec(depth=2, layernorm=(1,)).replace(width=32),
        theory_spec(depth=3, activation="gelu", layernorm=(2,)).replace(width=16),
        theory_spec(depth=2, activation="leaky_relu").replace(width=24, parametrisation="standard"),
    ],
    ids=lambda spec: f"{spec.activation}-{spec.label}-{spec.parametrisation}",
)
def test_our_empirical_ntk_equals_neural_tangents_in_float64(spec) -> None:
    rng = np.random.default_rng(3)
    x1, x2 = rng.normal(size=(6, 1)) * 10, rng.normal(size=(4, 1))
    ours = empirical_ntk(x1, x2, spec, seeds=[0, 7])
    model = MLP(spec)

    def f(p: dict, inputs: jax.Array) -> jax.Array:
        return model.apply({"params": p}, inputs)

    # Implementation 3 (structured derivatives) is what the book used before; it breaks on jax 0.10+.
    implementations = [1, 2, 3] if jax.__version_info__ < (0, 10) else [1, 2]
    with jax.enable_x64(True):
        for i, seed in enumerate([0, 7]):
            params = model.init(jax.random.key(seed), jnp.asarray(x1[:1]))["params"]
            for implementation in implementations:
                ntk_fn = nt.empirical_ntk_fn(f, trace_axes=(-1,), vmap_axes=0, implementation=implementation)
                theirs = np.asarray(ntk_fn(jnp.asarray(x1), jnp.asarray(x2), params))
                np.testing.assert_allclose(ours[i], theirs, rtol=1e-10, atol=0, err_msg=f"implementation {implementation}")


class _ThreeOutputs(nn.Module):
    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        return nn.Dense(3)(jnp.tanh(nn.Dense(8)(x)))


def test_empirical_ntk_fn_traces_outputs_and_gives_the_diagonal() -> None:
    model = _ThreeOutputs()
    with jax.enable_x64(True):
        x = jax.random.normal(jax.random.key(0), (5, 2), jnp.float64)
        params = jax.tree_util.tree_map(lambda a: a.astype(jnp.float64), model.init(jax.random.key(1), x))

        def f(p: dict, inputs: jax.Array) -> jax.Array:
            return model.apply(p, inputs)

        ours = np.asarray(jax.jit(empirical_ntk_fn(f))(x, None, params))
        diagonal = np.asarray(empirical_ntk_fn(f, diagonal=True)(x, None, params))
        theirs = np.asarray(nt.empirical_ntk_fn(f, trace_axes=(-1,), vmap_axes=0)(x, None, params))
        with pytest.raises(ValueError, match="pass x2=None"):
            empirical_ntk_fn(f, diagonal=True)(x, x, params)
    np.testing.assert_allclose(ours, theirs, rtol=1e-10, atol=0)
    np.testing.assert_allclose(diagonal, np.diag(theirs), rtol=1e-10, atol=0)


def test_the_books_empirical_ntk_does_not_need_neural_tangents() -> None:
    # With neural-tangents unimportable, companion.kernels still computes the empirical NTK.
    code = (
        "import sys; sys.modules['neural_tangents'] = None\n"
        "import numpy as np\n"
        "from companion.arch import theory_spec\n"
        "from companion.kernels import empirical_ntk\n"
        "k = empirical_ntk(np.array([[1.0], [-2.0]]), None, theory_spec(depth=2).replace(width=8))\n"
        "assert k.shape == (2, 2) and np.all(np.isfinite(k)), k\n"
        "assert 'neural_tangents' not in [m for m in sys.modules if sys.modules[m] is not None]\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]


def test_self_check_runs_every_path_the_book_uses() -> None:
    assert "agree" in compat.nt_self_check()


def test_tensorflow_bridge_raises_a_clear_error() -> None:
    with pytest.raises(ImportError, match="TensorFlow"):
        nt.experimental.empirical_ntk_fn_tf(lambda x: x)


def test_missing_neural_tangents_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "neural_tangents" else real(name, *a)
    )
    with pytest.raises(ImportError, match=r"pip install --no-deps neural-tangents==0\.6\.5"):
        compat._import_neural_tangents()


def test_unrecoverable_name_gives_pin_advice() -> None:
    with pytest.raises(ImportError, match="jax==0.9.2"):
        compat._fallback("jax.core", "something_removed")
