"""The book's figure style: one look for every chapter, legible on a wide screen and on a phone.

Colours are fixed per architecture label (``no LN`` is always red, as in the paper's figures, and
LayerNorm variants are blues and greens), so a reader can compare figures across chapters.

Legibility is checked, not hoped for. A figure is shown at its natural size (an SVG inch is 96
CSS pixels) or shrunk to the book's text column (:data:`TEXT_WIDTH_PX`); on a phone the page
never shrinks it below :data:`PHONE_MIN_SCALE` of its natural size and lets a wide figure scroll
sideways instead (``book/_static/companion.js``). :func:`use_style` makes every figure a chapter
shows pass through :func:`legible` first, which raises any text smaller than
:data:`MIN_TEXT_PX` at the rendered width to that size and thins the labels of minor ticks on
log axes so that they cannot overlap; :func:`smallest_text_px` is what the tests measure.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

import matplotlib as mpl
import matplotlib.pyplot as plt
import numpy as np
from matplotlib import ticker

from companion.stats import MeanCI

__all__ = [
    "ARCH_COLOURS", "TEXT_WIDTH_PX", "MIN_TEXT_PX", "PHONE_MIN_SCALE", "colour", "use_style", "legible",
    "smallest_text_px", "coincident", "curves", "band", "mark_training_range", "histograms",
]

#: Width (CSS pixels) of the book's figures in a 1,280 px window (the theme's text column, less the output's
#: padding), measured in Chromium: a wider figure is shrunk to it; at 1,400 px and more there are 750 px.
TEXT_WIDTH_PX = 670
#: The smallest text (CSS pixels) a figure may show at its rendered width.
MIN_TEXT_PX = 9.0
#: On a phone a figure is shown at least this fraction of its natural size (wider ones scroll).
PHONE_MIN_SCALE = 0.8
_PX_PER_INCH = 96  # an SVG's inch in CSS pixels

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
            "xtick.labelsize": 9,
            "ytick.labelsize": 9,
            "lines.linewidth": 1.8,
            "image.cmap": "viridis",
        }
    )
    _inline_figures_as_svg()


def _inline_figures_as_svg() -> None:
    try:
        from IPython import get_ipython
    except ImportError:  # plain Python: nothing is shown inline
        return
    shell = get_ipython()
    if shell is not None:
        from matplotlib.figure import Figure
        from matplotlib_inline.backend_inline import set_matplotlib_formats

        set_matplotlib_formats("svg")
        formatter = shell.display_formatter.formatters["image/svg+xml"]
        draw = formatter.lookup_by_type(Figure)
        formatter.for_type(Figure, lambda fig: draw(legible(fig)))


def _rendered_scale(fig: mpl.figure.Figure, width_px: float) -> float:
    natural = fig.get_figwidth() * _PX_PER_INCH
    return min(1.0, width_px / natural)


def _texts(fig: mpl.figure.Figure) -> list[mpl.text.Text]:
    """The visible, non-empty texts of a figure, tick labels included."""
    fig.canvas.draw()  # tick labels exist (and are final) only once the figure is drawn
    found = fig.findobj(lambda a: isinstance(a, mpl.text.Text) and a.get_visible() and a.get_text().strip() != "")
    return [t for t in found if t.axes is None or t.axes.get_visible()]


def smallest_text_px(fig: mpl.figure.Figure, width_px: float = TEXT_WIDTH_PX) -> tuple[float, str]:
    """The smallest text of ``fig`` in CSS pixels when shown ``width_px`` wide (or its natural width
    if smaller), and that text."""
    scale = _rendered_scale(fig, width_px) * _PX_PER_INCH / 72
    sizes = [(t.get_fontsize() * scale, t.get_text()) for t in _texts(fig)]
    return min(sizes) if sizes else (math.inf, "")


class _SparseLogLabels(ticker.LogFormatterSciNotation):
    """Labels of minor ticks on a log axis at 2 and 5 (and 3 on short axes) times a power only.

    matplotlib labels every minor tick of an axis spanning less than a decade, and their labels
    ("3×10²4×10²6×10²") run into each other at a book's sizes.
    """

    def set_locs(self, locs: object = None) -> None:
        super().set_locs(locs)
        if self._sublabels is not None and self._sublabels != {1}:
            low, high = sorted(abs(v) for v in self.axis.get_view_interval())
            decades = math.log10(high / low) if low > 0 else math.inf
            self._sublabels = {1, 2, 5} if decades > 0.5 else {1, 2, 3, 5}


def legible(fig: mpl.figure.Figure, width_px: float = TEXT_WIDTH_PX, min_px: float = MIN_TEXT_PX) -> mpl.figure.Figure:
    """Make ``fig`` readable at ``width_px``: no text under ``min_px``, no overlapping log-tick labels.

    Text is only ever made larger (e.g. a legend a chapter asked for at 7 pt in a wide figure);
    the figure's layout engine, if any, makes room when it is drawn. Returns ``fig``.
    """
    for ax in fig.get_axes():
        for axis in (ax.xaxis, ax.yaxis):
            minor = axis.get_minor_formatter()
            if axis.get_scale() == "log" and type(minor) is ticker.LogFormatterSciNotation:
                axis.set_minor_formatter(_SparseLogLabels(minor._base, labelOnlyBase=False))
    smallest_pt = min_px / (_rendered_scale(fig, width_px) * _PX_PER_INCH / 72)
    for text in _texts(fig):
        if text.get_fontsize() < smallest_pt:
            text.set_fontsize(smallest_pt)
    for ax in fig.get_axes():  # tick labels are remade at each draw: set their size on the axis
        for axis in ("x", "y"):
            for which in ("major", "minor"):
                ticks = getattr(ax, f"{axis}axis").get_ticklabels(which=which)
                if ticks and min(t.get_fontsize() for t in ticks) < smallest_pt:
                    ax.tick_params(axis=axis, which=which, labelsize=max(smallest_pt, min(t.get_fontsize() for t in ticks)))
    return fig


def coincident(values: Mapping[str, np.ndarray], tol: float = 0.005, log: bool = False) -> list[list[str]]:
    """Group the labels of curves that a reader cannot tell apart, in order.

    Two curves coincide where they differ nowhere by more than ``tol`` of the span of all the
    curves (on a log axis, ``log=True``, of the span of their logarithms): about a line's width.
    """
    arrays = {label: np.asarray(y, dtype=float) for label, y in values.items()}
    if log:
        arrays = {label: np.log10(np.abs(y)) for label, y in arrays.items()}
    finite = np.concatenate([y[np.isfinite(y)] for y in arrays.values()] or [np.zeros(1)])
    atol = tol * max(float(np.ptp(finite)), 1e-300)
    groups: list[list[str]] = []
    for label, y in arrays.items():
        for group in groups:
            other = arrays[group[0]]
            if other.shape == y.shape and np.all(np.abs(y - other) <= atol):
                group.append(label)
                break
        else:
            groups.append([label])
    return groups


def curves(ax: plt.Axes, x: np.ndarray, values: Mapping[str, np.ndarray], tol: float = 0.005, **kwargs: object) -> None:
    """One line per curve, coloured by label. Curves that coincide on this axis (set its scale
    first) are drawn once, and the legend says so ("LN first = LN last (one line at this scale)")
    instead of hiding entries under one line."""
    for group in coincident(values, tol, log=ax.get_yscale() == "log"):
        label = group[0] if len(group) == 1 else " = ".join(group) + " (one line at this scale)"
        ax.plot(x, values[group[0]], color=colour(group[0]), label=label, **kwargs)


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
