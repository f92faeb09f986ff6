"""The book's figure style: one look for every chapter.

Colours are fixed per architecture label (``no LN`` is always red, as in the paper's figures, and
LayerNorm variants are blues and greens), so a reader can compare figures across chapters.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import matplotlib as mpl
import matplotlib.pyplot as plt
import numpy as np

from companion.stats import MeanCI

__all__ = ["ARCH_COLOURS", "colour", "use_style", "band", "mark_training_range", "histograms"]

ARCH_COLOURS = {
    "no LN": "#c0392b",
    "LN first": "#1f5fa8",
    "LN second": "#2e9d5b",
    "LN last": "#2e9d5b",
    "LN every": "#7b3fa0",
    "BatchNorm": "#e08a1e",
    "RMSNorm first": "#17a2b8",
    "LN first + affine": "#4c78c8",
    "LN first, eps 100": "#8fb3e0",
    "LN first after ReLU": "#2e9d5b",
    "DyT first": "#b8860b",
    "XGBoost": "#555555",
    "data": "#222222",
}
_FALLBACK = plt.get_cmap("tab10").colors


def colour(label: str) -> str:
    """The fixed colour of an architecture label (a stable fallback for unknown labels)."""
    if label in ARCH_COLOURS:
        return ARCH_COLOURS[label]
    return mpl.colors.to_hex(_FALLBACK[sum(map(ord, label)) % len(_FALLBACK)])


def use_style() -> None:
    """Set the book's matplotlib defaults (sizes for a page column, no top/right spines).

    In a notebook, figures are also shown as SVG: sharp at any zoom on the website and in Colab,
    and small, since the book's figures are lines, bands and histograms rather than many points.
    """
    mpl.rcParams.update(
        {
            "figure.figsize": (7.0, 3.6),
            "figure.dpi": 110,
            "savefig.dpi": 150,
            "font.size": 10,
            "axes.titlesize": 10,
            "axes.labelsize": 10,
            "legend.fontsize": 9,
            "legend.frameon": False,
            "axes.spines.top": False,
            "axes.spines.right": False,
            "axes.grid": True,
            "grid.alpha": 0.25,
            "lines.linewidth": 1.8,
        }
    )
    _inline_figures_as_svg()


def _inline_figures_as_svg() -> None:
    try:
        from IPython import get_ipython
    except ImportError:  # plain Python: nothing is shown inline
        return
    if get_ipython() is not None:
        from matplotlib_inline.backend_inline import set_matplotlib_formats

        set_matplotlib_formats("svg")


def band(ax: plt.Axes, x: np.ndarray, summary: MeanCI, label: str, **kwargs: object) -> None:
    """Plot a mean curve with its confidence band (``summary`` from :func:`companion.stats.mean_ci`)."""
    c = kwargs.pop("color", colour(label))
    ax.plot(x, summary.mean, color=c, label=f"{label} (mean, {summary.n} seeds)", **kwargs)
    ax.fill_between(x, summary.lower, summary.upper, color=c, alpha=0.25, linewidth=0)


def mark_training_range(ax: plt.Axes, x_range: Iterable[float]) -> None:
    """Shade the interval the networks were trained on."""
    lo, hi = x_range
    ax.axvspan(lo, hi, color="0.85", zorder=0, label="training range")


def histograms(
    ax: plt.Axes,
    samples: Mapping[str, np.ndarray],
    reference: tuple[str, np.ndarray] | None = None,
    bins: int = 40,
) -> None:
    """Overlaid density histograms (outlines) of each label's samples on shared bins.

    ``reference`` (label, values), e.g. the measured targets, is drawn filled in grey underneath.
    """
    values = [np.ravel(v) for v in samples.values()] + ([np.ravel(reference[1])] if reference else [])
    edges = np.histogram_bin_edges(np.concatenate(values), bins=bins)
    if reference is not None:
        ax.hist(np.ravel(reference[1]), bins=edges, density=True, color="0.8", label=reference[0])
    for label, v in samples.items():
        ax.hist(np.ravel(v), bins=edges, density=True, histtype="step", linewidth=1.6, color=colour(label), label=label)
