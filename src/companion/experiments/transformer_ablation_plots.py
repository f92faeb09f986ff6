"""Figures of the transformer ablation (:mod:`companion.experiments.transformer_ablation`)."""

from __future__ import annotations

import numpy as np

from companion.experiments.transformer_ablation import CELLS, EXPLODES, MODES, VARIANTS, Study, measures
from companion.stats import mean_ci

__all__ = ["plot_cells", "plot_curves"]


def plot_cells(study: Study, axes) -> None:
    """Per cell (rows) and evaluation mode (one axis each): mean absolute prediction over mean
    absolute truth at i = 91..100 for both variants; 1 is the size of the truth, :data:`EXPLODES` the explosion line."""
    from companion import plotting

    cells = list(study.runs)
    rows = np.arange(len(cells))
    for ax, mode in zip(axes, MODES):
        for offset, variant in zip((-0.15, 0.15), VARIANTS):
            ratios = [measures(study, cell, variant, mode)["ratio"] for cell in cells]
            ax.scatter(ratios, rows + offset, color=plotting.colour(variant), label=variant, zorder=3)
        ax.axvline(1.0, color=plotting.colour("data"), lw=1, ls="--")
        ax.axvline(EXPLODES, color="0.5", lw=1, ls=":")
        ax.set(xscale="log", yticks=rows, ylim=(len(cells) - 0.5, -0.5), title=mode,
               xlabel="mean $|$prediction$|$ / mean $|$truth$|$, $i = 91..100$")
        ax.set_yticklabels([CELLS[c].changes() for c in cells] if ax is axes[0] else [])
    axes[0].legend(loc="lower right", fontsize=8)


def plot_curves(study: Study, cell: str, axes) -> None:
    """Mean absolute prediction along the index i for one cell, both variants (mean and 95% band
    over seeds), teacher-forced and autoregressive, with the mean absolute truth."""
    from companion import plotting

    index, trained = study.index, study.config.train_length
    for ax, mode in zip(axes, MODES):
        plotting.mark_training_range(ax, (1, trained))
        rows = study.config.n_rollout if mode == "autoregressive" else None
        ax.plot(index, study.truth(rows)["size"], color=plotting.colour("data"), lw=1, ls="--", label="truth")
        for variant in VARIANTS:
            plotting.band(ax, index, mean_ci(study.curve(cell, variant, mode, "size"), axis=0), variant)
        ax.set(yscale="log", xlabel="index $i$ of the predicted value", title=f"{CELLS[cell].changes()}, {mode}")
    axes[0].set_ylabel("mean $|$prediction$|$")
    axes[0].legend(loc="best", fontsize=8)
