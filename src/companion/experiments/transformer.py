"""Chapter "A transformer that stops exploding": the paper's Fig. 7 (App. M) and its kernel.

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
* **the kernel view**: the empirical NTK diagonal at initialisation, ``||grad_theta f(s u)||^2`` for
  a fixed sequence ``u``, as ``s`` grows, at several widths (neural-tangents' ``empirical_ntk_fn``).
  Theorem C.1: with the LayerNorm it depends on ``s u`` only through soft-cosines, so it levels off.

The ``full`` profile is the paper's protocol where the paper gives one (architecture, data, 5
seeds, evaluation range); the rest (training set size, optimiser, epochs, batch size) is ours and
stated in :data:`CONFIGS`. ``python -m companion run transformer --profile full`` writes its
numbers to ``src/companion/results/transformer-full.json`` one seed at a time (a rerun resumes),
and the chapter shows them when that file exists.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from companion import artefacts, profile, progress
from companion.data.sequences import LinearSequences, linear_sequences
from companion.nt import nt
from companion.stats import MeanCI, mean_ci
from companion.train import TrainResult, fit
from companion.transformer import Transformer, TransformerSpec

__all__ = [
    "Config", "CONFIGS", "config", "specs", "Result", "run", "kernel_diagonals", "run_and_save",
    "load", "artefact_name",
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
    ``cfg.ntk_scales``. Computed with ``nt.empirical_ntk_fn`` and ``jax.vmap`` over seeds.
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

            ntk = nt.empirical_ntk_fn(last, trace_axes=(-1,), vmap_axes=0)
            keys = jax.vmap(jax.random.key)(jnp.arange(cfg.ntk_seeds, dtype=jnp.uint32))
            params = jax.vmap(lambda k, model=model: model.init(k, x[:1])["params"])(keys)
            diag = jax.jit(jax.vmap(lambda p, ntk=ntk: jnp.diagonal(ntk(x, None, p))))(params)
            out.setdefault(label, {})[width] = np.asarray(diag)
    return out


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


def profile_of(cfg: Config) -> str:
    """``ci``, ``full`` or ``custom``: which entry of :data:`CONFIGS` ``cfg`` is."""
    return next((name for name, c in CONFIGS.items() if c == cfg), "custom")


def _jsonable(cfg: Config) -> dict[str, Any]:
    return json_roundtrip(dataclasses.asdict(cfg))


def json_roundtrip(value: Any) -> Any:
    """``value`` as JSON would give it back (tuples become lists), to compare configurations."""
    if isinstance(value, dict):
        return {str(k): json_roundtrip(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_roundtrip(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


def artefact_name(profile_name: str) -> str:
    """Name of the result file of a profile (:mod:`companion.artefacts`): ``transformer-full``..."""
    return f"transformer-{profile_name}"


def run_and_save(profile_name: str = "full") -> dict[str, Any]:
    """Compute the ``profile_name`` results one seed at a time and save after each (resumable).

    A rerun keeps the seeds already stored under the same configuration and computes the rest;
    a stored file of another configuration is replaced.
    """
    cfg = config(profile_name)
    name = artefact_name(profile_name)
    stored = artefacts.load(name)
    if stored is None or stored.get("config") != _jsonable(cfg):
        stored = {"config": _jsonable(cfg), "seeds": {}, "seconds": {}}
    stored["provenance"] = artefacts.provenance()
    train, test = _data(cfg)
    jobs = [(label, spec, seed) for label, spec in specs(cfg).items() for seed in range(cfg.seeds)]
    with progress.bar(len(jobs) + 1, f"transformer ({profile_name})", unit="run") as bar:
        for label, spec, seed in jobs:
            done = stored["seeds"].setdefault(label, {})
            if str(seed) not in done:
                start = time.perf_counter()
                metrics = _evaluate(cfg, _train(cfg, spec, train, [seed]), test)
                done[str(seed)] = json_roundtrip({k: v[0] for k, v in metrics.items()})
                stored["seconds"][f"{label}, seed {seed}"] = time.perf_counter() - start
                artefacts.save(name, stored)
            bar.update(1)
        if "kernel" not in stored:
            start = time.perf_counter()
            stored["kernel"] = json_roundtrip(kernel_diagonals(cfg))
            stored["seconds"]["kernel"] = time.perf_counter() - start
        stored["wall_seconds"] = float(sum(stored["seconds"].values()))
        artefacts.save(name, stored)
        bar.update(1)
    return stored


def load(profile_name: str = "full") -> Result | None:
    """The stored results of a profile as a :class:`Result` (``None`` if absent or incomplete)."""
    stored = artefacts.load(artefact_name(profile_name))
    if stored is None or "kernel" not in stored:
        return None
    fields = {f.name for f in dataclasses.fields(Config)}
    raw = {k: tuple(v) if isinstance(v, list) else v for k, v in stored["config"].items() if k in fields}
    cfg = Config(**raw)
    if any(len(per_seed) < cfg.seeds for per_seed in stored["seeds"].values()):
        return None
    metrics = {
        label: {
            key: np.stack([np.asarray(per_seed[str(s)][key]) for s in range(cfg.seeds)])
            for key in per_seed["0"]
        }
        for label, per_seed in stored["seeds"].items()
    }
    kernel = {label: {int(w): np.asarray(v) for w, v in by_width.items()} for label, by_width in stored["kernel"].items()}
    prov = stored["provenance"]
    source = f"stored {profile_of(cfg)} results of {prov['date']} on {prov['device']}, commit {prov['commit']}"
    return Result(cfg, _data(cfg)[1], metrics, kernel, stored["seconds"], source=source)
