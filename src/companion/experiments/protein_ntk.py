r"""The protein chapter's infinite-width column: what the theory itself predicts on CASP.

For each network of Table 1 (no LN, LN every, LN first, LN second) the infinitely wide network
of the same architecture, in the NTK parametrisation of the theory, trained by gradient flow on
the squared loss to convergence, predicts in expectation over its initialisation
$\Theta(x, X) \Theta(X, X)^{-1} y$ (Lee et al. 2019; the paper's Sec. 2). This module computes
that prediction on the standardised CASP features and targets of the chapter's split, with
:func:`companion.kernels.large.large_ntk_regression` (float64, one ``n x n`` matrix in memory),
its $R^2$ in domain and out of domain, and, on a subsample, the spread over initialisations that the
theory gives (:func:`companion.kernels.large.ensemble_moments`).

The training inputs contain exact duplicates (1,417 of the 40,132 rows repeat another row's
features, with other targets), so $\Theta(X, X)$ is singular and a noiseless interpolant does not
exist; the limit of $(\Theta + \lambda I)^{-1}$ for $\lambda \to 0$ does, and predicts the average
target at a repeated input. We use $\lambda$ = ``relative_jitter`` $\cdot \operatorname{mean}(\operatorname{diag} \Theta)$ with
``relative_jitter = 1e-8``: :func:`jitter_sweep` shows that the $R^2$ does not change between 1e-12
and 1e-6 (the chapter shows it), so the value is a numerical device, not a ridge that regularises.

``python -m companion run protein-ntk --profile full`` saves one file per architecture in
``artefacts/protein/ntk-full/`` (resumable: finished architectures are skipped).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from companion import artefacts, profile, progress
from companion.data import casp
from companion.experiments import protein
from companion.kernels import kernel, large
from companion.stats import MeanCI, mean_ci, r2_score

__all__ = ["NTKConfig", "NTK_CONFIGS", "config", "column", "spread", "run", "jitter_sweep", "run_artefact",
           "load_artefact", "write_summary", "ood_seed_spread", "error_by_input_norm", "main"]

#: Label of the infinite-width column group in Table 1.
LABEL = "NTK, infinite width"
#: How the summary of this run names the experiment.
EXPERIMENT = "protein (NTK, infinite width)"


@dataclasses.dataclass(frozen=True)
class NTKConfig:
    """Sizes of the infinite-width computation; one per profile in :data:`NTK_CONFIGS`."""

    n_train: int | None  # None: all 40,132 training rows
    ensemble_n: int  # training rows of the spread over initialisations (dense covariance)
    relative_jitter: float = 1e-8
    block_size: int = large.BLOCK
    ensemble_draws: int = 2000
    split_seed: int = 0
    placements: tuple[str, ...] = ("none", "first", "every", "second")


#: ``ci``: a subsample that takes seconds per network; ``full``: every training row.
NTK_CONFIGS = {
    "ci": NTKConfig(n_train=1500, ensemble_n=1000, block_size=512),
    "full": NTKConfig(n_train=None, ensemble_n=4000),
}


def config(profile_name: str | None = None) -> NTKConfig:
    """The configuration of the active profile (or of ``profile_name``)."""
    return profile.select(NTK_CONFIGS, profile_name)


def specs(cfg: NTKConfig) -> dict[str, "protein.MLPSpec"]:
    """The chapter's four networks (the kernels use their depth, activation, scales, bias and LN)."""
    nets = protein.architectures(protein.Config(seeds=1, epochs=1, placements=cfg.placements))
    return nets


def column(cfg: NTKConfig, split: casp.CaspSplit, method: str) -> dict:
    """The infinite-width mean prediction of ``method`` trained on ``cfg.n_train`` rows: $R^2$, OOD predictions, cost."""
    spec = specs(cfg)[method]
    n = cfg.n_train or len(split.y_train)
    start = time.perf_counter()
    result = large.large_ntk_regression(
        split.inputs("train")[:n], split.targets("train")[:n],
        {"id": split.inputs("id"), "ood": split.inputs("ood")}, spec,
        relative_jitter=cfg.relative_jitter, block_size=cfg.block_size,
        progress=lambda total: progress.bar(total, f"{method}: Gram blocks"))
    pred = {part: split.to_rmsd(v) for part, v in result.means.items()}
    return {
        "method": method, "n_train": n,
        "r2_id": float(r2_score(split.y_id, pred["id"])), "r2_ood": float(r2_score(split.y_ood, pred["ood"])),
        "ood_predictions": [round(float(v), 4) for v in pred["ood"]],
        "relative_jitter": result.relative_jitter, "jitter": result.jitter,
        "seconds": {k: round(v, 1) for k, v in result.seconds.items()} | {"total": round(time.perf_counter() - start, 1)},
        "peak_memory_gb": round(large.peak_memory_bytes() / 1e9, 2),
    }


def spread(cfg: NTKConfig, split: casp.CaspSplit, method: str, seed: int = 0) -> dict:
    """The theory's spread over initialisations on ``cfg.ensemble_n`` training rows.

    The outputs of the infinitely wide network at the OOD proteins are Gaussian over
    initialisations (:func:`companion.kernels.large.ensemble_moments`); returned are the mean
    predictive standard deviation (Angstrom) and the distribution of the OOD $R^2$ over
    ``cfg.ensemble_draws`` draws (its standard deviation and range), comparable with the
    trained networks' spread over seeds.
    """
    spec = specs(cfg)[method]
    n = cfg.ensemble_n
    mean, cov = large.ensemble_moments(split.inputs("train")[:n], split.targets("train")[:n],
                                       split.inputs("ood"), spec, relative_jitter=cfg.relative_jitter)
    scale = float(split.y_train.std())
    values, vectors = np.linalg.eigh(cov)
    root = vectors * np.sqrt(np.clip(values, 0, None))
    draws = mean + np.random.default_rng(seed).standard_normal((cfg.ensemble_draws, len(mean))) @ root.T
    r2 = r2_score(split.y_ood, split.to_rmsd(draws))
    return {
        "method": method, "n_train": n,
        "ood_sd_mean": float(np.mean(np.sqrt(np.clip(np.diag(cov), 0, None))) * scale),
        "r2_ood_mean_prediction": float(r2_score(split.y_ood, split.to_rmsd(mean))),
        "r2_ood_draws_sd": float(np.std(r2, ddof=1)),
        "r2_ood_draws_quantiles": [float(q) for q in np.quantile(r2, [0.05, 0.5, 0.95])],
    }


@dataclasses.dataclass
class NTKResults:
    """Per-architecture columns and spreads (live or from the artefact)."""

    config: NTKConfig
    columns: dict[str, dict]
    spreads: dict[str, dict]
    summary: dict | None = None
    deterministic = True  # one prediction, no spread over seeds: Table 1 shows it without interval

    @property
    def complete(self) -> bool:
        """Every architecture has its column and its spread."""
        return set(self.columns) == set(specs(self.config)) and set(self.spreads) == set(specs(self.config))

    def r2(self, method: str, part: str) -> float:
        """$R^2$ of ``method``'s infinite-width prediction on ``part`` (``id`` or ``ood``)."""
        return float(self.columns[method][f"r2_{part}"])

    def table(self) -> dict[str, dict[str, MeanCI]]:
        """Table-1 cells (a single deterministic value: zero-width interval)."""
        return {m: {p: mean_ci(np.array([c[f"r2_{p}"]] * 2)) for p in protein.PARTS} for m, c in self.columns.items()}

    def ood_predictions(self, method: str) -> np.ndarray:
        """``method``'s infinite-width prediction (Angstrom) for every OOD protein."""
        return np.asarray(self.columns[method]["ood_predictions"], dtype=np.float64)


def run(cfg: NTKConfig | None = None, split: casp.CaspSplit | None = None, with_spread: bool = True) -> NTKResults:
    """Every architecture's column (and spread), in memory: the chapter's live run."""
    cfg = cfg or config()
    split = split or casp.split(casp.load(), seed=cfg.split_seed)
    names = list(specs(cfg))
    return NTKResults(cfg, {m: column(cfg, split, m) for m in names},
                      {m: spread(cfg, split, m) for m in names} if with_spread else {})


def jitter_sweep(split: casp.CaspSplit, method: str, n: int, relative_jitters: Sequence[float]) -> dict[str, np.ndarray]:
    """$R^2$ (ID, OOD) of the NTK prediction on ``n`` training rows for each relative jitter (ridge).

    One eigendecomposition of the Gram matrix serves every jitter.
    """
    spec = specs(NTKConfig(n_train=n, ensemble_n=n))[method]
    x, y = split.inputs("train")[:n], split.targets("train")[:n]
    gram = kernel(x, None, spec).ntk
    values, vectors = np.linalg.eigh(gram)
    scale = float(np.mean(np.diag(gram)))
    projected = vectors.T @ y
    cross = {p: kernel(split.inputs(p), x, spec).ntk for p in protein.PARTS}
    out = {p: [] for p in protein.PARTS}
    for relative in relative_jitters:
        alpha = vectors @ (projected / (values + relative * scale))
        for p in protein.PARTS:
            out[p].append(float(r2_score(getattr(split, f"y_{p}"), split.to_rmsd(cross[p] @ alpha))))
    return {p: np.array(v) for p, v in out.items()} | {"relative_jitter": np.asarray(relative_jitters, dtype=float),
                                                       "min_eigenvalue": np.array(values[0] / scale)}


def error_by_input_norm(split: casp.CaspSplit, predictions: np.ndarray,
                        quantiles: Sequence[float] = (0.5, 0.9)) -> dict[str, list[float]]:
    """Squared error of OOD predictions grouped by how far each protein's input lies from the origin.

    The theorems are about inputs far from the data, measured by the norm of the (standardised)
    features, so this groups the OOD proteins at the ``quantiles`` of that norm (default: below the
    median, median to 90th percentile, top 10%) and returns per group the norm range (``edges``),
    the number of proteins (``n``) and the mean squared error of ``predictions`` (Å²,
    ``mse``). ``train_quantiles`` gives the training inputs' norm at the same quantiles and at 0.99.
    """
    predictions = np.asarray(predictions, dtype=np.float64)
    if predictions.shape != split.y_ood.shape:
        raise ValueError(f"predictions must have one value per OOD protein, shape {split.y_ood.shape}; got {predictions.shape}")
    norm = np.linalg.norm(split.inputs("ood"), axis=1)
    edges = np.concatenate([[norm.min()], np.quantile(norm, quantiles), [norm.max()]])
    group = np.clip(np.searchsorted(edges, norm, side="right") - 1, 0, len(edges) - 2)
    error = (predictions - split.y_ood) ** 2
    train_norm = np.linalg.norm(split.inputs("train"), axis=1)
    return {"edges": edges.tolist(), "n": [int(np.sum(group == k)) for k in range(len(edges) - 1)],
            "mse": [float(np.mean(error[group == k])) for k in range(len(edges) - 1)],
            "train_quantiles": np.quantile(train_norm, [*quantiles, 0.99]).tolist()}


def ood_seed_spread(results: "protein.Results") -> dict[str, dict[str, float]]:
    """The trained networks' spread over seeds out of domain: mean over OOD proteins of the
    per-protein standard deviation over seeds (Angstrom) and the standard deviation of the OOD $R^2$."""
    return {m: {"ood_sd_mean": float(np.mean(np.std(results.ood_predictions(m), axis=0, ddof=1))),
                "r2_ood_sd": float(np.std(results.r2(m, "ood"), ddof=1))}
            for m in results.records if m != protein.XGBOOST}


# ---- the resumable full run: one file per architecture and part ---------------------------------

def _path(folder: Path, method: str, part: str) -> Path:
    return folder / "runs" / artefacts.slug(method) / f"{part}.json"


def run_artefact(profile_name: str | None = None, out: Path | None = None) -> Path:
    """Compute (or finish) every architecture's spread and column; each is saved as soon as it is done."""
    name = profile.active() if profile_name is None else profile_name
    cfg = config(name)
    folder = artefacts.output_folder("protein", f"ntk-{name}", out, summary_of=(EXPERIMENT, name))
    fp = artefacts.fingerprint(cfg)
    split = casp.split(casp.load(), seed=cfg.split_seed)
    for part, compute in (("spread", spread), ("column", column)):
        for method in specs(cfg):
            path = _path(folder, method, part)
            if path.is_file() and artefacts.read_json(path).get("config_fingerprint") == fp:
                print(f"{method} {part}: already saved", flush=True)
                continue
            origin = artefacts.provenance()
            content = compute(cfg, split, method)
            artefacts.write_json(path, content | {"config_fingerprint": fp, "provenance": origin})
            print(f"{method} {part}: saved ({content.get('seconds', {}).get('total', '')} s)", flush=True)
            write_summary(name, folder)
    write_summary(name, folder)
    return folder


def write_summary(profile_name: str, folder: Path) -> dict:
    """(Re)write ``summary.json`` of the saved files in ``folder``: what is done so far, with provenance."""
    cfg = config(profile_name)
    results = load_artefact(profile_name, folder, summary=False)
    columns = results.columns if results is not None else {}
    summary = {
        "experiment": EXPERIMENT, "profile": profile_name,
        "complete": bool(results is not None and results.complete),
        "config": dataclasses.asdict(cfg), "config_fingerprint": artefacts.fingerprint(cfg),
        "data": {"file": casp.FILENAME, "sha256": casp.SHA256},
        "done": {part: sorted(getattr(results, part) if results is not None else {}) for part in ("columns", "spreads")},
        "wall_seconds": round(sum(c["seconds"]["total"] for c in columns.values()), 1),
        "table": {m: {p: round(c[f"r2_{p}"], 4) for p in protein.PARTS} for m, c in columns.items()},
        "provenance": artefacts.provenance(),
    }
    artefacts.write_json(folder / "summary.json", summary)
    return summary


def load_artefact(profile_name: str = "full", folder: Path | None = None, summary: bool = True) -> NTKResults | None:
    """The saved infinite-width results (``None`` without any); incomplete ones are returned as far as they go."""
    folder = folder or artefacts.directory("protein", f"ntk-{profile_name}")
    if folder is None:
        return None
    head = artefacts.read_json(folder / "summary.json") if summary and (folder / "summary.json").is_file() else None
    cfg = config(profile_name)
    fp = artefacts.fingerprint(cfg)
    found = {part: {} for part in ("column", "spread")}
    for part in found:
        for method in specs(cfg):
            path = _path(folder, method, part)
            if path.is_file():
                content = artefacts.read_json(path)
                if content.get("config_fingerprint") == fp:
                    found[part][method] = content
    if not any(found.values()):
        return None
    return NTKResults(cfg, found["column"], found["spread"], head)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m companion run protein-ntk``: compute (or resume) the infinite-width column."""
    args = artefacts.command_line(
        "protein-ntk", "The infinite-width (NTK) prediction of the protein chapter's four networks: "
        "saved per architecture; rerunning skips those already saved.", argv)
    folder = run_artefact(args.profile, out=args.out)
    print(f"wrote {folder / 'summary.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
