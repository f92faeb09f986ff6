"""The settings of the transformer ablation (:mod:`companion.experiments.transformer_ablation`).

Its cells (:data:`CELLS`: the baseline and one open design choice changed at a time), its sizes per
profile (:data:`CONFIGS`) and its data (:func:`datasets`). The study's stored runs are fingerprinted
by these dataclasses' fields, so the runs do not depend on which module defines them.
"""

from __future__ import annotations

import dataclasses

from companion import profile
from companion.data.sequences import LinearSequences, linear_sequences
from companion.transformer import TransformerSpec

__all__ = ["VARIANTS", "MODES", "Cell", "CELLS", "Config", "CONFIGS", "config", "datasets"]

#: The two networks of every cell: without and with the LayerNorm after the embedding.
VARIANTS = ("no LN", "LN first")
#: How a trained network is evaluated: reading the true values, or its own earlier predictions.
MODES = ("teacher-forced", "autoregressive")


@dataclasses.dataclass(frozen=True)
class Cell:
    """One setting of the choices the paper leaves open (defaults: our baseline)."""

    name: str
    ln_input: str = "value"
    positions: str = "sinusoidal"
    blocks: str = "plain"
    init: str = "flax"
    sigma_b: float = 1.0
    standardise: bool = False

    def spec(self, cfg: "Config", layernorm: bool) -> TransformerSpec:
        """The transformer of this cell, with or without the LayerNorm after the embedding."""
        return TransformerSpec(
            layers=cfg.layers, heads=cfg.heads, width=cfg.width, layernorm=layernorm, ln_input=self.ln_input,
            positions=self.positions, blocks=self.blocks, init=self.init, sigma_b=self.sigma_b,
        )

    def changes(self) -> str:
        """What differs from the baseline, in words (``"baseline"`` for none)."""
        base = Cell("baseline")
        words = {
            "ln_input": {"sum": "LN on value + position"},
            "positions": {"learned": "learned positions", "none": "no positions"},
            "blocks": {"pre-LN": "pre-LN blocks"},
            "init": {"kaiming": "Kaiming init"},
            "sigma_b": {0.1: "embedding bias 0.1"},
            "standardise": {True: "standardised values"},
        }
        parts = [words[f][getattr(self, f)] for f in words if getattr(self, f) != getattr(base, f)]
        return " + ".join(parts) or "baseline"


#: The cells: the baseline, one choice changed at a time, and one combination (see the chapter).
CELLS = {
    cell.name: cell
    for cell in (
        Cell("baseline"),
        Cell("pre-ln-blocks", blocks="pre-LN"),
        Cell("learned-positions", positions="learned"),
        Cell("ln-on-sum", ln_input="sum"),
        Cell("standardised", standardise=True),
        Cell("no-positions", positions="none"),
        Cell("bias-0.1", sigma_b=0.1),
        Cell("kaiming-init", init="kaiming"),
        Cell("paper-init-learned-positions", positions="learned", init="kaiming", sigma_b=0.1),
    )
}


@dataclasses.dataclass(frozen=True)
class Config:
    """Sizes of the study; one instance per profile in :data:`CONFIGS`."""

    cells: tuple[str, ...]
    seeds: int
    n_train: int
    epochs: int
    batch_size: int
    n_test: int
    n_rollout: int
    layers: int = 2
    heads: int = 4
    width: int = 64
    train_length: int = 30
    eval_length: int = 100
    learning_rate: float = 1e-3
    scales: tuple[float, ...] = (1.0, 10.0, 100.0, 1000.0)
    data_seed: int = 0
    test_seed: int = 1

    def __post_init__(self) -> None:
        unknown = [c for c in self.cells if c not in CELLS]
        if unknown:
            raise ValueError(f"unknown cell(s) {', '.join(unknown)}; choose from {', '.join(CELLS)}")


CONFIGS = {
    "ci": Config(cells=("baseline", "pre-ln-blocks"), seeds=2, n_train=128, epochs=60,
                 batch_size=16, n_test=128, n_rollout=32),
    "full": Config(cells=tuple(CELLS), seeds=5, n_train=256, epochs=30, batch_size=32, n_test=256, n_rollout=64),
}


def config(profile_name: str | None = None) -> Config:
    """The configuration of the active profile (or of ``profile_name``)."""
    return profile.select(CONFIGS, profile_name)


def datasets(cfg: Config) -> tuple[LinearSequences, LinearSequences]:
    """The training and the test sequences of ``cfg`` (the same for every cell, variant and seed)."""
    return (
        linear_sequences(cfg.n_train, cfg.train_length, seed=cfg.data_seed),
        linear_sequences(cfg.n_test, cfg.eval_length, seed=cfg.test_seed),
    )
