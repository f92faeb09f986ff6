"""Which of our design choices decide whether the transformer without LayerNorm explodes (Fig. 7).

The paper fixes only part of its transformer experiment (App. M): decoder-only, 2 layers, 4 heads,
width 64, one LayerNorm "right after the input embedding" as the only toggle, linear sequences
``f(i) = a + b i`` with ``a, b ~ N(0, 1)``, ``i = 1..30`` for training, evaluation at
``i = 20..100``, 5 seeds. Everything else is ours, and this study varies it, **one choice at a
time** from our baseline (:mod:`companion.experiments.transformer`), plus one combination of the
choices that move the result furthest towards the paper's figure. Each choice is a *cell*
(:data:`CELLS`); in every cell both variants (``no LN`` and ``LN first``) are trained for every seed.

Training choices (a cell each): where the LayerNorm sits (on the value embedding, or on the sum
of value and position embeddings); the positions (fixed sinusoidal, a learned table, none); the
blocks (plain, or pre-LN with a final LayerNorm, which puts LayerNorms into the "no LN" network
too); the embedding's bias scale (``sigma_b = 1`` or ``0.1``, the paper's bias variance 0.01);
the other layers' initialisation (flax defaults or the paper's Kaiming weights with ``N(0, 0.01)``
biases); and whether the values are standardised (divided by the training values' standard
deviation before they enter the network, predictions multiplied back).

Evaluation choices need no retraining, so every trained network is evaluated under all of them:
teacher-forced (each prediction reads the true values) or autoregressive (from ``i = 30`` on, each
prediction reads the network's own earlier predictions); and, per predicted index, the mean
absolute error per sequence, the mean size of the prediction and its *signed* mean over the random
sequences (whose truth is about 0). Each run stores these curves; :func:`measures` turns them
into the numbers that define "explodes" (:data:`EXPLODES`).

``python -m companion run transformer-ablation --profile full`` saves one JSON per
(cell, variant, seed) under ``artefacts/transformer/ablation-full/`` as soon as it is done (a
rerun resumes; each cell has its own configuration fingerprint, so cells can be added later).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from companion import artefacts, profile
from companion.data.sequences import LinearSequences
from companion.experiments.transformer_ablation_cells import (
    CELLS,
    CONFIGS,
    MODES,
    VARIANTS,
    Cell,
    Config,
    config,
    datasets,
)
from companion.train import TrainResult, fit
from companion.transformer import Transformer

__all__ = [
    "Cell", "CELLS", "Config", "CONFIGS", "config", "VARIANTS", "MODES", "EXPLODES", "FOLLOWS", "FITS", "train_cell",
    "rollout", "Study", "measures", "growth_exponent", "table", "run", "run_artefact", "write_summary",
    "load_artefact", "main",
]

EXPERIMENT = "transformer-ablation"
#: "Explodes": the mean size of the prediction at i = 91..100 is more than this many times the
#: mean size of the true values there (a line-follower gives 1, a bounded network less), for
#: more than half of the seeds.
EXPLODES = 2.0
#: "Follows the line": mean absolute error at i = 91..100 below this fraction of the true values.
FOLLOWS = 0.25
#: Where a prediction overflows float32 (an exploding rollout), it is counted and kept at this value.
OVERFLOW = float(np.finfo(np.float32).max)
#: "Fits the training range": final training MSE (median over seeds) below this fraction of the
#: mean squared training target.
FITS = 0.05


def _unit(cell: Cell, train: LinearSequences) -> float:
    """The factor the values are divided by before they enter the network (1 unless standardised)."""
    return float(np.std(train.values)) if cell.standardise else 1.0


def rollout(trained: TrainResult, values: np.ndarray, start: int) -> np.ndarray:
    """Autoregressive predictions ``(seeds, n, T - 1)`` of ``f(2..T)`` from ``values`` ``(n, T)``.

    Up to position ``start`` (the number of true values read) the network reads the true values;
    from there on each value it reads is its own prediction of it. Output ``[..., t]`` predicts
    value ``t + 2`` (1-based), as for teacher forcing.
    """
    model = trained.model
    seq = jnp.asarray(values[:, :, None], jax.tree_util.tree_leaves(trained.params)[0].dtype)

    def one(params: Any) -> jax.Array:
        def step(t: jax.Array, s: jax.Array) -> jax.Array:
            out = model.apply({"params": params}, s)[..., 0]
            return s.at[:, t, 0].set(out[:, t - 1])

        filled = jax.lax.fori_loop(start, seq.shape[1] - 1, step, seq)
        return model.apply({"params": params}, filled)[..., :-1, 0]

    return np.asarray(jax.jit(jax.vmap(one))(trained.params))


def train_cell(cfg: Config, cell: Cell, variant: str, seeds: list[int]) -> list[dict[str, Any]]:
    """Train one (cell, variant) for ``seeds`` at once and evaluate it; one JSON-ready dict per seed."""
    start = time.perf_counter()
    train, test = datasets(cfg)
    unit = _unit(cell, train)
    x, y = train.next_value_pairs()
    trained = fit(
        Transformer(cell.spec(cfg, variant == "LN first")), x / unit, y / unit, seeds=seeds, epochs=cfg.epochs,
        learning_rate=cfg.learning_rate, batch_size=cfg.batch_size, desc=f"{cell.name}, {variant}, seed(s) {seeds}",
    )
    values = test.values / unit
    # One forward pass for the teacher-forced predictions and for the input-scale probe: the
    # prediction of f(31) from s * f(1..30) is read at position 30 of a padded sequence (causal).
    probe = np.zeros((len(cfg.scales), values.shape[0], values.shape[1] - 1))
    probe[:, :, : cfg.train_length] = np.asarray(cfg.scales)[:, None, None] * values[None, :, : cfg.train_length]
    both = trained.predict(np.concatenate([values[None, :, :-1], probe]).reshape(-1, values.shape[1] - 1, 1))
    both = both.reshape(len(seeds), 1 + len(cfg.scales), *values[:, :-1].shape) * unit
    teacher = both[:, 0]
    scaled = np.mean(np.abs(both[:, 1:, :, cfg.train_length - 1]), axis=2)
    auto = rollout(trained, values[: cfg.n_rollout], cfg.train_length) * unit
    truth = test.values[:, 1:]
    seconds = (time.perf_counter() - start) / len(seeds)
    runs = []
    for k in range(len(seeds)):
        run = {"seconds": seconds, "train_loss": float(trained.losses[k, -1]) * unit**2,
               "scale_size": _rounded(np.nan_to_num(scaled[k], nan=OVERFLOW, posinf=OVERFLOW))}
        for mode, pred in zip(MODES, (teacher[k], auto[k])):
            n, overflow = pred.shape[0], ~np.isfinite(pred)
            # A rollout that explodes can overflow float32: count it and keep it at the largest float32.
            pred = np.nan_to_num(np.asarray(pred, np.float64), nan=OVERFLOW, posinf=OVERFLOW, neginf=-OVERFLOW)
            run[mode] = {
                "error": _rounded(np.mean(np.abs(pred - truth[:n]), axis=0)),
                "size": _rounded(np.mean(np.abs(pred), axis=0)),
                "signed": _rounded(np.mean(pred, axis=0)),
                "overflowed": int(overflow.sum()),
            }
        runs.append(run)
    return runs


def _rounded(values: np.ndarray) -> list:
    values = np.asarray(values, dtype=np.float64)
    if not np.all(np.isfinite(values)):
        raise FloatingPointError("a prediction is not finite; the run cannot be summarised")
    return [float(f"{v:.5g}") for v in values.ravel()]


@dataclasses.dataclass
class Study:
    """The stored or computed runs: ``runs[cell][variant]`` is a list over seeds of run dicts."""

    config: Config
    runs: dict[str, dict[str, list[dict[str, Any]]]]
    source: str

    @property
    def index(self) -> np.ndarray:
        """Index ``i + 1`` of the predicted value at each output position (2..eval_length)."""
        return np.arange(2, self.config.eval_length + 1)

    def curve(self, cell: str, variant: str, mode: str, key: str) -> np.ndarray:
        """Per-seed curves ``(seeds, eval_length - 1)`` of ``key`` (``error``, ``size``, ``signed``)."""
        return np.asarray([run[mode][key] for run in self.runs[cell][variant]])

    def truth(self, rows: int | None = None) -> dict[str, np.ndarray]:
        """Mean size, signed mean and spread of the true values per predicted index (first ``rows`` sequences)."""
        values = datasets(self.config)[1].values[:rows, 1:]
        return {"size": np.mean(np.abs(values), 0), "signed": np.mean(values, 0), "spread": np.std(values, 0)}


def growth_exponent(index: np.ndarray, size: np.ndarray, first: int, last: int) -> float:
    """Slope of ``log size`` against ``log i`` for predicted indices ``first..last``."""
    mask = (index >= first) & (index <= last)
    return float(np.polyfit(np.log(index[mask]), np.log(np.maximum(size[mask], 1e-12)), 1)[0])


def measures(study: Study, cell: str, variant: str, mode: str) -> dict[str, float]:
    """The numbers that say whether a (cell, variant) explodes under an evaluation ``mode``.

    All are means over seeds, at predicted indices 91..100 unless said otherwise:
    ``ratio`` (mean absolute prediction over mean absolute truth), ``relative_error`` (mean
    absolute error over mean absolute truth), ``standardised_error`` (mean absolute error over the
    spread of the truth), ``signed`` (absolute value of the signed mean prediction over the mean
    absolute truth: the "mean prediction" over random sequences), ``exponent`` (growth exponent of
    the mean absolute prediction along i = 30..100; the truth's is about 1), ``scale_growth``
    (mean absolute prediction of f(31) at input scale 1000 over that at 100),
    ``median_ratio`` and ``seeds_exploding`` (the ratio per seed: its median, and how many seeds
    exceed :data:`EXPLODES`), ``train_fraction`` (median final training MSE over the mean squared
    training target), and ``explodes`` (more than half the seeds do) / ``follows``
    (``relative_error`` below :data:`FOLLOWS`) / ``fits`` (``train_fraction`` below :data:`FITS`),
    1.0 or 0.0.
    """
    index = study.index
    far = index >= study.config.eval_length - 9
    rows = study.config.n_rollout if mode == "autoregressive" else None
    truth = study.truth(rows)
    size = study.curve(cell, variant, mode, "size").mean(0)
    error = study.curve(cell, variant, mode, "error").mean(0)
    signed = study.curve(cell, variant, mode, "signed").mean(0)
    scale = np.mean([run["scale_size"] for run in study.runs[cell][variant]], axis=0)
    s = np.asarray(study.config.scales)
    per_seed = study.curve(cell, variant, mode, "size")[:, far].mean(1) / truth["size"][far].mean()
    out = {
        "ratio": float(size[far].mean() / truth["size"][far].mean()),
        "median_ratio": float(np.median(per_seed)),
        "seeds_exploding": float(np.sum(per_seed > EXPLODES)),
        "seeds": float(per_seed.size),
        "relative_error": float(error[far].mean() / truth["size"][far].mean()),
        "standardised_error": float(np.mean(error[far] / truth["spread"][far])),
        "signed": float(np.abs(signed[far]).mean() / truth["size"][far].mean()),
        "exponent": growth_exponent(index, size, study.config.train_length, study.config.eval_length),
        "truth_exponent": growth_exponent(index, truth["size"], study.config.train_length, study.config.eval_length),
        "scale_growth": float(scale[s == 1000.0][0] / scale[s == 100.0][0]) if {100.0, 1000.0} <= set(s) else float("nan"),
    }
    targets = datasets(study.config)[0].next_value_pairs()[1]  # stored losses are in the values' units
    loss = np.median([run["train_loss"] for run in study.runs[cell][variant]])
    out["train_fraction"] = float(loss / np.mean(targets**2))
    out["fits"] = float(out["train_fraction"] < FITS)
    out["explodes"] = float(out["seeds_exploding"] > out["seeds"] / 2)
    out["follows"] = float(out["relative_error"] < FOLLOWS)
    return out


def table(study: Study) -> list[dict[str, Any]]:
    """One row per (cell, mode) with both variants' :func:`measures` side by side."""
    rows = []
    for cell in study.runs:
        for mode in MODES:
            row = {"cell": cell, "changes": CELLS[cell].changes(), "mode": mode}
            for variant in VARIANTS:
                row[variant] = {k: round(v, 4) for k, v in measures(study, cell, variant, mode).items()}
            rows.append(row)
    return rows


def run(cfg: Config | None = None) -> Study:
    """Train and evaluate every cell of ``cfg`` now (the live run of the chapter)."""
    cfg = cfg or config()
    seeds = list(range(cfg.seeds))
    runs = {c: {v: train_cell(cfg, CELLS[c], v, seeds) for v in VARIANTS} for c in cfg.cells}
    return Study(cfg, runs, source=f"computed now ({_profile_of(cfg)} profile)")


def _profile_of(cfg: Config) -> str:
    return next((name for name, c in CONFIGS.items() if c == cfg), "custom")


# ---- the resumable stored run: one file per (cell, variant, seed), fingerprinted per cell ----------

def _fingerprint(cfg: Config, cell: str) -> str:
    fields = dataclasses.asdict(cfg) | {"cells": None, "cell": dataclasses.asdict(CELLS[cell])}
    return artefacts.fingerprint(fields)


def _method(cell: str, variant: str) -> str:
    return f"{cell} {variant}"


def _collect(cfg: Config, folder: Path) -> Study | None:
    """The cells of ``cfg`` whose runs are all stored in ``folder`` (``None`` when there is none)."""
    runs: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for cell in cfg.cells:
        fp = _fingerprint(cfg, cell)
        per_variant = {v: [artefacts.load_run(folder, _method(cell, v), s, fp) for s in range(cfg.seeds)] for v in VARIANTS}
        if all(r is not None for per_seed in per_variant.values() for r in per_seed):
            runs[cell] = per_variant
    if not runs:
        return None
    stored = [r for by_variant in runs.values() for per_seed in by_variant.values() for r in per_seed]
    dates = sorted({r["provenance"]["date"] for r in stored})
    devices = sorted({d for r in stored for d in r["provenance"]["devices"]})
    source = (f"stored {_profile_of(cfg)}-profile results, {len(runs)} of {len(cfg.cells)} cells "
              f"({', '.join(devices)}; {dates[0][:10]} to {dates[-1][:10]})")
    return Study(cfg, runs, source)


def run_artefact(profile_name: str | None = None, out: Path | None = None, cells: Sequence[str] | None = None) -> Path:
    """Run (or finish) the study of ``profile_name``, one file per (cell, variant, seed); return the folder."""
    name = profile.active() if profile_name is None else profile_name
    cfg = config(name)
    folder = artefacts.output_folder("transformer", f"ablation-{name}", out, summary_of=(EXPERIMENT, name))
    for cell in cells or cfg.cells:
        if cell not in cfg.cells:
            raise ValueError(f"cell {cell!r} is not in the {name} profile; choose from {', '.join(cfg.cells)}")
        artefacts.resume(folder, [_method(cell, v) for v in VARIANTS], range(cfg.seeds), _fingerprint(cfg, cell),
                         lambda method, seeds, cell=cell: train_cell(cfg, CELLS[cell], method[len(cell) + 1:], seeds),
                         cfg.seeds)
        write_summary(cfg, name, folder)
    return folder


def write_summary(cfg: Config, name: str, folder: Path) -> None:
    """Write ``summary.json`` for the runs stored so far (the table of the complete cells, provenance)."""
    study = _collect(cfg, folder)
    stored = [artefacts.load_run(folder, _method(c, v), s, _fingerprint(cfg, c))
              for c in cfg.cells for v in VARIANTS for s in range(cfg.seeds)]
    stored = [r for r in stored if r is not None]
    summary = {
        "experiment": EXPERIMENT, "profile": name,
        "complete": study is not None and len(study.runs) == len(cfg.cells),
        "config": dataclasses.asdict(cfg), "cells": {c: dataclasses.asdict(CELLS[c]) for c in cfg.cells},
        "config_fingerprints": {c: _fingerprint(cfg, c) for c in cfg.cells},
        "wall_seconds": round(sum(r["seconds"] for r in stored), 1),
        "table": None if study is None else table(study),
        "run_dates": sorted({r["provenance"]["date"] for r in stored}),
        "run_devices": sorted({d for r in stored for d in r["provenance"]["devices"]}),
        "run_commits": sorted({str(r["provenance"]["commit"]) for r in stored}),
        "provenance": artefacts.provenance(),
    }
    artefacts.write_json(folder / "summary.json", summary)
    print(f"wrote {folder / 'summary.json'}", flush=True)


def load_artefact(profile_name: str = "full", folder: Path | None = None) -> Study | None:
    """The stored study of ``profile_name``: its complete cells (``None`` when there is none)."""
    folder = folder or artefacts.directory("transformer", f"ablation-{profile_name}")
    summary = artefacts.read_summary("transformer", f"ablation-{profile_name}", folder)
    if summary is None:
        return None
    saved = summary["config"]
    cfg = Config(**{k: tuple(v) if isinstance(v, list) else v for k, v in saved.items()})
    return _collect(cfg, folder)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m companion run transformer-ablation``: run (or resume) the study and save it."""
    args = artefacts.command_line(
        EXPERIMENT, "The transformer ablation (paper App. M, Fig. 7): the choices the paper leaves open, one at a "
        "time; results saved per cell, variant and seed; rerunning skips those already saved.", argv)
    run_artefact(args.profile, out=args.out)
    return 0
