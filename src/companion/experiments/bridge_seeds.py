r"""Chapter "From the theory's networks to the experiments'": more seeds, and float64, where the bridge is closest.

In the theory's regime (NTK parametrisation, full-batch gradient descent) the LayerNorm network of
the bridge (:mod:`companion.experiments.bridge`) comes within the seed noise of its linearised
infinite-width prediction at the larger widths. With the bridge's five seeds, whether the last
width is still within the noise is decided by a handful of networks. This study settles it at the
bridge's largest widths, for the network whose gap is that small (LN first; the network without
LayerNorm stays many noise floors away at every width, and five seeds show that plainly):

* ``extra_seeds`` more networks (seeds ``base.seeds``, ``base.seeds + 1``, ...) trained exactly as
  the bridge trains its own, so that the mean over all seeds has a smaller noise floor;
* ``float64_seeds`` networks (seeds 0, 1, ...) of the bridge trained again in float64 from the same
  initial weights (drawn in float32, then cast), to measure how much of the gap the float32
  arithmetic of training could explain (the bridge's networks are float32, the kernel predictions
  float64).

The ``full`` run saves each (width, precision, seed) as soon as it is trained in
``artefacts/bridge-seeds/full/`` (:func:`companion.artefacts.resume`); it reads the bridge's own
five seeds from the bridge's saved ``full`` run, so that run must be there.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from companion import artefacts, profile
from companion.arch import MLPSpec
from companion.data.toy import ToyData
from companion.experiments import bridge
from companion.train import fit_variants

__all__ = ["Config", "CONFIGS", "config", "PRECISIONS", "train_seeds", "trained_runs"]

#: The dtypes the study trains in, by name.
PRECISIONS = {"float32": jnp.float32, "float64": jnp.float64}


@dataclasses.dataclass(frozen=True)
class Config:
    """Which of the bridge's networks get more seeds; one instance per profile in :data:`CONFIGS`."""

    base: bridge.Config
    widths: tuple[int, ...]
    extra_seeds: int
    float64_seeds: int
    regime: str = "NTK, GD"
    label: str = "LN first"


CONFIGS = {
    "ci": Config(base=bridge.CONFIGS["ci"], widths=(64, 256), extra_seeds=4, float64_seeds=1),
    "full": Config(base=bridge.CONFIGS["full"], widths=(2048, 4096), extra_seeds=10, float64_seeds=1),
}


def config(profile_name: str | None = None) -> Config:
    """The configuration of the active profile (or of ``profile_name``)."""
    return profile.select(CONFIGS, profile_name)


def _spec(cfg: Config, width: int) -> MLPSpec:
    parametrisation, _ = bridge.REGIMES[cfg.regime]
    base = MLPSpec(depth=cfg.base.depth, width=width, parametrisation=parametrisation)
    specs = {spec.label: spec for spec in (base, base.replace(layernorm="first"))}
    if cfg.label not in specs:
        raise ValueError(f"the seed study trains one of {', '.join(specs)}, got {cfg.label!r}")
    return specs[cfg.label]


def train_seeds(cfg: Config, data: ToyData, grid: np.ndarray, width: int, seeds: Sequence[int],
                precision: str = "float32") -> np.ndarray:
    """Train ``cfg.label`` in ``cfg.regime`` at ``width`` for these seeds, as the bridge does: ``(seeds, grid)``.

    ``precision`` ``"float64"`` trains with JAX's 64-bit mode on, for this call only, from the
    initial weights of the float32 networks with the same seeds (``init_dtype``, :func:`fit_variants`).
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    _, optimizer = bridge.REGIMES[cfg.regime]
    lr = cfg.base.adam_lr if optimizer == "adam" else cfg.base.gd_lr
    spec = _spec(cfg, width)
    with jax.enable_x64(precision == "float64"):
        [result] = fit_variants([spec], data.x, data.y, seeds=list(seeds), epochs=cfg.base.epochs,
                                learning_rates=lr, optimizer=optimizer, dtype=PRECISIONS[precision],
                                init_dtype=jnp.float32,
                                desc=f"{cfg.regime}, width {width}, {cfg.label}, {precision}")
        return np.asarray(result.predict(grid[:, None]), dtype=np.float64)


def _units(cfg: Config) -> dict[str, tuple[int, str, list[int]]]:
    """Unit name -> (width, precision, seeds), width-major so that an interrupted run has the smaller width."""
    units = {}
    for width in cfg.widths:
        units[f"width {width}, float64"] = (width, "float64", list(range(cfg.float64_seeds)))
        units[f"width {width}, float32"] = (
            width, "float32", list(range(cfg.base.seeds, cfg.base.seeds + cfg.extra_seeds)))
    return units


def trained_runs(cfg: Config, data: ToyData, grid: np.ndarray, folder: Path | None = None,
                 seeds_at_once: int | None = None) -> dict[tuple[int, str], np.ndarray]:
    """Every network of the study: ``{(width, precision): (seeds, grid)}``.

    With ``folder``, each (width, precision, seed) is saved there as soon as it is trained and
    reused when it is already there (:func:`companion.artefacts.resume`).
    """
    units = _units(cfg)
    if folder is None:
        return {(w, p): train_seeds(cfg, data, grid, w, s, p) for w, p, s in units.values()}
    fp = artefacts.fingerprint(cfg)
    out = {}
    for unit, (width, precision, seeds) in units.items():
        def train(_: str, todo: list[int], width: int = width, precision: str = precision) -> list[dict]:
            start = time.perf_counter()
            predictions = train_seeds(cfg, data, grid, width, todo, precision)
            each = (time.perf_counter() - start) / len(todo)
            return [{"seconds": each, cfg.label: np.round(row, 5).tolist()} for row in predictions]

        artefacts.resume(folder, [unit], seeds, fp, train, seeds_at_once, default_seeds_at_once=5)
        out[width, precision] = np.asarray([artefacts.load_run(folder, unit, s, fp)[cfg.label] for s in seeds])
    return out
