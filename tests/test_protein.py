"""The protein experiment: Table-1 summaries, the resumable artefact run, the command line, and the
committed ``full`` artefact against the paper's Table 1."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from companion import artefacts, cli
from companion.data import casp
from companion.experiments import protein, protein_ntk, protein_paper
from test_casp import _synthetic_frame

# Two networks and XGBoost, a few epochs: what matters here is the bookkeeping, not the numbers.
TINY = protein.Config(seeds=2, epochs=3, n_train=300, width=8, placements=("first", "none"))


@pytest.fixture(scope="module")
def split() -> casp.CaspSplit:
    return casp.split(_synthetic_frame(), seed=0)


@pytest.fixture
def tiny(monkeypatch: pytest.MonkeyPatch, split: casp.CaspSplit) -> list[tuple[str, tuple[int, ...]]]:
    """The ``ci`` profile shrunk to seconds, on synthetic data; returns the log of trained (method, seeds)."""
    calls: list[tuple[str, tuple[int, ...]]] = []
    train = protein.train

    def logged(cfg, data, method, seeds):
        calls.append((method, tuple(seeds)))
        return train(cfg, data, method, seeds)

    monkeypatch.setitem(protein.CONFIGS, "ci", TINY)
    monkeypatch.setattr(protein, "load_split", lambda cfg: split)
    monkeypatch.setattr(protein, "train", logged)
    return calls


def _record(method: str, seed: int, r2_id: float, r2_ood: float, n: int = 50) -> protein.Record:
    return protein.Record(method, seed, r2_id, r2_ood, 1.0, 0.1, np.linspace(0, 1, n) * (seed + 1))


def test_papers_table_covers_every_method() -> None:
    assert set(protein.PAPER_TABLE_1) == set(protein.methods(protein.config("full")))
    assert all(set(parts) == {"ood", "id"} for parts in protein.PAPER_TABLE_1.values())
    assert protein.config("full") == protein.Config(seeds=10, epochs=2500), "full must stay the paper's protocol"


def test_table_bold_and_agreement_from_records() -> None:
    cfg = dataclasses.replace(TINY, seeds=3)
    records = {
        "LN every": [_record("LN every", s, 0.60 + 0.002 * s, 0.50 + 0.002 * s) for s in range(3)],
        "no LN": [_record("no LN", s, 0.58 + 0.002 * s, 0.31 + 0.002 * s) for s in range(3)],
        "XGBoost": [_record("XGBoost", s, 0.61, 0.27) for s in range(3)],
    }
    results = protein.Results(cfg, records)
    table = results.table()
    assert table["LN every"]["ood"].mean == pytest.approx(0.502)
    assert table["XGBoost"]["ood"].half_width == 0.0, "identical runs have a zero-width interval"
    assert results.bold("ood") == {"LN every"}
    assert not results.complete, "two of the five methods are missing"
    agree = protein.paper_agreement(results)
    assert agree[("LN every", "ood")] and agree[("XGBoost", "ood")] and agree[("no LN", "id")]
    assert ("LN first", "ood") not in agree
    grid = np.linspace(0, 1, 7)
    trend = results.trend("LN every", np.linspace(0, 1, 50), grid)
    assert trend.mean.shape == (7,) and np.all(trend.lower <= trend.upper)


def test_live_run_trains_every_method(tiny: list, split: casp.CaspSplit) -> None:
    results = protein.run(protein.config("ci"), split)
    assert list(results.records) == protein.methods(TINY) and results.complete
    for method in results.records:
        assert results.ood_predictions(method).shape == (2, len(split.y_ood))
    # XGBoost with its default (non-random) settings does not depend on the seed.
    np.testing.assert_array_equal(*results.ood_predictions("XGBoost"))
    assert [seeds for _, seeds in tiny] == [(0, 1)] * 3, "networks are trained for all seeds at once"


def test_artefact_run_is_resumable(tiny: list, tmp_path: Path) -> None:
    out = protein.run_artefact("ci", out=tmp_path, seeds_at_once=1)
    assert out == tmp_path and len(tiny) == 6
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["complete"] and summary["runs"] == 6 and summary["config"]["epochs"] == 3
    for key in ("versions", "devices", "date", "commit"):
        assert key in summary["provenance"]
    assert set(summary["table_1"]) == set(protein.methods(TINY))

    tiny.clear()
    protein.run_artefact("ci", out=tmp_path)
    assert tiny == [], "a rerun must skip what is done"
    assert (tmp_path / "runs" / "xgboost" / "seed-1.json").is_file()

    (tmp_path / "runs" / "ln-first" / "seed-1.json").unlink()
    protein.run_artefact("ci", out=tmp_path)
    assert tiny == [("LN first", (1,))]

    loaded = protein.load_artefact("ci", tmp_path)
    assert loaded.complete and loaded.config == TINY and loaded.summary["profile"] == "ci"
    record = loaded.records["LN first"][1]
    assert record.provenance["trained_with_seeds"] == [1] and record.provenance["versions"]["jax"]


def test_an_interrupted_artefact_run_leaves_a_summary_of_what_it_finished(tiny: list, tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    logged = protein.train  # the fixture's, which appends to ``tiny``

    def interrupted(cfg, data, method, seeds):
        if len(tiny) == 3:  # LN first seeds 0 and 1, no LN seed 0 are done
            raise KeyboardInterrupt
        return logged(cfg, data, method, seeds)

    monkeypatch.setattr(protein, "train", interrupted)
    tiny.clear()
    with pytest.raises(KeyboardInterrupt):
        protein.run_artefact("ci", out=tmp_path, seeds_at_once=1)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert not summary["complete"] and summary["runs"] == 3
    assert set(summary["table_1"]) == {"LN first"}, "a method with one run has no interval yet"
    loaded = protein.load_artefact("ci", tmp_path)
    assert not loaded.complete and set(loaded.table()) == {"LN first"}
    assert [r.seed for r in loaded.records["no LN"]] == [0]
    assert "—" in protein.table_1_markdown({"partial": loaded})


def test_artefacts_of_another_configuration_are_not_mixed(tiny: list, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(protein.CONFIGS, "ci", dataclasses.replace(TINY, placements=("none",)))
    protein.run_artefact("ci", out=tmp_path)
    monkeypatch.setitem(protein.CONFIGS, "ci", dataclasses.replace(TINY, placements=("none",), epochs=4))
    with pytest.raises(ValueError, match="comes from another configuration"):
        protein.run_artefact("ci", out=tmp_path)


def test_missing_artefact_loads_as_none(tmp_path: Path) -> None:
    assert protein.load_artefact("full", tmp_path / "nothing") is None


def test_command_line_runs_an_experiment_by_name(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture) -> None:
    calls = []
    monkeypatch.setattr(protein, "run_artefact", lambda *args, **kwargs: calls.append((args, kwargs)))
    monkeypatch.delenv("COMPANION_PROFILE")
    assert cli.main(["run", "protein", "--profile", "full", "--out", str(tmp_path), "--seeds-at-once", "2"]) == 0
    assert calls == [(("full",), {"out": tmp_path, "seeds_at_once": 2, "redrawn": False})]
    assert cli.main(["run", "protein", "--redrawn", "--profile", "full"]) == 0
    assert calls[-1] == (("full",), {"out": None, "seeds_at_once": None, "redrawn": True})
    assert protein.profile.active() == "full", "the flag also sets the profile for progress bars"
    with pytest.raises(SystemExit):
        cli.main(["run", "protein", "--seeds-at-once", "0"])
    assert "must be a positive integer" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["run", "no-such-experiment"])
    assert "invalid choice: 'no-such-experiment'" in capsys.readouterr().err


def test_artefact_json_keeps_number_lists_on_one_line(tmp_path: Path) -> None:
    artefacts.write_json(tmp_path / "a.json", {"x": [1.5, -2.0, 3e-5], "name": "LN every"})
    text = (tmp_path / "a.json").read_text()
    assert '"x": [1.5, -2.0, 3e-05]' in text and json.loads(text)["name"] == "LN every"
    assert artefacts.slug("LN every") == "ln-every" and artefacts.slug("XGBoost") == "xgboost"
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(ValueError, match="not valid JSON"):
        artefacts.read_json(tmp_path / "bad.json")


@pytest.mark.parametrize("redrawn", [False, True], ids=["fixed-split", "redrawn-split"])
def test_full_artefact_matches_the_papers_table_1(redrawn: bool) -> None:
    full = protein.load_artefact("full", redrawn=redrawn)
    command = "python -m companion run protein --profile full" + (" --redrawn" if redrawn else "")
    if full is None:
        pytest.skip(f"no full artefact yet: run `{command}` and commit it")
    if not full.complete:
        pytest.skip(f"the full artefact is incomplete ({full.summary['runs']} runs); finish it with `{command}`")
    assert full.config == protein.config("full", redrawn=redrawn), \
        "the committed artefact was made with another configuration; rerun it"
    agreement = protein.paper_agreement(full)
    missed = {key for key, ok in agreement.items() if not ok}
    unexplained = missed - set(protein.EXPLAINED_DIFFERENCES)
    table = full.table()
    assert not unexplained, "outside the paper's intervals without an explanation in the chapter: " + ", ".join(
        f"{m} {p}: ours {table[m][p].format()} vs paper {protein.PAPER_TABLE_1[m][p]}" for m, p in sorted(unexplained)
    )


class _Table:
    """Anything with ``table()``: Table 1 entries given as (mean, half-width)."""

    def __init__(self, entries: dict[str, dict[str, tuple[float, float]]]) -> None:
        self.entries = entries

    def table(self) -> dict:
        return protein_paper.as_table(self.entries)


def test_paper_distance_counts_overlaps_and_averages_the_differences() -> None:
    paper = protein.PAPER_TABLE_1
    same = protein.paper_distance(_Table({m: dict(parts) for m, parts in paper.items()}))
    assert same == {"overlaps": 10, "entries": 10, "mean": 0.0, "half_width": 0.0}
    # Only "no LN" shifted: its OOD mean by 0.2 (its interval then misses the paper's), its ID half-width by 0.03.
    moved = {m: dict(parts) for m, parts in paper.items()}
    moved["no LN"] = {"ood": (paper["no LN"]["ood"][0] + 0.2, paper["no LN"]["ood"][1]),
                      "id": (paper["no LN"]["id"][0], paper["no LN"]["id"][1] + 0.03)}
    d = protein.paper_distance(_Table(moved))
    assert d["overlaps"] == 9 and d["entries"] == 10
    assert d["mean"] == pytest.approx(0.02) and d["half_width"] == pytest.approx(0.003)
    with pytest.raises(ValueError, match="no method of the paper"):
        protein.paper_distance(_Table({"another model": {"ood": (0.1, 0.01)}}))


def test_closer_to_paper_prefers_overlaps_then_both_distances() -> None:
    def d(overlaps: int, mean: float, half: float) -> dict:
        return {"overlaps": overlaps, "entries": 10, "mean": mean, "half_width": half}

    assert protein.closer_to_paper({"fixed": d(9, 0.01, 0.01), "redrawn": d(8, 0.0, 0.0)}) == "fixed"
    assert protein.closer_to_paper({"fixed": d(10, 0.013, 0.014), "redrawn": d(10, 0.011, 0.008)}) == "redrawn"
    assert protein.closer_to_paper({"fixed": d(10, 0.01, 0.02), "redrawn": d(10, 0.02, 0.01)}) is None
    assert protein.closer_to_paper({"fixed": d(10, 0.01, 0.01), "redrawn": d(10, 0.01, 0.01)}) is None
    with pytest.raises(ValueError, match="exactly two"):
        protein.closer_to_paper({"fixed": d(10, 0.01, 0.01)})


def test_redrawn_split_differs_per_seed_and_is_deterministic(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(casp, "load", _synthetic_frame)
    fixed, redrawn = protein.config("ci"), protein.config("ci", redrawn=True)
    assert redrawn.redraw_split and not fixed.redraw_split
    assert protein.fingerprint(fixed) != protein.fingerprint(redrawn)
    a, b, again = protein.load_split(redrawn, 0), protein.load_split(redrawn, 1), protein.load_split(redrawn, 1)
    assert not np.array_equal(np.sort(a.y_train), np.sort(b.y_train)), "each seed draws its own split"
    np.testing.assert_array_equal(b.x_train, again.x_train)
    np.testing.assert_array_equal(protein.load_split(fixed, 0).x_train, protein.load_split(fixed, 1).x_train)
    np.testing.assert_array_equal(a.x_ood, b.x_ood)  # the OOD proteins never change


def test_fixed_split_fingerprint_is_unchanged_by_the_redrawn_option() -> None:
    """The committed fixed-split artefact was fingerprinted before ``redraw_split`` existed."""
    fields = dataclasses.asdict(protein.config("full"))
    del fields["redraw_split"]
    assert protein.fingerprint(protein.config("full")) == artefacts.fingerprint(fields)


def test_redrawn_live_run_trains_each_seed_on_its_split(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(casp, "load", _synthetic_frame)
    cfg = dataclasses.replace(TINY, redraw_split=True, placements=("first",))
    results = protein.run(cfg)
    xgb = results.r2("XGBoost", "id")
    assert xgb[0] != xgb[1], "XGBoost is deterministic given its data, so only the split can move it"
    assert results.complete and [r.seed for r in results.records["LN first"]] == [0, 1]


TINY_NTK = protein_ntk.NTKConfig(n_train=120, ensemble_n=80, ensemble_draws=50, block_size=64,
                                 placements=("none", "first"))


def test_ntk_artefact_is_resumable_and_shown_without_interval(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(casp, "load", _synthetic_frame)
    monkeypatch.setitem(protein_ntk.NTK_CONFIGS, "ci", TINY_NTK)
    protein_ntk.run_artefact("ci", out=tmp_path)
    loaded = protein_ntk.load_artefact("ci", tmp_path)
    assert loaded.complete and loaded.summary["complete"] and loaded.summary["profile"] == "ci"
    column = loaded.columns["LN first"]
    assert column["n_train"] == 120 and column["relative_jitter"] == 1e-8 and column["provenance"]["versions"]["jax"]
    assert loaded.spreads["no LN"]["n_train"] == 80 and loaded.spreads["no LN"]["r2_ood_draws_sd"] > 0

    calls, column_fn = [], protein_ntk.column
    monkeypatch.setattr(protein_ntk, "column", lambda *args: calls.append(args[2]) or column_fn(*args))
    (tmp_path / "runs" / "no-ln" / "column.json").unlink()
    protein_ntk.run_artefact("ci", out=tmp_path)
    assert calls == ["no LN"], "a rerun redoes only what is missing"

    table = protein.table_1_markdown({"NTK": loaded})
    assert "LN first" in table and f"{column['r2_ood']:.2f} |" in table.replace("**", "")
    assert protein_ntk.load_artefact("ci", tmp_path / "nothing") is None


def test_ntk_live_run_and_jitter_sweep(monkeypatch: pytest.MonkeyPatch, split: casp.CaspSplit) -> None:
    results = protein_ntk.run(TINY_NTK, split)
    assert set(results.columns) == {"no LN", "LN first"} and results.complete
    assert results.ood_predictions("no LN").shape == (len(split.y_ood),)
    sweep = protein_ntk.jitter_sweep(split, "LN first", 100, [1e-12, 1e-8, 1e-2])
    assert abs(sweep["ood"][0] - sweep["ood"][1]) < 1e-6 and sweep["ood"][2] != sweep["ood"][0]
    records = {"no LN": [_record("no LN", s, 0.5, 0.3 + 0.1 * s) for s in range(3)],
               "XGBoost": [_record("XGBoost", s, 0.5, 0.3) for s in range(3)]}
    spread = protein_ntk.ood_seed_spread(protein.Results(TINY, records))
    assert set(spread) == {"no LN"} and spread["no LN"]["r2_ood_sd"] == pytest.approx(0.1)


def test_error_by_input_norm_groups_by_feature_norm(split: casp.CaspSplit) -> None:
    norm = np.linalg.norm(split.inputs("ood"), axis=1)
    far = norm > np.quantile(norm, 0.9)
    predictions = split.y_ood + np.where(far, 3.0, 1.0)  # error 1 near, 3 for the farthest tenth
    out = protein_ntk.error_by_input_norm(split, predictions)
    assert sum(out["n"]) == len(norm) and len(out["edges"]) == 4
    assert out["mse"][:2] == pytest.approx([1.0, 1.0]) and out["mse"][2] == pytest.approx(9.0)
    assert out["train_quantiles"][-1] == pytest.approx(np.quantile(np.linalg.norm(split.inputs("train"), axis=1), 0.99))
    with pytest.raises(ValueError, match="one value per OOD protein"):
        protein_ntk.error_by_input_norm(split, predictions[:-1])


def test_binned_view_and_measured_trend() -> None:
    from companion.experiments import protein_figure

    area = np.array([20_500.0, 21_000, 23_000, 25_000, 27_000, 35_000])
    values = np.array([[1.0, 3.0, 5.0, 7.0, 9.0, 11.0], [3.0, 5.0, 5.0, 7.0, 9.0, 11.0]])
    bins = protein_figure.binned(area, values)
    np.testing.assert_array_equal(bins["n"], [2, 1, 1, 1, 1])
    assert bins["mean"][0] == pytest.approx(3.0) and np.isnan(bins["half_width"][1])
    assert protein_figure.bin_labels() == ["20–22k", "22–24k", "24–26k", "26–30k", "30k+"]
    rng = np.random.default_rng(0)
    x = rng.uniform(20_000, 30_000, 300)
    y = 5 + x / 5_000 + rng.normal(0, 1, 300)
    grid = np.linspace(x.min(), x.max(), 9)
    trend = protein_figure.measured_trend(x, y, grid, boots=30)
    assert np.all(trend.lower <= trend.mean + 1e-9) and np.all(trend.mean <= trend.upper + 1e-9)
    np.testing.assert_allclose(trend.mean, 5 + grid / 5_000, atol=0.5)
