"""The paper's Table 1 for the protein chapter, and how a run of ours compares with it.

Kept apart from :mod:`companion.experiments.protein` (which trains and saves the runs) so that the
paper's numbers, the comparison and the Markdown table sit in one place. ``results`` below is
anything with a ``table()`` method returning ``{method: {"ood": MeanCI, "id": MeanCI}}``, such as
:class:`companion.experiments.protein.Results`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from companion.stats import MeanCI, best_and_overlapping

__all__ = ["XGBOOST", "PARTS", "PAPER_TABLE_1", "EXPLAINED_DIFFERENCES", "as_table", "paper_agreement",
           "paper_distance", "closer_to_paper", "table_1_markdown"]

XGBOOST = "XGBoost"
PARTS = ("ood", "id")

#: The paper's Table 1 (Ziomek et al. 2025, Sec. 4.2): $R^2$, mean ± 95% CI over 10 seeds.
#: "Standard NN" there is "no LN" here.
PAPER_TABLE_1: dict[str, dict[str, tuple[float, float]]] = {
    "LN every": {"ood": (0.50, 0.02), "id": (0.60, 0.01)},
    "LN first": {"ood": (0.50, 0.02), "id": (0.59, 0.01)},
    "LN second": {"ood": (0.50, 0.01), "id": (0.60, 0.01)},
    "no LN": {"ood": (0.31, 0.02), "id": (0.58, 0.01)},
    XGBOOST: {"ood": (0.27, 0.04), "id": (0.61, 0.01)},
}

#: Table-1 entries of the ``full`` artefact whose interval misses the paper's, with the reason
#: (shown in the chapter; ``tests/test_protein.py`` accepts exactly these). Empty: none known.
EXPLAINED_DIFFERENCES: dict[tuple[str, str], str] = {}


def as_table(entries: dict[str, dict[str, tuple[float, float]]], seeds: int = 10) -> dict[str, dict[str, MeanCI]]:
    """Table-1 entries given as ``(mean, half-width)``, like :data:`PAPER_TABLE_1`, as 95% intervals
    (:class:`companion.stats.MeanCI`) of ``seeds`` runs."""
    return {m: {p: MeanCI(np.float64(v), np.float64(v - h), np.float64(v + h), np.float64(h), seeds, 0.95)
                for p, (v, h) in parts.items()} for m, parts in entries.items()}


def _overlaps(table: dict[str, dict[str, MeanCI]]) -> dict[tuple[str, str], bool]:
    return {
        (m, p): float(table[m][p].lower) <= mean + half and mean - half <= float(table[m][p].upper)
        for m, parts in PAPER_TABLE_1.items() if m in table
        for p, (mean, half) in parts.items()
    }


def paper_agreement(results: Any) -> dict[tuple[str, str], bool]:
    """For each (method, part) of Table 1: does our 95% interval overlap the paper's?"""
    return _overlaps(results.table())


def paper_distance(results: Any) -> dict[str, float]:
    """How far a run's Table 1 is from the paper's, over the entries both have.

    ``overlaps``: the number of entries whose 95% interval overlaps the paper's
    (:func:`paper_agreement`); ``mean``: the mean absolute difference of the means; ``half_width``:
    the mean absolute difference of the intervals' half-widths. Two split protocols that tie on
    overlaps differ in how wide their intervals are, which ``half_width`` measures.
    """
    table = results.table()
    pairs = [(table[m][p], paper) for m, parts in PAPER_TABLE_1.items() if m in table for p, paper in parts.items()]
    if not pairs:
        raise ValueError("the results have no method of the paper's Table 1 with two or more runs")
    return {
        "overlaps": int(sum(_overlaps(table).values())),
        "entries": len(pairs),
        "mean": float(np.mean([abs(float(ours.mean) - mean) for ours, (mean, _) in pairs])),
        "half_width": float(np.mean([abs(float(ours.half_width) - half) for ours, (_, half) in pairs])),
    }


def closer_to_paper(distances: dict[str, dict[str, float]]) -> str | None:
    """Which of two runs (``{name: paper_distance(run)}``) matches the paper's Table 1 better.

    The one with more intervals overlapping the paper's; on a tie, the one whose means *and*
    half-widths are both closer. ``None`` when neither is (a tie, or one closer in means and the
    other in half-widths).
    """
    if len(distances) != 2:
        raise ValueError(f"compare exactly two runs, got {len(distances)}: {sorted(distances)}")
    (a, da), (b, db) = distances.items()

    def better(x: dict[str, float], y: dict[str, float]) -> bool:
        return x["overlaps"] > y["overlaps"] or (
            x["overlaps"] == y["overlaps"] and x["mean"] < y["mean"] and x["half_width"] < y["half_width"])

    return a if better(da, db) else b if better(db, da) else None


def table_1_markdown(columns: dict[str, Any], digits: int = 2) -> str:
    """Table 1 as Markdown: the paper's numbers, then ours (one column per entry of ``columns``).

    Bold follows the paper within each column (:func:`companion.stats.best_and_overlapping`);
    a ``None`` column (e.g. no ``full`` artefact) is shown as dashes. Columns whose results have a
    true ``deterministic`` attribute (the infinite-width prediction) are shown without interval.
    """
    exact = {name for name, r in columns.items() if getattr(r, "deterministic", False)}
    sources = {"paper": as_table(PAPER_TABLE_1)} | {name: r.table() if r else None for name, r in columns.items()}
    header, cells = ["method"], {m: [m] for m in PAPER_TABLE_1}
    for part in PARTS:
        for name, table in sources.items():
            header.append(f"{part.upper()} R² ({name})")
            bold = best_and_overlapping({m: t[part] for m, t in table.items()}) if table else set()
            for m in PAPER_TABLE_1:
                cell = table[m][part] if table and m in table else None
                text = "—" if cell is None else (f"{float(cell.mean):.{digits}f}" if name in exact else cell.format(digits))
                cells[m].append(f"**{text}**" if m in bold else text)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in cells.values()])
