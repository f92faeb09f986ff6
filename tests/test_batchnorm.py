"""BatchNorm networks (the paper's App. L): batch statistics in training, running averages at evaluation."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from companion import kernels
from companion.arch import MLPSpec
from companion.data.toy import make_1d
from companion.models import MLP
from companion.train import fit, fit_variants

BN = MLPSpec(width=32, layernorm="every", norm="batchnorm")


@pytest.fixture(scope="module")
def data():
    return make_1d("sine", n=40, seed=1)


def test_spec_field_label_and_errors() -> None:
    assert MLPSpec().norm == "layernorm"
    assert BN.label == "BatchNorm"
    assert MLPSpec(layernorm="first", norm="batchnorm").label == "BatchNorm at 1"
    with pytest.raises(ValueError, match="unknown normalisation"):
        MLPSpec(norm="groupnorm")
    with pytest.raises(ValueError, match="cover LayerNorm only"):
        kernels.kernel(np.ones((2, 1)), None, BN)


def test_batch_statistics_in_training_running_averages_at_evaluation() -> None:
    model = MLP(BN)
    x = jnp.linspace(-3, 3, 50)[:, None]
    variables = model.init(jax.random.key(0), x)
    assert set(variables) == {"params", "batch_stats"}
    assert set(variables["batch_stats"]) == {"batchnorm_1", "batchnorm_2"}
    # training mode: every feature of layer 1's pre-activations has batch mean 0 and variance 1
    _, state = model.apply(variables, x, train=True, mutable=["batch_stats"], capture_intermediates=True)
    stats = state["batch_stats"]["batchnorm_1"]
    assert not np.allclose(stats["mean"], 0)  # running averages moved towards the batch's
    pre = state["intermediates"]["batchnorm_1"]["__call__"][0]
    np.testing.assert_allclose(pre.mean(axis=0), 0, atol=1e-5)
    # variance v / (v + eps): 1 unless a feature barely varies over the batch
    assert np.all(pre.var(axis=0) <= 1 + 1e-4) and np.median(pre.var(axis=0)) > 0.999
    # evaluation: a fixed affine map per feature, so far away the network grows linearly
    far = model.apply(variables, jnp.array([[100.0], [200.0]]))[:, 0]
    near = model.apply(variables, jnp.array([[0.0]]))[0, 0]
    np.testing.assert_allclose(far[1] - near, 2 * (far[0] - near), rtol=1e-3)


# A bias just before a BatchNorm without affine parameters gets a zero gradient up to rounding, and
# Adam divides that rounding noise by its own size, moving the bias by about lr per step in a
# direction set by rounding (PyTorch does the same). The function in training mode does not depend
# on it, but the last bits of it do depend on how the runs are batched, so exact comparisons use
# gradient descent, whose updates keep the noise at the rounding level.
SGD = {"optimizer": "sgd", "learning_rate": 0.05}


def test_fit_trains_batchnorm_and_vmapped_seeds_equal_a_loop(data) -> None:
    adam = fit(BN, data.x, data.y, seeds=[0], epochs=60)
    assert adam.losses[0, -1] < adam.losses[0, 0]
    together = fit(BN, data.x, data.y, seeds=[0, 1], epochs=60, **SGD)
    assert set(together.state) == {"batch_stats"}
    assert together.losses[:, -1].max() < together.losses[:, 0].min()
    for i, seed in enumerate((0, 1)):
        alone = fit(BN, data.x, data.y, seeds=[seed], epochs=60, **SGD)
        np.testing.assert_allclose(together.predict(data.x)[i], alone.predict(data.x)[0], rtol=2e-5, atol=2e-6)
    again = fit(BN, data.x, data.y, seeds=[0, 1], epochs=60, **SGD)
    np.testing.assert_array_equal(together.predict(data.x), again.predict(data.x))
    # mini-batches update the running averages too
    batched = fit(BN, data.x, data.y, seeds=[0], epochs=5, batch_size=16)
    assert np.isfinite(batched.predict(data.x)).all()


def test_full_batch_running_averages_converge_to_the_batch_statistics(data) -> None:
    # with (almost) frozen parameters the running averages forget their start (0.9^300) and equal
    # the full batch's statistics; while parameters move they lag about 9 steps behind
    trained = fit(BN, data.x, data.y, seeds=[0], epochs=300, optimizer="sgd", learning_rate=1e-9)
    params = jax.tree_util.tree_map(lambda leaf: leaf[0], trained.params)
    state = jax.tree_util.tree_map(lambda leaf: leaf[0], trained.state)
    x = jnp.asarray(data.x, jnp.float32)
    evaluation = MLP(BN).apply({"params": params, **state}, x)
    training, _ = MLP(BN).apply({"params": params, **state}, x, train=True, mutable=["batch_stats"])
    np.testing.assert_allclose(evaluation, training, atol=1e-3)


def test_fit_variants_refuses_batchnorm(data) -> None:
    with pytest.raises(ValueError, match="train BatchNorm networks with fit"):
        fit_variants([BN, BN], data.x, data.y, seeds=[0], epochs=2)


def test_every_variant_has_the_right_shapes_and_variables() -> None:
    from companion.arch import ACTIVATIONS, PLACEMENTS

    x = jnp.linspace(-2, 2, 5)[:, None]
    variants = [(a, "every") for a in ACTIVATIONS] + [("relu", p) for p in PLACEMENTS]
    for activation, where in variants:
        for norm in ("layernorm", "batchnorm"):
            for parametrisation in ("standard", "ntk"):
                spec = MLPSpec(width=8, activation=activation, layernorm=where, norm=norm,
                               parametrisation=parametrisation)
                variables = MLP(spec).init(jax.random.key(0), x)
                out = MLP(spec).apply(variables, x)
                assert out.shape == (5, 1) and np.isfinite(out).all(), spec
                expected = {"params"} | ({"batch_stats"} if norm == "batchnorm" and spec.layernorm else set())
                assert set(variables) == expected, spec
                assert set(variables["params"]) == {"dense_1", "dense_2", "readout"}, spec
