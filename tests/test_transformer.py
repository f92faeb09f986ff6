"""The transformer of the paper's Fig. 7: shapes, causality, the input LayerNorm, determinism, training,
the design choices the ablation varies, the ablation study and the infinite-width kernel."""

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
from companion.experiments import transformer_ablation as ablation
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
    assert len(summary["run_dates"]) >= 1 and summary["run_devices"]
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


# ---- the design choices the ablation varies, and the ablation study itself -------------------------



def test_learned_positions_are_a_table_that_must_cover_the_sequence() -> None:
    spec = SMALL.replace(positions="learned", max_positions=12)
    params = _init(spec)["params"]
    assert params["positions"].shape == (12, 16)
    with pytest.raises(ValueError, match="longer than the learned position table"):
        Transformer(spec).apply({"params": params}, jnp.ones((1, 13, 1)))
    with pytest.raises(ValueError, match="positions must be one of"):
        TransformerSpec(positions="rotary")


@pytest.mark.parametrize("changes", [{"blocks": "pre-LN"}, {"layernorm": True, "ln_input": "sum"}])
def test_other_layernorm_placements_bound_the_output_along_a_ray(changes: dict) -> None:
    spec = SMALL.replace(**changes)
    model, variables = Transformer(spec), _init(spec)
    near, far = (np.abs(np.asarray(model.apply(variables, s * X))).max() for s in (1e3, 1e4))
    assert far / near < 1.01, (changes, near, far)


def test_kaiming_initialisation_of_the_layers_after_the_embedding() -> None:
    spec = TransformerSpec(width=64, init="kaiming")
    params = Transformer(spec).init(jax.random.key(0), X)["params"]
    kernel, bias = params["mlp_0_in"]["kernel"], params["mlp_0_in"]["bias"]
    assert abs(float(jnp.var(kernel)) * 64 / 2 - 1) < 0.1 and abs(float(jnp.std(bias)) / 0.1 - 1) < 0.25
    assert float(jnp.abs(_init(SMALL)["params"]["mlp_0_in"]["bias"]).max()) == 0.0  # flax default: zero


def test_rollout_feeds_back_its_own_predictions() -> None:
    x, y = linear_sequences(8, 6, seed=2).next_value_pairs()
    trained = fit(Transformer(TransformerSpec(width=8, heads=2, layers=1)), x, y, seeds=[0, 1], epochs=1)
    values = linear_sequences(3, 9, seed=3).values
    auto = ablation.rollout(trained, values, start=5)
    teacher = trained.predict(values[:, :-1, None])
    assert auto.shape == teacher.shape == (2, 3, 8)
    np.testing.assert_allclose(auto[:, :, :4], teacher[:, :, :4], rtol=1e-5, atol=1e-5)  # f(2..5): true inputs
    for k in range(2):  # by hand: replace value t + 1 by the prediction made from values 1..t, in order
        seq = values.copy()
        for t in range(5, 8):
            single = TrainResult_one(trained, k).predict(seq[:, :-1, None])[0]
            seq[:, t] = single[:, t - 1]
        np.testing.assert_allclose(auto[k], TrainResult_one(trained, k).predict(seq[:, :-1, None])[0], rtol=1e-4, atol=1e-4)


def TrainResult_one(trained, k: int):
    return dataclasses.replace(trained, params=jax.tree_util.tree_map(lambda leaf: leaf[k : k + 1], trained.params),
                               seeds=(trained.seeds[k],))


def _fake_study(factor_no_ln: float, factor_ln: float) -> ablation.Study:
    cfg = ablation.Config(cells=("baseline",), seeds=2, n_train=4, epochs=1, batch_size=2, n_test=50, n_rollout=50)
    truth = linear_sequences(cfg.n_test, cfg.eval_length, seed=cfg.test_seed).values[:, 1:]

    def run(factor: float) -> dict:
        pred = factor * truth
        curves = {"error": np.mean(np.abs(pred - truth), 0).tolist(), "size": np.mean(np.abs(pred), 0).tolist(),
                  "signed": np.mean(pred, 0).tolist()}
        return {"scale_size": [1.0, 10.0, 100.0, 1000.0 * factor], "train_loss": 100.0 * (factor - 1),
                **{m: curves for m in ablation.MODES}}

    runs = {v: [run(f)] * 2 for v, f in zip(ablation.VARIANTS, (factor_no_ln, factor_ln))}
    return ablation.Study(cfg, {"baseline": runs}, "made up")


def test_measures_say_explodes_and_follows_from_the_curves() -> None:
    study = _fake_study(3.0, 1.0)
    blown, exact = (ablation.measures(study, "baseline", v, "teacher-forced") for v in ablation.VARIANTS)
    assert blown["explodes"] == 1.0 and blown["follows"] == 0.0 and blown["ratio"] == pytest.approx(3.0)
    assert exact["explodes"] == 0.0 and exact["follows"] == 1.0 and exact["relative_error"] == pytest.approx(0.0)
    assert exact["exponent"] == pytest.approx(exact["truth_exponent"]) and blown["scale_growth"] == pytest.approx(30.0)
    assert exact["fits"] == 1.0 and exact["train_fraction"] == 0.0 and blown["fits"] == 0.0  # 200 / mean y^2 > 5%
    rows = ablation.table(study)
    assert [r["mode"] for r in rows] == list(ablation.MODES) and set(rows[0]) >= {"no LN", "LN first", "changes"}


TINY_ABLATION = ablation.Config(
    cells=("baseline", "pre-ln-blocks"), seeds=2, n_train=8, epochs=1, batch_size=4, n_test=6, n_rollout=3,
    layers=1, heads=2, width=8, train_length=6, eval_length=12, scales=(1.0, 100.0, 1000.0),
)


def test_ablation_is_saved_per_cell_with_provenance_and_resumes(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv(artefacts.ENV_VAR, str(tmp_path))
    monkeypatch.setitem(ablation.CONFIGS, "full", TINY_ABLATION)
    assert cli.main(["run", "transformer-ablation", "--profile", "full"]) == 0
    folder = tmp_path / "transformer" / "ablation-full"
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["complete"] and len(summary["table"]) == 4 and {"date", "commit"} <= set(summary["provenance"])
    study = ablation.load_artefact("full")
    assert list(study.runs) == ["baseline", "pre-ln-blocks"] and study.curve("baseline", "no LN", "autoregressive", "size").shape == (2, 11)
    # Removing one run hides its cell only; a rerun trains just that (cell, variant).
    trained = []
    original = ablation.train_cell
    monkeypatch.setattr(ablation, "train_cell", lambda cfg, cell, v, seeds: trained.append((cell.name, v)) or original(cfg, cell, v, seeds))
    artefacts.run_path(folder, "pre-ln-blocks LN first", 0).unlink()
    assert list(ablation.load_artefact("full").runs) == ["baseline"]
    assert cli.main(["run", "transformer-ablation", "--profile", "full"]) == 0
    assert trained == [("pre-ln-blocks", "LN first")] and len(ablation.load_artefact("full").runs) == 2


def test_ablation_configuration_errors_are_clear() -> None:
    with pytest.raises(ValueError, match="unknown cell"):
        ablation.Config(cells=("baseline", "rotary"), seeds=1, n_train=4, epochs=1, batch_size=2, n_test=4, n_rollout=2)
    assert ablation.CELLS["paper-init-learned-positions"].changes() == "learned positions + Kaiming init + embedding bias 0.1"
    assert ablation.CONFIGS["full"].seeds == 5 and set(ablation.CONFIGS["ci"].cells) <= set(ablation.CONFIGS["full"].cells)


def test_infinite_width_kernel_diagonal_is_bounded_only_with_the_layernorm() -> None:
    scales = (1.0, 10.0, 100.0, 1000.0, 10000.0)
    diagonals = experiment.infinite_width_diagonals(scales, length=6)
    assert experiment.levels_off(diagonals["LN first"])
    assert not experiment.levels_off(diagonals["no LN"]), "the check must fail for the network without LayerNorm"
    growth = diagonals["no LN"][-1] / diagonals["no LN"][-2]
    assert 50 < growth < 200, f"without LayerNorm the diagonal should grow like s^2, got x{growth:.3g} per decade"
