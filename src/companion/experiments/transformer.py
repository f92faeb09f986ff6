r"""Chapter "A transformer with one LayerNorm": the paper's Fig. 7 (App. M) and its kernel.

Two decoder-only transformers (:mod:`companion.transformer`: 2 blocks, 4 heads, width 64, causal
attention, sinusoidal positions, blocks without normalisation) differ in one thing: a LayerNorm
right after the input embedding, which makes the network start Linear -> LN as the paper's
Theorems C.1 and C.3 require. Both learn next-value prediction on linear sequences
``f(i) = a + b i``, ``a, b ~ N(0, 1)``, ``i = 1..30`` (:mod:`companion.data.sequences`), and are
evaluated up to ``i = 100``, as in the paper. Three measurements:

* **along the sequence** (the paper's figure): error and size of the prediction of ``f(i + 1)``
  for ``i`` up to 100, mean and 95% band over seeds;
* **along the input scale**: the prediction of ``f(31)`` when the 30 inputs are multiplied by
  ``s`` (the supremum over inputs of Theorem C.3 taken along a ray);
* **the kernel view**: the empirical NTK diagonal at initialisation, $\|\nabla_\theta f(s u)\|^2$ for
  a fixed sequence ``u``, as ``s`` grows, at several widths (:func:`companion.kernels.empirical_ntk_fn`).
  Theorem C.1: with the LayerNorm it depends on ``s u`` only through soft-cosines, so it levels off.

The ``full`` profile is the paper's protocol where the paper gives one (architecture, data, 5
seeds, evaluation range); the rest (training set size, optimiser, epochs, batch size) is ours and
stated in :data:`CONFIGS`. ``python -m companion run transformer --profile full`` saves each
(variant, seed) run and the kernel measurement under ``artefacts/transformer/full/`` as soon as
it is done (:mod:`companion.artefacts`; a rerun resumes), and the chapter shows them when present.
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
from companion.data.sequences import LinearSequences, linear_sequences
from companion.kernels import empirical_ntk_fn
from companion.stats import MeanCI, mean_ci
from companion.train import TrainResult, fit
from companion.transformer import Transformer, TransformerSpec

__all__ = [
    "Config", "CONFIGS", "config", "specs", "Result", "run", "kernel_diagonals", "plot_sequence",
    "plot_scale", "run_artefact", "load_artefact", "main", "infinite_width_diagonals", "levels_off",
]


@dataclasses.dataclass(frozen=True)
class Config:
    """Sizes of the experiment; one instance per profile in :data:`CONFIGS`."""

    seeds: int
    n_train: int
    epochs: int
    batch_size: int
    n_test: int
    ntk_widths: tuple[int, ...]
    ntk_seeds: int
    layers: int = 2
    heads: int = 4
    width: int = 64
    train_length: int = 30
    eval_length: int = 100
    learning_rate: float = 1e-3
    scales: tuple[float, ...] = (1.0, 10.0, 100.0, 1000.0)
    ntk_scales: tuple[float, ...] = (0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0, 300.0, 1000.0)
    data_seed: int = 0
    test_seed: int = 1


CONFIGS = {
    "ci": Config(seeds=3, n_train=128, epochs=80, batch_size=16, n_test=128, ntk_widths=(32, 64, 128), ntk_seeds=2),
    "full": Config(
        seeds=5, n_train=10_000, epochs=40, batch_size=128, n_test=1000, ntk_widths=(32, 64, 128, 256), ntk_seeds=5
    ),
}


def config(profile_name: str | None = None) -> Config:
    """The configuration of the active profile (or of ``profile_name``)."""
    return profile.select(CONFIGS, profile_name)


def specs(cfg: Config, width: int | None = None) -> dict[str, TransformerSpec]:
    """The two transformers compared: ``no LN`` and ``LN first`` (LayerNorm after the embedding)."""
    base = TransformerSpec(layers=cfg.layers, heads=cfg.heads, width=width or cfg.width)
    return {spec.label: spec for spec in (base, base.replace(layernorm=True))}


def _data(cfg: Config) -> tuple[LinearSequences, LinearSequences]:
    return (
        linear_sequences(cfg.n_train, cfg.train_length, seed=cfg.data_seed),
        linear_sequences(cfg.n_test, cfg.eval_length, seed=cfg.test_seed),
    )


def _train(cfg: Config, spec: TransformerSpec, train: LinearSequences, seeds: list[int]) -> TrainResult:
    x, y = train.next_value_pairs()
    return fit(
        Transformer(spec), x, y, seeds=seeds, epochs=cfg.epochs, learning_rate=cfg.learning_rate,
        batch_size=cfg.batch_size, desc=f"{spec.label}, seed(s) {seeds}",
    )


def _evaluate(cfg: Config, trained: TrainResult, test: LinearSequences) -> dict[str, np.ndarray]:
    """Per-seed measurements (leading axis: seeds) on the test sequences."""
    x, y = test.next_value_pairs()
    pred = trained.predict(x)  # (seeds, n_test, eval_length - 1): prediction of f(i + 1)
    first = test.values[:, : cfg.train_length, None]
    scaled = np.stack([trained.predict(s * first)[:, :, -1] for s in cfg.scales], axis=-1)
    return {
        "error": np.mean(np.abs(pred - y), axis=1),
        "size": np.mean(np.abs(pred), axis=1),
        "examples": pred[:, :3],
        "scale_size": np.mean(np.abs(scaled), axis=1),
        "train_loss": trained.losses[:, -1],
    }


def kernel_diagonals(cfg: Config) -> dict[str, dict[int, np.ndarray]]:
    """Empirical NTK diagonal at initialisation along a ray, ``{label: {width: (ntk_seeds, scales)}}``.

    The network's output is its prediction at the last position; the input is ``s * u`` for the
    first test sequence's 30 values ``u`` scaled to unit root-mean-square, ``s`` in
    ``cfg.ntk_scales``. Computed with :func:`companion.kernels.empirical_ntk_fn` (JAX's own
    Jacobians) and ``jax.vmap`` over seeds.
    """
    u = _data(cfg)[1].values[0, : cfg.train_length]
    u = u / np.sqrt(np.mean(u**2))
    x = jnp.asarray(np.asarray(cfg.ntk_scales)[:, None, None] * u[None, :, None], jnp.float32)
    out: dict[str, dict[int, np.ndarray]] = {}
    for width in cfg.ntk_widths:
        for label, spec in specs(cfg, width).items():
            model = Transformer(spec)

            def last(params: Any, inputs: jax.Array, model: Transformer = model) -> jax.Array:
                return model.apply({"params": params}, inputs)[:, -1, :]

            ntk = empirical_ntk_fn(last, diagonal=True)
            keys = jax.vmap(jax.random.key)(jnp.arange(cfg.ntk_seeds, dtype=jnp.uint32))
            params = jax.vmap(lambda k, model=model: model.init(k, x[:1])["params"])(keys)
            diag = jax.jit(jax.vmap(lambda p, ntk=ntk: ntk(x, None, p)))(params)  # only Theta(x_i, x_i)
            out.setdefault(label, {})[width] = np.asarray(diag)
    return out


def infinite_width_diagonals(scales: Sequence[float], length: int = 30, seed: int = 1) -> dict[str, np.ndarray]:
    r"""The infinite-width NTK diagonal $\Theta(s u, s u)$ per input scale ``s``, ``{label: (scales,)}``.

    ``u`` is a linear test sequence of ``length`` values scaled to unit root-mean-square, and the
    kernel is neural-tangents' closed form for :func:`companion.transformer.stax_transformer`
    (Theorem C.1's object), with and without the LayerNorm after the embedding.
    """
    import warnings

    from companion.transformer import stax_transformer

    u = linear_sequences(1, length, seed=seed).values[0]
    u = u / np.sqrt(np.mean(u**2))
    x = jnp.asarray(np.asarray(scales, dtype=np.float64)[:, None, None] * u[None, :, None], jnp.float32)
    out = {}
    for label, layernorm in (("no LN", False), ("LN first", True)):
        with warnings.catch_warnings():  # two notes on the limits stax_transformer's docstring states
            warnings.filterwarnings("ignore", "Linear scaling attention used", UserWarning)
            warnings.filterwarnings("ignore", "`FanIn` layers assume independent inputs", UserWarning)
            kernel_fn = stax_transformer(layernorm)[2]
            out[label] = np.diagonal(np.asarray(kernel_fn(x, None, "ntk"), dtype=np.float64)).copy()
    return out


def levels_off(diagonal: np.ndarray, tolerance: float = 0.05) -> bool:
    """Whether a kernel diagonal along growing input scales has levelled off: its last three
    values (the largest scales) lie within ``tolerance`` (relative) of the last one."""
    tail = np.asarray(diagonal, dtype=np.float64)[-3:]
    return bool(np.all(np.isfinite(tail)) and np.all(np.abs(tail / tail[-1] - 1) < tolerance))


@dataclasses.dataclass
class Result:
    """Everything the chapter plots and checks (per-seed arrays have the seeds on axis 0)."""

    config: Config
    test: LinearSequences
    metrics: dict[str, dict[str, np.ndarray]]
    kernel: dict[str, dict[int, np.ndarray]]
    seconds: dict[str, float]
    source: str

    @property
    def labels(self) -> list[str]:
        """The variants compared (with and without the LayerNorm after the embedding)."""
        return list(self.metrics)

    @property
    def predicted_index(self) -> np.ndarray:
        """Index ``i + 1`` of the value predicted at each output position (2..eval_length)."""
        return np.arange(2, self.config.eval_length + 1)

    def summary(self, label: str, key: str) -> MeanCI:
        """Mean and 95% band over seeds of metric ``key`` (``error``, ``size``, ``scale_size``...)."""
        return mean_ci(self.metrics[label][key], axis=0)

    def window(self, label: str, key: str, first: int, last: int) -> float:
        """Mean over seeds of metric ``key`` averaged over predicted indices ``first..last``."""
        index = self.predicted_index
        mask = (index >= first) & (index <= last)
        return float(np.mean(self.metrics[label][key][:, mask]))

    def target_size(self) -> np.ndarray:
        """Mean ``|f(i + 1)|`` over the test sequences, aligned with :attr:`predicted_index`."""
        return np.mean(np.abs(self.test.values[:, 1:]), axis=0)


def run(cfg: Config | None = None) -> Result:
    """Train both transformers for all seeds at once (``jax.vmap``), evaluate, and measure the NTK."""
    cfg = cfg or config()
    train, test = _data(cfg)
    metrics, seconds = {}, {}
    for label, spec in specs(cfg).items():
        start = time.perf_counter()
        metrics[label] = _evaluate(cfg, _train(cfg, spec, train, list(range(cfg.seeds))), test)
        seconds[label] = time.perf_counter() - start
    start = time.perf_counter()
    kernel = kernel_diagonals(cfg)
    seconds["kernel"] = time.perf_counter() - start
    return Result(cfg, test, metrics, kernel, seconds, source=f"computed now ({profile_of(cfg)} profile)")


def plot_sequence(result: Result, axes) -> None:
    """The paper's Fig. 7 view on two axes: one test sequence with each variant's predictions
    (mean and 95% band over seeds), and the mean absolute error along the sequence."""
    from companion import plotting

    index, trained = result.predicted_index, result.config.train_length
    truth = result.test.values[0, 1:]
    for ax in axes:
        plotting.mark_training_range(ax, (1, trained))
    axes[0].plot(index, truth, color=plotting.colour("data"), lw=1, ls="--", label="truth $a + b\\,i$")
    for label in result.labels:
        plotting.band(axes[0], index, mean_ci(result.metrics[label]["examples"][:, 0], axis=0), label)
        plotting.band(axes[1], index, result.summary(label, "error"), label)
    lowest = min(float(result.summary(label, "error").mean.min()) for label in result.labels)
    axes[1].set_ylim(bottom=lowest / 3)  # a band reaching below zero would fill the whole log axis
    axes[0].set(xlabel="index $i$ of the predicted value", ylabel="prediction of $f(i)$", title="one test sequence")
    axes[1].set(xlabel="index $i$ of the predicted value", ylabel="mean $|$error$|$", yscale="log",
                title=f"{result.config.n_test} test sequences")
    axes[0].legend(loc="best")


def plot_scale(result: Result, axes) -> None:
    """Along a ray: the mean size of the prediction of ``f(31)`` for inputs scaled by ``s``, and
    the empirical NTK diagonal at initialisation relative to its value at ``s = 1`` at each width."""
    from companion import plotting

    scales, ntk_scales = np.asarray(result.config.scales), np.asarray(result.config.ntk_scales)
    styles = ("-", "--", ":", "-.")
    for label in result.labels:
        plotting.band(axes[0], scales, result.summary(label, "scale_size"), label, marker="o")
        for style, (width, diag) in zip(styles, result.kernel[label].items()):
            relative = diag.mean(axis=0) / diag.mean(axis=0)[ntk_scales == 1.0][0]
            axes[1].plot(ntk_scales, relative, ls=style, marker=".", color=plotting.colour(label),
                         label=f"{label}, width {width}")
    axes[0].set(xscale="log", yscale="log", xlabel="input scale $s$", ylabel="mean $|f(31)|$",
                title="trained: prediction of $f(31)$ from $s \\cdot f(1..30)$")
    axes[1].set(xscale="log", yscale="log", xlabel="input scale $s$",
                ylabel="$\\Theta(su, su) \\;/\\; \\Theta(u, u)$", title="initialisation: NTK diagonal")
    axes[1].legend(fontsize=7, ncol=2)


def profile_of(cfg: Config) -> str:
    """``ci``, ``full`` or ``custom``: which entry of :data:`CONFIGS` ``cfg`` is."""
    return next((name for name, c in CONFIGS.items() if c == cfg), "custom")


# ---- the resumable full run: one file per (variant, seed), the kernel, a summary with provenance --

KERNEL_RUN = "ntk at initialisation"  # stored like a method with one seed, so it is resumable too


def _rounded(values: np.ndarray) -> list:
    return np.round(np.asarray(values, dtype=np.float64), 5).tolist()


def _train_to_json(cfg: Config, label: str, seeds: list[int]) -> list[dict[str, Any]]:
    start = time.perf_counter()
    train, test = _data(cfg)
    metrics = _evaluate(cfg, _train(cfg, specs(cfg)[label], train, seeds), test)
    seconds = (time.perf_counter() - start) / len(seeds)
    return [{k: _rounded(v[i]) for k, v in metrics.items()} | {"seconds": seconds} for i in range(len(seeds))]


def _kernel_to_json(cfg: Config) -> dict[str, Any]:
    start = time.perf_counter()
    diagonals = kernel_diagonals(cfg)
    return {
        "diagonals": {label: {str(w): d.tolist() for w, d in by_width.items()} for label, by_width in diagonals.items()},
        "seconds": time.perf_counter() - start,
    }


def _collect(cfg: Config, folder: Path) -> Result | None:
    """The complete results stored in ``folder`` (``None`` while any run is missing)."""
    fp = artefacts.fingerprint(cfg)
    runs = {label: [artefacts.load_run(folder, label, s, fp) for s in range(cfg.seeds)] for label in specs(cfg)}
    kernel = artefacts.load_run(folder, KERNEL_RUN, 0, fp)
    if kernel is None or any(run is None for per_seed in runs.values() for run in per_seed):
        return None
    keys = ("error", "size", "examples", "scale_size", "train_loss")
    metrics = {label: {k: np.asarray([run[k] for run in per_seed]) for k in keys} for label, per_seed in runs.items()}
    diagonals = {
        label: {int(w): np.asarray(d) for w, d in by_width.items()} for label, by_width in kernel["diagonals"].items()
    }
    seconds = {label: float(sum(run["seconds"] for run in per_seed)) for label, per_seed in runs.items()}
    seconds["kernel"] = float(kernel["seconds"])
    dates = sorted({run["provenance"]["date"] for per_seed in runs.values() for run in per_seed})
    devices = sorted({d for per_seed in runs.values() for run in per_seed for d in run["provenance"]["devices"]})
    source = f"stored {profile_of(cfg)}-profile results ({', '.join(devices)}; {dates[0][:10]} to {dates[-1][:10]})"
    return Result(cfg, _data(cfg)[1], metrics, diagonals, seconds, source=source)


def run_artefact(profile_name: str | None = None, out: Path | None = None, seeds_at_once: int | None = None) -> Path:
    """Run (or finish) the experiment of ``profile_name``, one file per (variant, seed); return the folder.

    Runs already saved with the same configuration are skipped, so an interrupted run continues
    where it stopped; ``seeds_at_once`` seeds are trained together (default: all).
    """
    name = profile.active() if profile_name is None else profile_name
    cfg = config(name)
    folder = artefacts.output_folder("transformer", name, out)
    fp = artefacts.fingerprint(cfg)
    artefacts.resume(folder, list(specs(cfg)), range(cfg.seeds), fp,
                     lambda label, seeds: _train_to_json(cfg, label, seeds),
                     seeds_at_once, default_seeds_at_once=cfg.seeds)
    artefacts.resume(folder, [KERNEL_RUN], [0], fp, lambda _, seeds: [_kernel_to_json(cfg)], 1)
    result = _collect(cfg, folder)
    runs = [artefacts.load_run(folder, label, s, fp) for label in specs(cfg) for s in range(cfg.seeds)]
    runs = [r for r in runs + [artefacts.load_run(folder, KERNEL_RUN, 0, fp)] if r is not None]
    summary = {
        "experiment": "transformer", "profile": name, "complete": result is not None,
        "config": dataclasses.asdict(cfg), "config_fingerprint": fp,
        "wall_seconds": None if result is None else round(sum(result.seconds.values()), 1),
        "headline": None if result is None else _headline(result),
        "run_dates": sorted({r["provenance"]["date"] for r in runs}),
        "run_devices": sorted({d for r in runs for d in r["provenance"]["devices"]}),
        "run_commits": sorted({str(r["provenance"]["commit"]) for r in runs}),
        "provenance": artefacts.provenance(),
    }
    artefacts.write_json(folder / "summary.json", summary)
    print(f"wrote {folder / 'summary.json'}")
    return folder


def _headline(result: Result) -> dict[str, Any]:
    """The numbers the chapter's checks use, for a reader of summary.json."""
    last, trained = result.config.eval_length, result.config.train_length
    return {
        label: {
            f"error, predicted index {trained - 9}..{trained}": round(result.window(label, "error", trained - 9, trained), 4),
            f"error, predicted index {last - 9}..{last}": round(result.window(label, "error", last - 9, last), 4),
            "mean |prediction| per input scale": _rounded(result.metrics[label]["scale_size"].mean(axis=0)),
        }
        for label in result.labels
    }


def load_artefact(profile_name: str = "full", folder: Path | None = None) -> Result | None:
    """The saved results of ``profile_name`` (``None`` when absent or incomplete)."""
    folder = folder or artefacts.directory("transformer", profile_name)
    summary = artefacts.read_summary("transformer", profile_name, folder)
    if summary is None:
        return None
    saved = summary["config"]
    return _collect(Config(**{k: tuple(v) if isinstance(v, list) else v for k, v in saved.items()}), folder)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m companion run transformer``: run (or resume) the experiment and save its artefacts."""
    args = artefacts.command_line(
        "transformer", "The transformer experiment (paper App. M, Fig. 7): results saved per variant and seed; "
        "rerunning skips those already saved.", argv, seeds_at_once="train N seeds together (default: as the saved runs, else all)")
    run_artefact(args.profile, out=args.out, seeds_at_once=args.seeds_at_once)
    return 0
