"""The benchmark report's log axes label each tick with its own value."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_log_axis_labels_are_the_tick_values() -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import report
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    fig, ax = plt.subplots()
    ax.set_xscale("log")
    report.log_axis(ax.xaxis)
    fmt = ax.xaxis.get_major_formatter()
    assert [fmt(v, 0) for v in (1, 2.5, 5, 25, 250, 2500)] == ["1", "2.5", "5", "25", "250", "2,500"]
    plt.close(fig)
