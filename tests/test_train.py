"""The training helper: vmapped seeds equal per-seed runs, determinism, mini-batches, errors."""

from __future__ import annotations

import jax
import numpy as np
import optax
import pytest

from companion.arch import MLPSpec
from companion.data.toy import make_1d
from companion.train import fit, fit_variants, make_optimizer

SPEC = MLPSpec(width=32, layernorm="first")


@pytest.fixture(scope="module")
def data():
    return make_1d("sine", n=40, seed=1)


def test_vmapped_seeds_equal_a_per_seed_loop(data) -> None:
    together = fit(SPEC, data.x, data.y, seeds=[3, 5, 8], epochs=50)
    for i, seed in enumerate([3, 5, 8]):
        alone = fit(SPEC, data.x, data.y, seeds=[seed], epochs=50)
        np.testing.assert_allclose(together.losses[i], alone.losses[0], rtol=2e-5, atol=1e-7)
        for a, b in zip(jax.tree_util.tree_leaves(together.params), jax.tree_util.tree_leaves(alone.params)):
            np.testing.assert_allclose(np.asarray(a)[i], np.asarray(b)[0], rtol=2e-5, atol=1e-6)


def test_deterministic_given_seeds(data) -> None:
    a = fit(SPEC, data.x, data.y, seeds=[0, 1], epochs=30, batch_size=16)
    b = fit(SPEC, data.x, data.y, seeds=[0, 1], epochs=30, batch_size=16)
    np.testing.assert_array_equal(a.losses, b.losses)
    np.testing.assert_array_equal(a.predict(data.x), b.predict(data.x))
    assert not np.allclose(a.losses[0], a.losses[1]), "different seeds must give different runs"


def test_training_reduces_the_loss(data) -> None:
    result = fit(MLPSpec(width=64), data.x, data.y, seeds=[0, 1], epochs=400, learning_rate=1e-2)
    assert result.losses.shape == (2, 400)
    assert np.all(result.losses[:, -1] < 0.1 * result.losses[:, 0])
    mse = np.mean((result.predict(data.x) - data.y) ** 2, axis=1)
    assert np.all(mse < 0.05)


def test_minibatches_keep_the_last_partial_batch(data) -> None:
    # 40 points in batches of 16: 3 updates per epoch, the last on 8 points, all weighted equally.
    result = fit(SPEC, data.x, data.y, seeds=[0], epochs=2, batch_size=16, optimizer="sgd", learning_rate=1e-12)
    initial = fit(SPEC, data.x, data.y, seeds=[0], epochs=1, batch_size=40, optimizer="sgd", learning_rate=1e-12)
    # With a negligible learning rate the epoch loss is the full-data MSE at initialisation.
    np.testing.assert_allclose(result.losses[0, 0], initial.losses[0, 0], rtol=1e-5)


def test_sgd_and_custom_optimizers(data) -> None:
    assert isinstance(make_optimizer("sgd", 0.1), optax.GradientTransformation)
    custom = optax.chain(optax.clip_by_global_norm(1.0), optax.adam(1e-3))
    result = fit(SPEC, data.x, data.y, seeds=[0], epochs=5, optimizer=custom)
    assert result.losses.shape == (1, 5)


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"y": np.zeros(3)}, ValueError, r"targets must have shape \(40,\)"),
        ({"x": np.zeros(40)}, ValueError, "2-D array"),
        ({"seeds": []}, ValueError, "at least one seed"),
        ({"seeds": [1, 1]}, ValueError, "distinct"),
        ({"epochs": 0}, ValueError, "epochs must be a positive integer"),
        ({"batch_size": 0}, ValueError, "batch_size"),
        ({"optimizer": "lbfgs"}, ValueError, "unknown optimizer"),
        ({"learning_rate": -1.0}, ValueError, "learning_rate"),
    ],
)
def test_bad_arguments_raise_clear_errors(data, kwargs: dict, error: type, message: str) -> None:
    args = {"x": data.x, "y": data.y, "seeds": [0], "epochs": 1} | kwargs
    with pytest.raises(error, match=message):
        fit(SPEC, args.pop("x"), args.pop("y"), **args)


def test_nan_in_data_is_rejected(data) -> None:
    y = data.y.copy()
    y[3] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        fit(SPEC, data.x, y, seeds=[0], epochs=1)


def test_divergence_is_reported_not_returned(data) -> None:
    with pytest.raises(FloatingPointError, match="lower the learning rate"):
        fit(MLPSpec(width=32), data.x * 1e3, data.y, seeds=[0], epochs=50, optimizer="sgd", learning_rate=1e6)


HEADS = [MLPSpec(width=16, layernorm=p) for p in ("none", "first", "second", "every")]
RATES = [1e-3, 1e-3, 3e-3, 3e-3]


def test_fit_variants_equals_one_fit_per_variant(data) -> None:
    together = fit_variants(HEADS, data.x, data.y, seeds=[2, 7], epochs=3, learning_rates=RATES, batch_size=16)
    assert [r.model.spec for r in together] == HEADS
    for spec, rate, joint in zip(HEADS, RATES, together):
        alone = fit(spec, data.x, data.y, seeds=[2, 7], epochs=3, learning_rate=rate, batch_size=16)
        np.testing.assert_allclose(joint.losses, alone.losses, rtol=2e-5, atol=1e-7)
        for a, b in zip(jax.tree_util.tree_leaves(joint.params), jax.tree_util.tree_leaves(alone.params)):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=2e-5, atol=1e-6)
        np.testing.assert_allclose(joint.predict(data.x), alone.predict(data.x), rtol=1e-4, atol=1e-5)


def test_fit_variants_in_float64_from_float32_weights_trains_the_same_networks(data) -> None:
    kwargs = dict(seeds=[0, 1], epochs=20, learning_rates=0.1, optimizer="sgd")
    heads = [SPEC.replace(parametrisation="ntk")]
    [single] = fit_variants(heads, data.x, data.y, **kwargs)
    with jax.enable_x64(True):
        [twin] = fit_variants(heads, data.x, data.y, dtype=jax.numpy.float64, init_dtype=jax.numpy.float32, **kwargs)
        [other] = fit_variants(heads, data.x, data.y, dtype=jax.numpy.float64, **kwargs)
        assert all(leaf.dtype == np.float64 for leaf in jax.tree_util.tree_leaves(twin.params))
        ours, theirs = twin.predict(data.x), other.predict(data.x)
    # the same initial weights: float64 arithmetic moves the predictions by float32 rounding only
    np.testing.assert_allclose(ours, single.predict(data.x), rtol=1e-4, atol=1e-5)
    # weights drawn in float64 are other random numbers: other networks
    assert np.max(np.abs(theirs - ours)) > 1e-2


@pytest.mark.parametrize("runs_per_program", [1, 3, np.int64(4), None])
def test_fit_variants_in_groups_equals_one_program_of_all_runs(data, runs_per_program) -> None:
    # 3 variants x 2 seeds = 6 runs: groups of 1, of 3 (even), of 4 (a remainder of 2), the default
    heads = HEADS[:3]
    kwargs = dict(seeds=[2, 7], epochs=20, learning_rates=RATES[:3], batch_size=16)
    together = fit_variants(heads, data.x, data.y, runs_per_program=6, **kwargs)
    grouped = fit_variants(heads, data.x, data.y, runs_per_program=runs_per_program, **kwargs)
    for joint, group in zip(together, grouped):
        assert group.seeds == joint.seeds and group.model.spec == joint.model.spec
        np.testing.assert_allclose(group.losses, joint.losses, rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(group.predict(data.x), joint.predict(data.x), rtol=1e-5, atol=1e-6)
    assert not np.allclose(grouped[0].losses, grouped[1].losses), "variants must stay distinct runs"


@pytest.mark.parametrize(
    "specs, kwargs, message",
    [
        ([], {}, "non-empty sequence of MLPSpec"),
        ([MLPSpec(width=16), MLPSpec(width=8)], {}, "differ only in their LayerNorm positions"),
        ([MLPSpec(width=16, layernorm="first", ln_affine=True)], {}, "parameter-free"),
        (HEADS, {"learning_rates": [1e-3, 1e-3]}, "one learning rate per variant"),
        (HEADS, {"learning_rates": 0.0}, "learning_rate must be a positive number"),
        (HEADS, {"optimizer": "lbfgs"}, "unknown optimizer"),
        (HEADS, {"runs_per_program": 0}, "runs_per_program must be a positive integer or None"),
        (HEADS, {"runs_per_program": 2.0}, "runs_per_program must be a positive integer or None"),
        (HEADS, {"runs_per_program": True}, "runs_per_program must be a positive integer or None"),
    ],
)
def test_fit_variants_rejects_what_it_cannot_batch(data, specs: list, kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        fit_variants(specs, data.x, data.y, seeds=[0], epochs=1, **kwargs)
