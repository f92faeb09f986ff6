r"""Chapter "From the theory's networks to the experiments'": more seeds, and float64, where the bridge is closest.

In the theory's regime (NTK parametrisation, full-batch gradient descent) the LayerNorm network of
the bridge (:mod:`companion.experiments.bridge`) comes close to its linearised infinite-width
prediction at the larger widths, close enough that five seeds cannot tell whether what is left
is seed noise. This study decides it at the bridge's largest widths, for the network whose gap is
that small (LN first; the network without LayerNorm stays many noise floors away at every width,
and five seeds show that plainly):

* ``extra_seeds`` more networks (seeds ``base.seeds``, ``base.seeds + 1``, ...) trained exactly as
  the bridge trains its own, so that the mean over all seeds has a smaller noise floor;
* ``float64_seeds`` networks (seeds 0, 1, ...) of the bridge trained again in float64 from the same
  initial weights (drawn in float32, then cast), to measure how much of the gap the float32
  arithmetic of training could explain (the bridge's networks are float32, the kernel predictions
  float64).

:class:`Study` measures, at each width, against the linearised network after the same steps
(:func:`~companion.kernels.ensemble.gd_kernel_ensemble`) and in the bridge's units: z
(:meth:`companion.experiments.bridge.Bridge.z_rms`) with its p-value under the theory's own noise
(:meth:`~companion.experiments.bridge.Bridge.z_null`) for the bridge's seeds, for the new seeds
alone (an independent repetition) and for all of them; the systematic gap
(:meth:`~companion.experiments.bridge.Bridge.systematic_gap`), which unlike z does not grow with
the number of seeds; each network's mean offset from the kernel over the out-of-distribution
points, in units of the theory's spread over initialisations; and the float64 networks' shift
from their float32 twins in the same units.

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
from companion.data.toy import ToyData, make_1d
from companion.experiments import bridge
from companion.stats import mean_ci
from companion.train import fit_variants

__all__ = ["Config", "CONFIGS", "config", "PRECISIONS", "SETS", "train_seeds", "trained_runs", "Study", "run",
           "summarise", "table", "reading", "check", "check_full", "run_artefact", "load_artefact", "main"]

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


def _spec(cfg: Config, width: int) -> tuple[MLPSpec, str, float]:
    """The network of the study at ``width``, with the bridge's optimiser and learning rate for its regime."""
    specs, optimizer, lr = bridge.setup(cfg.base, cfg.regime, width)
    by_label = {spec.label: spec for spec in specs}
    if cfg.label not in by_label:
        raise ValueError(f"the seed study trains one of {', '.join(by_label)}, got {cfg.label!r}")
    return by_label[cfg.label], optimizer, lr


def train_seeds(cfg: Config, data: ToyData, grid: np.ndarray, width: int, seeds: Sequence[int],
                precision: str = "float32") -> np.ndarray:
    """Train ``cfg.label`` in ``cfg.regime`` at ``width`` for these seeds, as the bridge does: ``(seeds, grid)``.

    ``precision`` ``"float64"`` trains with JAX's 64-bit mode on, for this call only, from the
    initial weights of the float32 networks with the same seeds (``init_dtype``, :func:`fit_variants`).
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    spec, optimizer, lr = _spec(cfg, width)
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


#: The sets of networks :class:`Study` compares with the kernel: the bridge's seeds, the new ones, both.
SETS = ("bridge", "new", "all")


@dataclasses.dataclass
class Study:
    """The bridge run that is extended, and the networks trained here."""

    config: Config
    base: bridge.Bridge
    runs: dict[tuple[int, str], np.ndarray]  # (width, precision) -> (seeds, grid), from trained_runs

    def networks(self, width: int, which: str = "all") -> np.ndarray:
        """Predictions ``(seeds, grid)`` of the bridge's seeds, the new seeds or all of them (:data:`SETS`)."""
        if which not in SETS:
            raise ValueError(f"the set of networks is one of {', '.join(SETS)}, got {which!r}")
        own = self.base.predictions[self.config.regime, width, self.config.label]
        new = self.runs[width, "float32"]
        return {"bridge": own, "new": new, "all": np.concatenate([own, new])}[which]

    def bridge(self, width: int, which: str = "all") -> bridge.Bridge:
        """The bridge's result with only this set of networks at ``width`` (for its z and floors)."""
        key = (self.config.regime, width, self.config.label)
        return dataclasses.replace(self.base, predictions={key: self.networks(width, which)})

    def _standardised(self, predictions: np.ndarray) -> np.ndarray:
        """Each network's miss at each out-of-distribution point in units of the theory's spread."""
        mask = self.base.distance() >= self.config.base.ood_from
        sd = np.sqrt(self.base.variance(self.config.label, "gd")[mask])
        return (predictions[:, mask] - self.base.reference(self.config.label, "gd")[mask]) / sd

    def offsets(self, width: int, which: str = "all") -> np.ndarray:
        """Each network's mean miss over the out-of-distribution points, in units of the theory's spread."""
        return self._standardised(self.networks(width, which)).mean(axis=1)

    def precision_shift(self, width: int) -> np.ndarray:
        """Per float64 network: RMS over the out-of-distribution points of (float64 - float32 twin), in theory spreads."""
        f64 = self.runs[width, "float64"]
        f32 = self.networks(width, "bridge")[:len(f64)]
        return np.sqrt(np.mean((self._standardised(f64) - self._standardised(f32)) ** 2, axis=1))


def run(cfg: Config | None = None, base: bridge.Bridge | None = None, folder: Path | None = None,
        bridge_folder: Path | None = None) -> Study:
    """Train the study's networks (saved in ``folder`` when given) next to a bridge run.

    ``base`` is the bridge run to extend (e.g. the chapter's live run); without it the bridge's
    theory regime is read from its saved run in ``bridge_folder``, which must hold every seed.
    """
    cfg = cfg or config()
    if base is None:
        if bridge_folder is None:
            raise ValueError("give the bridge run to extend (base) or the folder of its saved run (bridge_folder)")
        missing = [(w, s) for w in cfg.base.widths for s in range(cfg.base.seeds)
                   if not artefacts.run_path(bridge_folder, bridge._unit(cfg.regime, w), s).is_file()]
        if missing:
            raise ValueError(f"the bridge's saved run in {bridge_folder} lacks {len(missing)} (width, seed) of "
                             f"{cfg.regime}; run `python -m companion run bridge --profile full` first")
        base = bridge.run(cfg.base, regimes=(cfg.regime,), folder=bridge_folder)
    if base.config != cfg.base or not set(cfg.widths) <= set(cfg.base.widths):
        raise ValueError("the bridge run to extend must have this study's configuration and widths")
    return Study(cfg, base, trained_runs(cfg, base.data, base.grid, folder))


def summarise(study: Study) -> dict:
    """Per width: z, its p-value and the mean offset for each set of networks, and the float64 shift; JSON-ready."""
    cfg, out = study.config, {}
    null = study.base.z_null(cfg.label, "gd")
    for width in cfg.widths:
        row: dict = {"z_null_95": float(np.quantile(null, 0.95)), "z_null_99": float(np.quantile(null, 0.99))}
        for which in SETS:
            measure = study.bridge(width, which)
            z = measure.z_rms(cfg.regime, width, cfg.label, "gd")
            offsets = mean_ci(study.offsets(width, which))
            row[which] = {"seeds": int(study.networks(width, which).shape[0]), "z_rms": z,
                          "systematic_gap": measure.systematic_gap(cfg.regime, width, cfg.label, "gd"),
                          "gap": measure.gap(cfg.regime, width, cfg.label, "gd"),
                          "noise_floor": measure.noise_floor(cfg.regime, width, cfg.label, "gd"),
                          "z_p": float(np.mean(null >= z)), "offset": float(offsets.mean),
                          "offset_lower": float(offsets.lower), "offset_upper": float(offsets.upper)}
        row["float64_shift"] = study.precision_shift(width).tolist()
        out[str(width)] = row
    return out


def _p(p: float, equals: str = "") -> str:
    """A p-value from 20,000 draws (below 0.001 it is only known to be small), after ``equals`` if not small."""
    return "< 0.001" if p < 0.001 else f"{equals}{p:.3f}"


def table(results: dict) -> str:
    """:func:`summarise`'s results as a plain-text table: per width and set of networks, seeds, z, p and offset."""
    lines = [f"{'width':>5s} {'networks':8s} {'seeds':>5s} {'z':>5s} {'p':>7s} {'systematic':>10s}   "
             "mean offset [95% CI] (gap and offset in theory sd)"]
    for width, row in results.items():
        for which in SETS:
            c = row[which]
            lines.append(f"{width:>5s} {which:8s} {c['seeds']:5d} {c['z_rms']:5.2f} {_p(c['z_p']):>7s} {c['systematic_gap']:10.2f}   "
                         f"{c['offset']:+.2f} [{c['offset_lower']:+.2f}, {c['offset_upper']:+.2f}]")
        lines.append(f"{width:>5s} z within the noise: below {row['z_null_95']:.2f} (95%), {row['z_null_99']:.2f} (99%); "
                     f"float64 twins moved by {max(row['float64_shift']):.4f} theory sd")
    return "\n".join(lines)


def reading(results: dict, source: str, level: float = 0.01) -> str:
    """What :func:`summarise`'s results say, in words, for the chapter: per width whether the new
    networks alone and all networks are within the noise (``p >= level``), and whether float32
    rounding could explain the offsets."""
    parts = []
    for width, row in results.items():
        new, every = row["new"], row["all"]
        verdict = "within" if every["z_p"] >= level else "beyond"
        parts.append(
            f"at width {width} the {new['seeds']} new networks alone give z = {new['z_rms']:.2f} (p {_p(new['z_p'], '= ')}) "
            f"and all {every['seeds']} give z = {every['z_rms']:.2f} (p {_p(every['z_p'], '= ')}), {verdict} the noise, "
            f"with a systematic gap of {every['systematic_gap']:.2f} theory sd and a mean offset of {every['offset']:+.2f} "
            f"[{every['offset_lower']:+.2f}, {every['offset_upper']:+.2f}] (gap {every['gap']:.3f} of the largest target, "
            f"noise floor {every['noise_floor']:.3f})")
    shift = max(max(row["float64_shift"]) for row in results.values())
    offset = min(abs(row["all"]["offset"]) for row in results.values())
    rounding = ("far less than the offsets: float32 rounding does not explain them" if shift < 0.1 * offset else
                "not small next to the offsets: float32 rounding may explain part of them")
    return (f"On {source}, " + "; ".join(parts) + f". Trained again in float64 from the same initial weights, the "
            f"networks moved by at most {shift:.4f} theory sd, {rounding}.")


def check(results: dict, largest_shift: float = 0.05) -> None:
    """Assert the chapter's claims on :func:`summarise`'s results (of the live or the saved study).

    * The float64 twins were trained in float64 (they differ from their float32 networks at all)
      from the same initial weights (by less than ``largest_shift`` of the theory's spread over
      initialisations, where other initial weights move a network by about one spread): float32
      rounding is not what separates the networks from the kernel.
    * The sets of networks add up: all networks are the bridge's and the new ones.

    Raises ``AssertionError`` naming the width and what fails.
    """
    for width, row in results.items():
        shifts = row["float64_shift"]
        assert shifts and min(shifts) > 0, f"width {width}: the float64 twins equal their float32 networks; was float64 on?"
        assert max(shifts) < largest_shift, (
            f"width {width}: the float64 twins moved by {max(shifts):.3f} theory sd, not a rounding-sized change "
            "(other initial weights?)")
        assert row["all"]["seeds"] == row["bridge"]["seeds"] + row["new"]["seeds"], f"width {width}: seeds do not add up"


def check_full(results: dict, level: float = 0.01) -> None:
    r"""Assert the chapter's claims on the saved ``full`` study, whose widths are the bridge's largest.

    * With all seeds, the LayerNorm network is beyond the noise of its kernel prediction at every
      width of the study (z's p-value below ``level``): a departure, not seed noise.
    * Its systematic gap does not fall like $1/\sqrt{\text{width}}$ (the rate at which a network's
      departure from its linearisation shrinks, Lee et al. 2019) from the narrowest width of the
      study to the widest: at these widths it levels off.

    Raises ``AssertionError`` naming what fails.
    """
    widths = sorted(int(w) for w in results)
    for width in widths:
        every = results[str(width)]["all"]
        assert every["z_p"] < level, (
            f"width {width}: with all {every['seeds']} seeds the networks should be beyond the noise "
            f"(z {every['z_rms']:.2f}, p {every['z_p']:.3f})")
    first, last = results[str(widths[0])]["all"], results[str(widths[-1])]["all"]
    expected = first["systematic_gap"] * (widths[0] / widths[-1]) ** 0.5
    assert last["systematic_gap"] > expected, (
        f"the systematic gap falls from {first['systematic_gap']:.2f} at width {widths[0]} to "
        f"{last['systematic_gap']:.2f} at {widths[-1]}, at least like 1/sqrt(width) ({expected:.2f}): "
        "it does not level off")


def load_artefact(profile_name: str = "full", folder: Path | None = None) -> dict | None:
    """The saved ``summary.json`` of ``profile_name`` (``None`` when there is none)."""
    return artefacts.read_summary("bridge-seeds", profile_name, folder)


def run_artefact(profile_name: str | None = None, out: Path | None = None) -> dict:
    """Train the study of ``profile_name`` next to the bridge's saved run of the same profile and
    write ``summary.json`` (config, results, provenance, wall time)."""
    name = profile_name or profile.active()
    cfg = config(name)
    bridge_folder = artefacts.directory("bridge", name)
    if bridge_folder is None:
        raise ValueError("this installation has no source checkout with the bridge's saved run to extend")
    folder = artefacts.output_folder("bridge-seeds", name, out)
    start = time.perf_counter()
    study = run(cfg, folder=folder, bridge_folder=bridge_folder)
    return artefacts.write_summary(folder, "bridge-seeds", name, cfg, summarise(study), start)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m companion run bridge-seeds``: more seeds and float64 for the bridge's theory regime."""
    args = artefacts.command_line(
        "bridge-seeds", "More seeds, and float64, for the bridge's theory regime at its largest widths "
        "(needs the bridge's saved run of the same profile).", argv)
    run_artefact(args.profile, out=args.out)
    return 0
