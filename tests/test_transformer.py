"""The transformer of the paper's Fig. 7: shapes, causality, the input LayerNorm, determinism, training."""

from __future__ import annotations

import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from companion import artefacts, cli
from companion.data.sequences import linear_sequences
from companion.experiments import transformer as experiment
from companion.train import fit
from companion.transformer import Transformer, TransformerSpec, check_sequences, sinusoidal_positions

SMALL = TransformerSpec(width=16, heads=2)
X = jnp.asarray(linear_sequences(3, 12, seed=0).values[:, :, None], jnp.float32)


def _init(spec: TransformerSpec, seed: int = 0):
    return Transformer(spec).init(jax.random.key(seed), X)


@pytest.mark.parametrize("layernorm", [False, True])
def test_shapes_and_parameters(layernorm: bool) -> None:
    spec = SMALL.replace(layernorm=layernorm)
    params = _init(spec)["params"]
    assert Transformer(spec).apply({"params": params}, X).shape == (3, 12, 1)
    expected = {"embed", "attention_0", "attention_1", "mlp_0_in", "mlp_0_out", "mlp_1_in", "mlp_1_out", "readout"}
    assert set(params) == expected, "the LayerNorm has no parameters; blocks are identical in both variants"
    assert params["attention_0"]["query"]["kernel"].shape == (16, 2, 8)


def test_attention_is_causal() -> None:
    for layernorm in (False, True):
        spec = SMALL.replace(layernorm=layernorm)
        model, variables = Transformer(spec), _init(spec)
        base = model.apply(variables, X)
        t = 5
        changed = model.apply(variables, X.at[:, t, 0].add(3.0))
        np.testing.assert_array_equal(changed[:, :t], base[:, :t])  # the past does not see the future
        assert np.all(np.abs(np.asarray(changed[:, t:] - base[:, t:])) > 0)


def test_input_layernorm_normalises_every_token() -> None:
    spec = SMALL.replace(layernorm=True, ln_eps=0.0)
    _, state = Transformer(spec).apply(_init(spec), X * 100.0, capture_intermediates=True)
    (normed,) = state["intermediates"]["input_norm"]["__call__"]
    assert normed.shape == (3, 12, 16)
    np.testing.assert_allclose(normed.mean(-1), 0.0, atol=1e-5)
    np.testing.assert_allclose(normed.var(-1), 1.0, rtol=1e-4)


def test_deterministic_given_the_key() -> None:
    a, b, c = _init(SMALL, 3), _init(SMALL, 3), _init(SMALL, 4)
    same = jax.tree_util.tree_map(lambda u, v: bool(jnp.all(u == v)), a, b)
    assert jax.tree_util.tree_all(same)
    np.testing.assert_array_equal(Transformer(SMALL).apply(a, X), Transformer(SMALL).apply(b, X))
    assert not np.allclose(Transformer(SMALL).apply(a, X), Transformer(SMALL).apply(c, X))


def test_input_layernorm_bounds_the_output_along_a_ray() -> None:
    for layernorm, bounded in ((False, False), (True, True)):
        spec = SMALL.replace(layernorm=layernorm)
        model, variables = Transformer(spec), _init(spec)
        near, far = (np.abs(np.asarray(model.apply(variables, s * X))).max() for s in (1e3, 1e4))
        assert (far / near < 1.01) == bounded, (spec.label, near, far)


def test_positions_are_bounded_and_distinct() -> None:
    code = np.asarray(sinusoidal_positions(100, 16))
    assert code.shape == (100, 16) and np.abs(code).max() <= 1.0
    np.testing.assert_allclose(code[0, :2], [np.sin(1.0), np.cos(1.0)], rtol=1e-6)
    assert len({tuple(np.round(row, 5)) for row in code}) == 100


@pytest.mark.parametrize(
    "kwargs, message",
    [({"width": 10, "heads": 4}, "divisible"), ({"layers": 0}, "layers must be"), ({"norm": "bn"}, "unknown normalisation"), ({"norm": "batchnorm"}, "unknown normalisation"),
     ({"sigma_b": -1.0}, "sigma_b must be")],
)
def test_bad_specs_raise_clear_errors(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        TransformerSpec(**kwargs)


def test_bad_sequences_raise_clear_errors() -> None:
    with pytest.raises(ValueError, match=r"x\[\.\.\., None\]"):
        check_sequences(jnp.ones((3, 12)))
    with pytest.raises(ValueError, match="sequences must be a 3-D array"):
        Transformer(SMALL).init(jax.random.key(0), jnp.ones((3, 12, 2)))


def test_sequence_training_vmapped_equals_a_per_seed_loop() -> None:
    x, y = linear_sequences(8, 6, seed=2).next_value_pairs()
    model = Transformer(TransformerSpec(width=8, heads=2, layers=1, layernorm=True))
    together = fit(model, x, y, seeds=[1, 4], epochs=3, batch_size=4)
    assert together.losses.shape == (2, 3) and together.predict(x).shape == (2, 8, 5)
    for i, seed in enumerate([1, 4]):
        alone = fit(model, x, y, seeds=[seed], epochs=3, batch_size=4)
        np.testing.assert_allclose(together.losses[i], alone.losses[0], rtol=2e-5, atol=1e-6)
        np.testing.assert_allclose(together.predict(x)[i], alone.predict(x)[0], rtol=2e-5, atol=1e-5)
    with pytest.raises(ValueError, match=r"targets must have shape \(8, 5\)"):
        fit(model, x, y[:, :-1], seeds=[0], epochs=1)


def test_linear_sequences() -> None:
    data = linear_sequences(4, 30, seed=5)
    np.testing.assert_allclose(data.values[:, 9], data.intercept + 10 * data.slope)
    x, y = data.next_value_pairs()
    assert x.shape == (4, 29, 1) and y.shape == (4, 29)
    np.testing.assert_array_equal(x[:, 1:, 0], y[:, :-1])
    with pytest.raises(ValueError, match="length must be"):
        linear_sequences(4, 1)


TINY = experiment.Config(
    seeds=2, n_train=8, epochs=1, batch_size=4, n_test=4, ntk_widths=(8,), ntk_seeds=2, heads=2, width=8,
    train_length=6, eval_length=10, scales=(1.0, 10.0), ntk_scales=(1.0, 100.0),
)


def test_full_run_is_saved_with_provenance_and_resumes_per_seed(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv(artefacts.ENV_VAR, str(tmp_path))
    monkeypatch.setitem(experiment.CONFIGS, "full", TINY)
    assert cli.main(["run", "transformer", "--profile", "full"]) == 0
    folder = tmp_path / "transformer" / "full"
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["complete"] and summary["config"]["seeds"] == 2 and summary["wall_seconds"] > 0
    assert {"date", "commit", "devices", "versions"} <= set(summary["provenance"])
    run = json.loads(artefacts.run_path(folder, "no LN", 1).read_text())
    assert len(run["error"]) == 9 and "provenance" in run
    result = experiment.load_artefact("full")
    assert result is not None and result.metrics["no LN"]["error"].shape == (2, 9)
    assert result.kernel["LN first"][8].shape == (2, 2) and "stored full-profile results" in result.source

    # A rerun computes only what is missing (training stubbed out: only the bookkeeping is tested).
    trained = []
    monkeypatch.setattr(experiment, "_train_to_json", lambda cfg, label, seeds: trained.append((label, *seeds)) or [run])
    artefacts.run_path(folder, "no LN", 1).unlink()
    assert experiment.load_artefact("full") is None, "incomplete results are not shown"
    assert cli.main(["run", "transformer", "--profile", "full"]) == 0
    assert trained == [("no LN", 1)] and experiment.load_artefact("full") is not None


def test_absent_results_load_as_none(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv(artefacts.ENV_VAR, str(tmp_path))
    assert experiment.load_artefact("full") is None
