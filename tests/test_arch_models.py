"""MLPSpec validation and the flax models built from it."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from companion.arch import MLPSpec, placement
from companion.models import MLP


def test_placements_and_labels() -> None:
    assert MLPSpec().label == "no LN"
    assert MLPSpec(layernorm="first").layernorm == frozenset({1})
    assert MLPSpec(layernorm="second").label == "LN second"
    assert MLPSpec(layernorm="every").label == "LN every"
    assert MLPSpec(depth=4, layernorm="last").label == "LN last"
    assert MLPSpec(layernorm=[1, 2]) == MLPSpec(layernorm="every")
    assert placement("every", 3) == {1, 2, 3}


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"activation": "swish2"}, "unknown activation 'swish2'"),
        ({"layernorm": {3}}, r"not hidden layers of a depth-2 network"),
        ({"layernorm": {0}}, r"use indices 1..2"),
        ({"layernorm": "middle"}, "unknown LayerNorm placement"),
        ({"depth": 1, "layernorm": "second"}, "at least two hidden layers"),
        ({"layernorm": 1}, "set of hidden-layer indices"),
        ({"parametrisation": "mup"}, "unknown parametrisation"),
        ({"depth": 0}, "depth must be a positive integer"),
        ({"sigma_b": float("nan")}, "sigma_b must be a finite"),
        ({"sigma_w": 0.0}, "sigma_w must be positive"),
    ],
)
def test_bad_specs_raise_clear_errors(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        MLPSpec(**kwargs)


def test_output_shape_and_parameter_names() -> None:
    spec = MLPSpec(depth=3, width=16, layernorm="every", ln_affine=True)
    x = jnp.ones((7, 4))
    params = MLP(spec).init(jax.random.key(0), x)["params"]
    assert MLP(spec).apply({"params": params}, x).shape == (7, 1)
    assert set(params) == {"dense_1", "dense_2", "dense_3", "readout", "layernorm_1", "layernorm_2", "layernorm_3"}
    # The theory's LayerNorm has no parameters: none are created unless ln_affine is asked for.
    plain = MLP(spec.replace(ln_affine=False)).init(jax.random.key(0), x)["params"]
    assert set(plain) == {"dense_1", "dense_2", "dense_3", "readout"}


def test_bad_input_shape_is_a_clear_error() -> None:
    model = MLP(MLPSpec(width=8))
    with pytest.raises(ValueError, match=r"reshape 1-D inputs with x\[:, None\]"):
        model.init(jax.random.key(0), jnp.ones(5))


@pytest.mark.parametrize("parametrisation", ["standard", "ntk"])
def test_initialisation_statistics(parametrisation: str) -> None:
    spec = MLPSpec(width=512, parametrisation=parametrisation, sigma_w=math.sqrt(2.0), sigma_b=0.1)
    params = MLP(spec).init(jax.random.key(3), jnp.ones((1, 64)))["params"]
    kernel = np.asarray(params["dense_2"]["kernel"])
    bias = np.concatenate([np.asarray(params[f"dense_{h}"]["bias"]) for h in (1, 2)])
    fan_in = kernel.shape[0]
    if parametrisation == "standard":
        # Kaiming/He-uniform: variance sigma_w^2 / fan_in, support [-a, a], a = sigma_w sqrt(3 / fan_in).
        assert np.abs(kernel).max() <= math.sqrt(2.0) * math.sqrt(3.0 / fan_in)
        np.testing.assert_allclose(kernel.var(), 2.0 / fan_in, rtol=0.03)
        np.testing.assert_allclose(bias.std(), 0.1, rtol=0.1)
    else:
        # NTK parametrisation: standard normal parameters, scales applied in the forward pass.
        np.testing.assert_allclose(kernel.var(), 1.0, rtol=0.03)
        np.testing.assert_allclose(bias.std(), 1.0, rtol=0.1)


def test_ntk_parametrisation_scales_the_forward_pass() -> None:
    from companion.models import Dense

    layer = Dense(4096, parametrisation="ntk", sigma_w=1.5, sigma_b=0.3)
    x = jnp.full((1, 8), 2.0)
    params = layer.init(jax.random.key(0), x)
    z = layer.apply(params, x)
    # Pre-activations are N(0, sigma_w^2 |x|^2 / n0 + sigma_b^2) across units: 1.5^2 * 4 + 0.09.
    np.testing.assert_allclose(float(jnp.var(z)), 1.5**2 * 4 + 0.3**2, rtol=0.08)


def test_layernorm_normalises_the_first_layer() -> None:
    spec = MLPSpec(width=256, layernorm="first", activation="tanh", ln_eps=0.0)
    model = MLP(spec)
    x = jnp.linspace(-100, 100, 9)[:, None]
    params = model.init(jax.random.key(0), x)["params"]
    # After LayerNorm the network sees only the direction of the augmented input (x, 1), so far
    # along a ray the output stops changing.
    out_near = model.apply({"params": params}, 1e3 * jnp.ones((1, 1)))
    out_far = model.apply({"params": params}, 1e6 * jnp.ones((1, 1)))
    np.testing.assert_allclose(out_near, out_far, rtol=1e-3)


def test_layernorm_mask_as_data_matches_the_spec() -> None:
    x = jax.random.normal(jax.random.key(1), (5, 3))
    plain = MLP(MLPSpec(width=8))
    params = plain.init(jax.random.key(0), x)["params"]
    for positions in ((), (1,), (2,), (1, 2)):
        mask = jnp.asarray([h in positions for h in (1, 2)])
        expected = MLP(MLPSpec(width=8, layernorm=frozenset(positions))).apply({"params": params}, x)
        np.testing.assert_array_equal(plain.apply({"params": params}, x, ln_mask=mask), expected)
    with pytest.raises(ValueError, match=r"ln_mask must have shape \(2,\)"):
        plain.apply({"params": params}, x, ln_mask=jnp.ones(3, bool))
    with pytest.raises(ValueError, match="parameter-free"):
        MLP(MLPSpec(width=8, ln_affine=True)).init(jax.random.key(0), x, ln_mask=jnp.ones(2, bool))
