"""Normalisation layers (LayerNorm, RMSNorm, DyT) and their placement in the MLP."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from companion import normalisation
from companion.arch import MLPSpec
from companion.models import MLP

Z = jax.random.normal(jax.random.key(0), (5, 256)) * 3.0 + 1.5


def _apply(layer, z=Z):
    params = layer.init(jax.random.key(1), z)
    return layer.apply(params, z), params.get("params", {})


def test_layernorm_centres_and_scales() -> None:
    out, params = _apply(normalisation.make("layernorm", eps=0.0))
    np.testing.assert_allclose(out.mean(-1), 0.0, atol=1e-5)
    np.testing.assert_allclose(out.var(-1), 1.0, rtol=1e-4)
    assert params == {}


def test_rmsnorm_scales_without_centring() -> None:
    out, params = _apply(normalisation.make("rmsnorm", eps=0.0))
    np.testing.assert_allclose(jnp.mean(out**2, -1), 1.0, rtol=1e-5)
    assert np.all(np.abs(out.mean(-1)) > 0.1), "RMSNorm must keep the mean (it does not centre)"
    np.testing.assert_allclose(out, Z / jnp.sqrt(jnp.mean(Z**2, -1, keepdims=True)), rtol=1e-5)
    assert params == {}
    _, affine = _apply(normalisation.make("rmsnorm", affine=True))
    assert set(affine) == {"scale"} and affine["scale"].shape == (256,)


def test_rmsnorm_equals_layernorm_on_centred_inputs() -> None:
    centred = Z - Z.mean(-1, keepdims=True)
    rms, _ = _apply(normalisation.make("rmsnorm", eps=0.0), centred)
    ln, _ = _apply(normalisation.make("layernorm", eps=0.0), centred)
    np.testing.assert_allclose(rms, ln, atol=1e-5)


def test_dyt_is_a_bounded_scaled_tanh() -> None:
    out, params = _apply(normalisation.make("dyt"))
    assert set(params) == {"alpha"} and float(params["alpha"]) == normalisation.DYT_ALPHA0
    np.testing.assert_allclose(out, jnp.tanh(normalisation.DYT_ALPHA0 * Z), rtol=1e-6)
    huge, _ = _apply(normalisation.make("dyt"), 1e6 * Z)
    assert float(jnp.max(jnp.abs(huge))) <= 1.0
    affine = normalisation.make("dyt", affine=True)
    p = affine.init(jax.random.key(0), Z)
    assert set(p["params"]) == {"alpha", "scale", "bias"}
    p = jax.tree_util.tree_map(lambda v: v, p)
    p["params"]["scale"] = 2.0 * jnp.ones(256)
    p["params"]["bias"] = jnp.ones(256)
    np.testing.assert_allclose(affine.apply(p, Z), 2.0 * jnp.tanh(0.5 * Z) + 1.0, rtol=1e-6)


def test_unknown_normalisation_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="unknown normalisation 'groupnorm'"):
        normalisation.make("groupnorm")
    with pytest.raises(ValueError, match="batch statistics"):
        normalisation.make("batchnorm")
    with pytest.raises(ValueError, match="unknown normalisation"):
        MLPSpec(norm="groupnorm")
    with pytest.raises(ValueError, match="choose 'pre'"):
        MLPSpec(norm_position="middle")


def test_labels_name_the_normalisation_and_its_position() -> None:
    assert MLPSpec(layernorm="first").label == "LN first"
    assert MLPSpec(layernorm="first", norm="rmsnorm").label == "RMSNorm first"
    assert MLPSpec(layernorm="every", norm="dyt").label == "DyT every"
    assert MLPSpec(layernorm="first", norm_position="post").label == "LN first after act."
    assert MLPSpec(norm="dyt").label == "no LN"


@pytest.mark.parametrize("norm", normalisation.NORM_NAMES)
def test_mlp_parameters_follow_the_normalisation(norm: str) -> None:
    x = jnp.ones((3, 2))
    spec = MLPSpec(width=16, layernorm="first", norm=norm, ln_affine=True)
    params = MLP(spec).init(jax.random.key(0), x)["params"]
    assert f"{norm}_1" in params and MLP(spec).apply({"params": params}, x).shape == (3, 1)


def test_post_placement_normalises_after_the_activation() -> None:
    x = jnp.linspace(-3, 3, 7)[:, None]
    pre = MLPSpec(width=64, layernorm="first", ln_eps=0.0)
    post = pre.replace(norm_position="post")
    params = MLP(pre).init(jax.random.key(0), x)["params"]  # same parameters for both
    d1, d2, out = params["dense_1"], params["dense_2"], params["readout"]

    def ln(z):
        return (z - z.mean(-1, keepdims=True)) / z.std(-1, keepdims=True)

    def manual(first):
        h = x @ d1["kernel"] + d1["bias"]
        h = first(h)
        h = jax.nn.relu(h @ d2["kernel"] + d2["bias"])
        return h @ out["kernel"] + out["bias"]

    np.testing.assert_allclose(MLP(pre).apply({"params": params}, x), manual(lambda h: jax.nn.relu(ln(h))), rtol=2e-4, atol=1e-5)
    np.testing.assert_allclose(MLP(post).apply({"params": params}, x), manual(lambda h: ln(jax.nn.relu(h))), rtol=2e-4, atol=1e-5)


@pytest.mark.parametrize("spec", [
    MLPSpec(width=32, layernorm="first", norm="rmsnorm"),
    MLPSpec(width=32, layernorm="first", norm_position="post"),
    MLPSpec(width=32, layernorm="first", norm="dyt", ln_affine=True),
])
def test_every_variant_is_deterministic_and_bounded_along_a_ray(spec: MLPSpec) -> None:
    model = MLP(spec)
    a = model.init(jax.random.key(7), jnp.ones((1, 1)))
    b = model.init(jax.random.key(7), jnp.ones((1, 1)))
    assert jax.tree_util.tree_all(jax.tree_util.tree_map(lambda u, v: bool(jnp.all(u == v)), a, b))
    far = model.apply(a, jnp.array([[1e4], [1e5], [1e6]]))
    assert float(jnp.max(jnp.abs(far))) < 1e3, "a fixed network with a normalisation is bounded"
