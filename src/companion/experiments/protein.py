"""Chapter "Proteins larger than any seen in training": the paper's Sec. 4.2 (Table 1, Figure 3).

Two-hidden-layer ReLU networks of width 128 (no LayerNorm; LN in every, the first or the second
hidden layer) and an XGBoost baseline predict a protein's RMSD from nine physicochemical features.
They are trained on proteins with surface area ``F1 < 20,000`` and evaluated on held-out proteins
of the same range (ID) and on the larger proteins (OOD), with $R^2$ (Table 1) and the OOD predictions
against surface area (Figure 3).

Protocol (``full`` profile, the paper's App. J and Table 3): standard parametrisation with
Kaiming-uniform weights and ``N(0, 0.01)`` biases, parameter-free LayerNorm, MSE, full-batch Adam
(learning rate 1e-3) for 2,500 epochs on all 40,132 training rows, 10 seeds; XGBoost with the
package defaults and 100 boosting rounds. Our choices where the paper is silent: inputs and
targets standardised with the training rows' mean and standard deviation (XGBoost sees the raw
values, to which trees are invariant); one split (``split_seed``) shared by all seeds; Student-t
95% intervals (:func:`companion.stats.mean_ci`).

The ``full`` run is resumable (:func:`run_artefact`, ``python -m companion run protein``); the
chapter shows its committed artefact (:func:`load_artefact`) beside the live ``ci`` run. The paper's
Table 1 and the comparison with it are in :mod:`companion.experiments.protein_paper` (re-exported here).
"""

from __future__ import annotations

import dataclasses
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from companion import artefacts, profile
from companion.arch import MLPSpec
from companion.data import casp
from companion.experiments.protein_paper import (EXPLAINED_DIFFERENCES, PAPER_TABLE_1, PARTS, XGBOOST, closer_to_paper,
                                                 paper_agreement, paper_distance, table_1_markdown)
from companion.stats import MeanCI, best_and_overlapping, lowess_band, mean_ci, r2_score
from companion.train import fit

__all__ = [
    "Config", "CONFIGS", "batching_effect", "PAPER_TABLE_1", "EXPLAINED_DIFFERENCES", "XGBOOST", "Record", "Results",
    "config", "fingerprint", "architectures", "methods", "load_split", "train", "run", "run_artefact", "load_artefact",
    "main", "paper_agreement", "paper_distance", "closer_to_paper", "table_1_markdown", "write_summary", "plot_figure_3",
    "xgboost_over_splits", "training_flops",
]

@dataclasses.dataclass(frozen=True)
class Config:
    """Sizes of the experiment; one instance per profile in :data:`CONFIGS`."""

    seeds: int
    epochs: int
    n_train: int | None = None  # None: all training rows (40,132)
    split_seed: int = 0
    train_fraction: float = 0.9
    area_threshold: float = 20_000.0
    depth: int = 2
    width: int = 128
    learning_rate: float = 1e-3
    placements: tuple[str, ...] = ("every", "first", "second", "none")
    xgb_rounds: int = 100
    lowess_frac: float = 2 / 3
    redraw_split: bool = False  # True: seed s trains on the split drawn with split_seed + s


#: The sizes of each profile: ``ci`` for two CPU cores, ``full`` for the paper's protocol.
CONFIGS = {
    "ci": Config(seeds=3, epochs=300, n_train=8000),
    "full": Config(seeds=10, epochs=2500),
}


def config(profile_name: str | None = None, redrawn: bool = False) -> Config:
    """The configuration of the active profile (or of ``profile_name``); ``redrawn``: its variant in
    which every seed redraws the 90/10 split (the protocol the paper's XGBoost interval implies)."""
    cfg = profile.select(CONFIGS, profile_name)
    return dataclasses.replace(cfg, redraw_split=True) if redrawn else cfg


def fingerprint(cfg: Config) -> str:
    """The artefact fingerprint of ``cfg``; ``redraw_split=False`` leaves it as it was before that
    option existed, so the fixed-split artefact stays valid."""
    fields = dataclasses.asdict(cfg)
    if not fields["redraw_split"]:
        del fields["redraw_split"]
    return artefacts.fingerprint(fields)


def architectures(cfg: Config) -> dict[str, MLPSpec]:
    """The four networks of Table 1, keyed by label (``LN every``, ..., ``no LN``)."""
    base = MLPSpec(depth=cfg.depth, width=cfg.width, activation="relu")
    specs = [base.replace(layernorm=p) for p in cfg.placements]
    return {spec.label: spec for spec in specs}


def methods(cfg: Config) -> list[str]:
    """Column order of Table 1: the networks, then XGBoost."""
    return [*architectures(cfg), XGBOOST]


def load_split(cfg: Config, seed: int = 0) -> casp.CaspSplit:
    """The checked data set, split as in the paper with ``cfg.split_seed`` (plus ``seed`` when
    ``cfg.redraw_split``: each seed its own split)."""
    split_seed = cfg.split_seed + (int(seed) if cfg.redraw_split else 0)
    return casp.split(casp.load(), seed=split_seed, train_fraction=cfg.train_fraction, threshold=cfg.area_threshold)


@dataclasses.dataclass
class Record:
    """One trained model: its $R^2$, its OOD predictions (Angstrom) and how it was made."""

    method: str
    seed: int
    r2_id: float
    r2_ood: float
    train_mse: float
    seconds: float
    ood_predictions: np.ndarray
    provenance: dict = dataclasses.field(default_factory=dict)


def _records(method: str, seeds: Sequence[int], split: casp.CaspSplit, pred_train: np.ndarray,
             y_train: np.ndarray, pred_id: np.ndarray, pred_ood: np.ndarray, seconds: float) -> list[Record]:
    r2_id, r2_ood = r2_score(split.y_id, pred_id), r2_score(split.y_ood, pred_ood)
    mse = np.mean((pred_train - y_train) ** 2, axis=-1)
    return [
        Record(method, int(s), float(r2_id[i]), float(r2_ood[i]), float(mse[i]), seconds / len(seeds),
               np.asarray(pred_ood[i], dtype=np.float64))
        for i, s in enumerate(seeds)
    ]


def train(cfg: Config, split: casp.CaspSplit, method: str, seeds: Sequence[int]) -> list[Record]:
    """Train ``method`` (a label of :func:`methods`) once per seed; networks are vmapped over seeds.

    With ``cfg.redraw_split`` each seed trains on its own split (:func:`load_split`; ``split`` is
    then unused) and seeds train one after another.
    """
    seeds = [int(s) for s in seeds]
    if cfg.redraw_split:
        fixed = dataclasses.replace(cfg, redraw_split=False)
        return [r for s in seeds
                for r in train(dataclasses.replace(fixed, split_seed=cfg.split_seed + s), load_split(cfg, s), method, [s])]
    n = cfg.n_train or len(split.y_train)
    start = time.perf_counter()
    if method == XGBOOST:
        try:
            import xgboost
        except ImportError:
            raise ImportError("the XGBoost baseline needs the xgboost package: pip install xgboost") from None

        data = xgboost.DMatrix(split.x_train[:n], label=split.y_train[:n])
        preds = {part: [] for part in ("train", "id", "ood")}
        for seed in seeds:
            # nthread=1: deterministic and, on a shared CPU, faster than competing for cores.
            booster = xgboost.train({"seed": seed, "nthread": 1}, data, num_boost_round=cfg.xgb_rounds)
            for part, x in (("train", split.x_train[:n]), ("id", split.x_id), ("ood", split.x_ood)):
                preds[part].append(booster.predict(xgboost.DMatrix(x)))
        pred = {part: np.stack(p) for part, p in preds.items()}
    else:
        spec = architectures(cfg).get(method)
        if spec is None:
            raise ValueError(f"unknown method {method!r}; choose one of {', '.join(methods(cfg))}")
        trained = fit(spec, split.inputs("train")[:n], split.targets("train")[:n], seeds=seeds,
                      epochs=cfg.epochs, learning_rate=cfg.learning_rate, desc=method)
        pred = {part: split.to_rmsd(trained.predict(split.inputs(part)))
                for part in ("id", "ood")} | {"train": split.to_rmsd(trained.predict(split.inputs("train")[:n]))}
    return _records(method, seeds, split, pred["train"], split.y_train[:n], pred["id"], pred["ood"],
                    time.perf_counter() - start)


@dataclasses.dataclass
class Results:
    """Records per method (live or loaded from an artefact) and the chapter's summaries of them."""

    config: Config
    records: dict[str, list[Record]]
    summary: dict | None = None  # the artefact's summary.json (provenance), if loaded from disk

    @property
    def complete(self) -> bool:
        """Every method has a record for every seed of the configuration."""
        want = set(range(self.config.seeds))
        return all({r.seed for r in self.records.get(m, [])} == want for m in methods(self.config))

    def r2(self, method: str, part: str) -> np.ndarray:
        """$R^2$ of every seed of ``method`` on ``part`` (``id`` or ``ood``)."""
        if part not in PARTS:
            raise ValueError(f"unknown part {part!r}; choose 'id' or 'ood'")
        return np.array([getattr(r, f"r2_{part}") for r in self.records[method]])

    def table(self) -> dict[str, dict[str, MeanCI]]:
        """Table 1: ``{method: {"ood": MeanCI, "id": MeanCI}}``; a method with fewer than two runs
        (an interrupted ``full`` run) has no interval and is left out until it has two."""
        return {m: {p: mean_ci(self.r2(m, p)) for p in PARTS} for m, runs in self.records.items() if len(runs) >= 2}

    def bold(self, part: str) -> set[str]:
        """Methods the paper's rule would set in bold in row ``part``."""
        return best_and_overlapping({m: s[part] for m, s in self.table().items()})

    def ood_predictions(self, method: str) -> np.ndarray:
        """OOD predictions of every seed, shape ``(seeds, n_ood)``, in Angstrom."""
        return np.stack([r.ood_predictions for r in self.records[method]])

    def trend(self, method: str, area: np.ndarray, grid: np.ndarray) -> MeanCI:
        """LOWESS trend of the OOD prediction against surface area, per seed; mean and 95% CI over seeds."""
        return lowess_band(area, self.ood_predictions(method), grid, self.config.lowess_frac)


def run(cfg: Config | None = None, split: casp.CaspSplit | None = None) -> Results:
    """Train every method for ``cfg.seeds`` seeds, in memory (what the chapter's live run does)."""
    cfg = cfg or config()
    split = split or load_split(cfg)
    seeds = range(cfg.seeds)
    return Results(cfg, {m: train(cfg, split, m, seeds) for m in methods(cfg)})


def batching_effect(cfg: Config, split: casp.CaspSplit, results: Results, method: str) -> dict[str, Any]:
    """How much training the seeds together (vmapped, as :func:`run` does) changes ``method``'s OOD $R^2$.

    Retrains each seed of ``results`` alone and compares: the largest change of one seed's OOD $R^2$,
    the change of the mean over seeds, and the seeds' standard deviation and standard error of the
    mean, the noise the table's intervals already carry. Batched and single runs differ only by
    rounding (the batched matrix products sum in another order), which training amplifies.
    """
    seeds = [r.seed for r in results.records[method]]
    together = results.r2(method, "ood")
    alone = np.array([train(cfg, split, method, [s])[0].r2_ood for s in seeds])
    sd = float(np.std(together, ddof=1))
    return {"max_change": float(np.max(np.abs(alone - together))),
            "mean_change": float(abs(alone.mean() - together.mean())),
            "seed_sd": sd, "standard_error": sd / float(np.sqrt(len(seeds)))}


def training_flops(cfg: Config, n_train: int = 40_132) -> float:
    """Floating-point operations of training every network for every seed (multiply-adds of the
    dense layers, forward and backward: about 6 per weight, row and epoch)."""
    weights = len(casp.FEATURES) * cfg.width + (cfg.depth - 1) * cfg.width**2 + cfg.width
    rows = cfg.n_train or n_train
    return 6.0 * weights * rows * cfg.epochs * cfg.seeds * len(cfg.placements)


def plot_figure_3(axes: Sequence, results: Results, split: casp.CaspSplit, grid_points: int = 120) -> None:
    """Figure 3 on three axes (:func:`companion.experiments.protein_figure.plot`): OOD predictions
    pooled over seeds, LOWESS trends against surface area with the measured trend and its bootstrap
    band, and the binned view of the tail. Bands of the models: 95% intervals over seeds."""
    from companion.experiments import protein_figure

    protein_figure.plot(axes, {m: results.ood_predictions(m) for m in results.records}, split,
                        results.config.lowess_frac, grid_points=grid_points)


def xgboost_over_splits(cfg: Config, splits: int = 10) -> dict[str, MeanCI]:
    """$R^2$ of XGBoost (deterministic given its data) over ``splits`` re-drawn 90/10 splits.

    Always on the whole training split (it takes seconds), so the spread is the split's alone.
    """
    frame = casp.load()
    scores = {p: [] for p in PARTS}
    for split_seed in range(splits):
        s = casp.split(frame, seed=split_seed, train_fraction=cfg.train_fraction, threshold=cfg.area_threshold)
        record = train(dataclasses.replace(cfg, split_seed=split_seed, n_train=None), s, XGBOOST, [0])[0]
        scores["id"].append(record.r2_id)
        scores["ood"].append(record.r2_ood)
    return {p: mean_ci(v) for p, v in scores.items()}


# ---- the resumable full run: one file per (method, seed), a summary with provenance -------------

def _to_json(record: Record) -> dict:
    content = dataclasses.asdict(record)
    content["ood_predictions"] = [round(float(v), 4) for v in record.ood_predictions]  # 1e-4 Angstrom
    return content


def _from_json(content: dict) -> Record:
    fields = {f.name: content[f.name] for f in dataclasses.fields(Record) if f.name in content}
    return Record(**fields | {"ood_predictions": np.asarray(content["ood_predictions"], dtype=np.float64)})


def _collect(cfg: Config, folder: Path) -> Results:
    fp = fingerprint(cfg)
    found = {m: [artefacts.load_run(folder, m, s, fp) for s in range(cfg.seeds)] for m in methods(cfg)}
    return Results(cfg, {m: [_from_json(c) for c in runs if c] for m, runs in found.items() if any(runs)})


def run_artefact(profile_name: str | None = None, out: Path | None = None, seeds_at_once: int | None = None,
                 redrawn: bool = False) -> Path:
    """Run (or finish) the experiment of ``profile_name``, one file per (method, seed); return the folder.

    Runs already saved with the same configuration are skipped, so an interrupted run continues
    where it stopped. ``seeds_at_once`` seeds are trained together (vmapped; default: as the saved runs, else all;
    best on a GPU; 1 on a CPU saves each seed as soon as it is done). ``redrawn``: the protocol in
    which every seed redraws the split, saved in ``artefacts/protein/<profile>-redrawn``.
    """
    name = profile.active() if profile_name is None else profile_name
    cfg = config(name, redrawn)
    folder = artefacts.output_folder("protein", name + ("-redrawn" if redrawn else ""), out, summary_of=("protein", name))
    split = load_split(cfg)
    artefacts.resume(folder, methods(cfg), range(cfg.seeds), fingerprint(cfg),
                     lambda m, seeds: [_to_json(r) for r in train(cfg, split, m, seeds)],
                     seeds_at_once, default_seeds_at_once=cfg.seeds,
                     on_saved=lambda: write_summary(cfg, name, folder, quiet=True))
    write_summary(cfg, name, folder)
    return folder


def write_summary(cfg: Config, profile_name: str, folder: Path, quiet: bool = False) -> dict:
    """Write ``folder/summary.json`` from the runs saved there so far (``complete`` says whether
    every method has every seed); :func:`run_artefact` refreshes it after every saved run, so an
    interrupted run leaves a summary of what it finished."""
    results = _collect(cfg, folder)
    runs = [r for rs in results.records.values() for r in rs]
    summary = {
        "experiment": "protein", "profile": profile_name, "complete": results.complete,
        "config": dataclasses.asdict(results.config), "config_fingerprint": fingerprint(results.config),
        "data": {"file": casp.FILENAME, "sha256": casp.SHA256},
        "runs": len(runs), "wall_seconds": round(sum(r.seconds for r in runs), 1),
        "table_1": {m: {p: [round(float(s.mean), 4), round(float(s.half_width), 4)] for p, s in parts.items()}
                    for m, parts in results.table().items()},
        "run_dates": sorted({r.provenance.get("date", "?") for r in runs}),
        "run_devices": sorted({d for r in runs for d in r.provenance.get("devices", [])}),
        "run_commits": sorted({str(r.provenance.get("commit")) for r in runs}),
        "provenance": artefacts.provenance(),
    }
    artefacts.write_json(folder / "summary.json", summary)
    if not quiet:
        print(f"wrote {folder / 'summary.json'} ({summary['runs']} runs, {summary['wall_seconds']:.0f} s of training)")
    return summary


def load_artefact(profile_name: str = "full", folder: Path | None = None, redrawn: bool = False) -> Results | None:
    """The saved results of ``profile_name`` (``redrawn``: its redrawn-split protocol) with their
    summary (``None`` when there are none)."""
    folder = folder or artefacts.directory("protein", profile_name + ("-redrawn" if redrawn else ""))
    summary = artefacts.read_summary("protein", profile_name, folder)
    if summary is None:
        return None
    saved = summary["config"]
    cfg = Config(**{k: tuple(v) if isinstance(v, list) else v for k, v in saved.items()})
    results = _collect(cfg, folder)
    results.summary = summary
    return results


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m companion run protein``: run (or resume) the experiment and save its artefacts."""
    argv = list(sys.argv[1:] if argv is None else argv)
    redrawn = "--redrawn" in argv
    args = artefacts.command_line(
        "protein", "The protein experiment (paper Sec. 4.2, Table 1): results saved per method and seed; "
        "rerunning skips those already saved. Add --redrawn for the protocol in which every seed "
        "redraws the 90/10 split (saved in artefacts/protein/<profile>-redrawn).",
        [a for a in argv if a != "--redrawn"],
        seeds_at_once="train N seeds together (default: as the saved runs, else all; use 1 on a CPU to save each seed as it finishes)")
    run_artefact(args.profile, out=args.out, seeds_at_once=args.seeds_at_once, redrawn=redrawn)
    return 0
