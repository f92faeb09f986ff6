"""Load the benchmark result files and draw the figures of the book's *Performance* appendix."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from common import ROOT

RESULTS = ROOT / "benchmarks" / "results"
IMPL_STYLE = {"companion": "-", "companion, one program": ":", "neural-tangents": "--"}
DTYPE_COLOUR = {"float32": "C0", "float64": "C3"}
LABELS = {"vmapped": "(a) JAX, 40 runs in one vmap", "grouped": "(a') JAX, fit_variants' default grouping",
          "per_architecture": "JAX, 10 seeds vmapped per network", "jax_per_seed": "(b) JAX, one seed at a time",
          "torch_per_seed": "(c) PyTorch, one seed at a time"}


def load(folder: Path = RESULTS) -> dict[str, dict]:
    """Every result file, keyed by its name without ``.json`` (``cpu-quick``, ``gpu-h100-full``, ...)."""
    return {p.stem: json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))}


def machine_markdown(results: dict[str, dict]) -> str:
    rows = ["| results | date | commit | CPU | cores | memory | device | jax | torch |", "|---|---|---|---|---|---|---|---|---|"]
    for name, r in results.items():
        p = r["provenance"]
        m, v = p["machine"], p["versions"]
        rows.append(f"| `{name}` | {p['date'][:10]} | `{p['git_commit'][:8]}` | {m['cpu']} | {m['cores']} | "
                    f"{m['memory_gib']} GiB | {m['device']['name']} | {v['jax']} | {v.get('torch') or '–'} |")
    return "\n".join(rows)


def kernel_ratios(result: dict) -> list[dict]:
    """Per (arch, dtype, n): companion's and neural-tangents' run times, the speed-up (neural-tangents'
    time over companion's, median and range over interleaved repeats) and the largest difference."""
    rows = {}
    for r in result["benchmarks"]["kernels"]["matrix"]:
        rows.setdefault((r["arch"], r["dtype"], r["n"]), {})[r["impl"]] = r
    out = []
    for (arch, dtype, n), group in sorted(rows.items()):
        ours, theirs = group["companion"], group["neural-tangents"]
        ratio = ours["run_s"] / theirs["run_s"]
        out.append({"arch": arch, "dtype": dtype, "n": n, "ratio": ratio,
                    "best_ratio": ours.get("best_s", ours["run_s"]) / theirs.get("best_s", theirs["run_s"]),
                    "speedup": ours.get("speedup_median", 1 / ratio),
                    "speedup_min": ours.get("speedup_min", 1 / ratio), "speedup_max": ours.get("speedup_max", 1 / ratio),
                    "cpu_speedup": ours.get("cpu_speedup_median", float("nan")),
                    "ours_s": ours["run_s"], "nt_s": theirs["run_s"],
                    "ours_compile_s": ours["compile_s"], "nt_compile_s": theirs["compile_s"],
                    "ours_mib": ours["peak_mib"], "nt_mib": theirs["peak_mib"],
                    "max_rel_diff": max(ours["nngp_max_rel_diff"], ours["ntk_max_rel_diff"])})
    return out


def log_axis(axis) -> None:
    """Plain tick labels on a log axis (``2.5``, ``250``, ``1,000``), no minor labels: they never overlap."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.5, 5.0)))
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}" if v >= 10 else f"{v:g}"))
    axis.set_minor_formatter(NullFormatter())


def plot_kernels(axes, result: dict) -> None:
    """Left: run time against n, log-log (line style: implementation; colour: dtype; marker: network).
    Right: speed-up of ``kernel()`` over neural-tangents (median and range of interleaved repeats)."""
    from matplotlib.lines import Line2D

    matrix = result["benchmarks"]["kernels"]["matrix"]
    archs = {"no LN": "o", "LN every": "s"}
    for arch, marker in archs.items():
        for impl, style in IMPL_STYLE.items():
            for dtype, colour in DTYPE_COLOUR.items():
                rows = sorted((r for r in matrix if r["arch"] == arch and r["impl"] == impl and r["dtype"] == dtype),
                              key=lambda r: r["n"])
                if rows:
                    axes[0].plot([r["n"] for r in rows], [r["run_s"] for r in rows], style, marker=marker,
                                 color=colour, ms=4)
    blocked = [r for r in result["benchmarks"]["kernels"].get("blocked", []) if "run_s" in r]
    for dtype, colour in DTYPE_COLOUR.items():
        rows = [r for r in blocked if r["dtype"] == dtype]
        if rows:
            axes[0].plot([r["n"] for r in rows], [r["run_s"] for r in rows], "-", marker="^", color=colour, ms=4)
    n = np.array([min(r["n"] for r in matrix), max([r["n"] for r in matrix + blocked])])
    axes[0].plot(n, 1e-8 * n**2, color="grey", lw=0.8)
    handles = [Line2D([], [], ls=style, color="k", label=impl) for impl, style in IMPL_STYLE.items()]
    handles += [Line2D([], [], ls="", marker="o", color=c, label=d) for d, c in DTYPE_COLOUR.items()]
    handles += [Line2D([], [], ls="", marker=m, color="k", mfc="none", label=a) for a, m in archs.items()]
    handles += [Line2D([], [], color="grey", lw=0.8, label=r"$\propto n^2$")]
    axes[0].legend(handles=handles, fontsize=8, ncol=2, loc="lower right")
    axes[0].set(xscale="log", yscale="log", xlabel="points n (the kernel is n x n)", ylabel="seconds (median)")
    log_axis(axes[0].xaxis)
    for arch, marker in archs.items():
        for dtype, colour in DTYPE_COLOUR.items():
            rows = sorted((r for r in kernel_ratios(result) if r["arch"] == arch and r["dtype"] == dtype),
                          key=lambda r: r["n"])
            if rows:
                x = np.array([r["n"] for r in rows]) * (1.04 if dtype == "float64" else 0.96)
                y = np.array([r["speedup"] for r in rows])
                err = [y - [r["speedup_min"] for r in rows], [r["speedup_max"] for r in rows] - y]
                axes[1].errorbar(x, y, yerr=err, marker=marker, color=colour, ms=4, capsize=2, lw=1)
    axes[1].axhline(2, color="grey", lw=0.8, ls=":")
    axes[1].axhline(1, color="grey", lw=0.8)
    axes[1].set(xscale="log", xlabel="points n", ylabel="neural-tangents time / companion time", ylim=(0, None))
    log_axis(axes[1].xaxis)


def plot_training(ax, result: dict) -> None:
    """Seconds per epoch of the whole 40-run sweep, each way (median and range over interleaved
    repeats), with its speed relative to PyTorch (median and range of the per-repeat ratios)."""
    ways = result["benchmarks"]["training"]["ways"]
    names = [k for k in LABELS if k in ways]
    med = np.array([ways[k]["epoch_median"] for k in names])
    err = [med - [ways[k]["epoch_min"] for k in names], [ways[k]["epoch_max"] for k in names] - med]
    colours = {"vmapped": "C2", "grouped": "C2", "per_architecture": "C2", "jax_per_seed": "C0", "torch_per_seed": "C1"}
    bars = ax.barh([LABELS[k] for k in names], med, xerr=err, capsize=2, color=[colours[k] for k in names])
    for bar, k in zip(bars, names):
        w = ways[k]
        text = f"{w['epoch_median']:.2f} s"
        if "vs_torch_median" in w and k != "torch_per_seed":
            text += f"  ({w['vs_torch_median']:.2f}x PyTorch, {w['vs_torch_min']:.2f}-{w['vs_torch_max']:.2f})"
        ax.text(w["epoch_max"], bar.get_y() + bar.get_height() / 2, " " + text, va="center", fontsize=7)
    ax.invert_yaxis()
    ax.set(xlabel="seconds per epoch of the 40-run sweep (lower is faster)", xlim=(0, 1.9 * max(med)))


def training_markdown(result: dict) -> str:
    """Per way: time per sweep epoch, the extrapolated sweep, achieved FLOP/s against the same-shape
    matmul rate of its framework and against the square-matmul peak, and the ratio to PyTorch."""
    t = result["benchmarks"]["training"]
    rows = ["| way | s per sweep epoch, median (range) | 2,500 epochs | achieved GFLOP/s | same-shape matmul GFLOP/s "
            "| share of same-shape rate | share of square-matmul peak | x PyTorch, median (range) |",
            "|---|---|---|---|---|---|---|---|"]
    for k in LABELS:
        if k not in t["ways"]:
            continue
        w = t["ways"][k]
        ratio = (f"{w['vs_torch_median']:.2f} ({w['vs_torch_min']:.2f}-{w['vs_torch_max']:.2f})"
                 if "vs_torch_median" in w else "–")
        rows.append(f"| {LABELS[k]} | {w['epoch_median']:.2f} ({w['epoch_min']:.2f}-{w['epoch_max']:.2f}) "
                    f"| {w['sweep_s'] / 60:.0f} min | {w['achieved_flops'] / 1e9:.0f} | {w['same_shape_flops'] / 1e9:.0f} "
                    f"| {w['of_same_shape']:.0%} | {w['of_peak']:.0%} | {ratio} |")
    return "\n".join(rows)


def plot_runs_per_program(ax, result: dict) -> None:
    """Seconds per run-epoch against the runs vmapped together (median and range of the repeats)."""
    t = result["benchmarks"]["training"]
    curve = t["runs_per_program"]
    g = np.array([r["runs_per_program"] for r in curve])
    med = np.array([r["run_epoch_median"] for r in curve]) * 1e3
    err = [med - [1e3 * r["run_epoch_min"] for r in curve], [1e3 * r["run_epoch_max"] for r in curve] - med]
    ax.errorbar(g, med, yerr=err, marker="o", capsize=2, label="fit_variants, 40 runs in groups")
    ax.axvline(t["grouped_runs_per_program"], color="grey", lw=0.8, ls=":", label="default on this device")
    ax.set(xscale="log", xlabel="runs vmapped together (runs_per_program)", ylabel="ms per run and epoch",
           ylim=(0, 1.15 * max(med + err[1])), title=f"{t['rows']:,} rows, width 128")
    log_axis(ax.xaxis)
    ax.legend(fontsize=7)


def book_markdown(result: dict) -> str:
    book = result["benchmarks"].get("book")
    if not book or not book["chapters"]:
        return "No chapter timings in this result file."
    rows = ["| chapter | seconds (ci profile) |", "|---|---|"]
    rows += [f"| {r['chapter']} | {r['seconds']:.0f} |" for r in book["chapters"]]
    rows.append(f"| **all chapters** | **{book['total_seconds']:.0f}** |")
    return "\n".join(rows)
