"""Analytic kernels: ``companion.kernels`` against neural-tangents' ``stax`` ``kernel_fn``.

For the paper's two-hidden-layer ReLU network (:func:`companion.arch.theory_spec`, without
LayerNorm and with one in every hidden layer) each implementation computes the NNGP and NTK
matrices ``K(x, x)`` of ``n`` Gaussian points in 9 dimensions (the protein data's width), in float32
and float64:

* ``companion``: the checked entry point ``kernel(x, None)`` (tiles on and above the diagonal,
  mirrored; writable NumPy results: a copy that neural-tangents' timing does not include);
* ``companion, one program``: ``kernel_fn`` on the whole matrix at once (the previous method);
* ``neural-tangents``: its jit-compiled ``kernel_fn(x, x)``.

The three are timed interleaved (one call of each per repeat, after a first call that compiles),
so a burst of other work on a shared machine hits all of them; per repeat the ratio of
neural-tangents' time to companion's is recorded, and its median, minimum and maximum reported.
The same ratio of CPU time (``time.process_time``, all threads of this process), which other
processes on a busy machine disturb much less than the wall time, is recorded too. Also recorded: compile time (first call minus the median), peak resident memory above the level
before the call (CPU), and the largest differences between companion and neural-tangents. At the
largest ``n``, the device time of ``kernel``'s tile program with NNGP and NTK packed in one complex
output against the same program with two outputs (interleaved likewise). Then ``kernel(x, None)``
at sizes up to the largest whose result fits the available memory.
"""

from __future__ import annotations

import functools
import os
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

from common import PeakRSS, load_average, timed
from companion.arch import theory_spec
from companion.kernels import blocks, kernel, kernel_fn, recursion, stax_model

FEATURES = 9
SIZES = {"quick": [250, 1000, 4000], "full": [250, 500, 1000, 2000, 4000, 8000]}
BLOCKED = {"quick": [8000], "full": [8000, 16000, 24000, 32000, 40000]}
REPEATS = {"quick": 5, "full": 7}
PLACEMENTS = ("none", "every")


def _inputs(n: int) -> np.ndarray:
    return np.random.default_rng(0).normal(size=(n, FEATURES))


def _available_bytes() -> int:
    try:
        for line in open("/proc/meminfo"):
            if line.startswith("MemAvailable"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 8 * 2**30


def _compare(ours: tuple, theirs: tuple) -> dict[str, float]:
    """Largest differences, off the diagonal and on it (``x = x'``), absolute and relative to the
    largest entry. On the diagonal neural-tangents takes ``arccos`` of a correlation one rounding
    error below 1, which moves the ReLU NTK by about ``sqrt(eps)`` (1e-8 in float64); companion
    snaps that correlation to exactly 1 (:func:`companion.kernels.recursion._correlation`)."""
    out = {}
    for name, a, b in zip(("nngp", "ntk"), ours, theirs):
        a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
        diff = np.abs(a - b)
        scale = float(np.max(np.abs(b)))
        on = float(np.max(np.diagonal(diff)))
        np.fill_diagonal(diff, 0.0)
        off = float(np.max(diff))
        out[f"{name}_max_abs_diff"] = off
        out[f"{name}_max_rel_diff"] = off / scale
        out[f"{name}_diag_max_rel_diff"] = on / scale
    return out


def _interleaved(runs: dict, repeats: int) -> dict[str, dict]:
    """First call of each (compilation), then ``repeats`` rounds of one call of each, in turn."""
    out = {}
    for impl, fn in runs.items():
        start = time.perf_counter()
        result = fn()
        out[impl] = {"first_s": time.perf_counter() - start, "runs_s": [], "cpu_runs_s": [], "peak_mib": 0.0,
                     "result": result}
    for _ in range(repeats):
        for impl, fn in runs.items():
            with PeakRSS() as mem:
                start, cpu = time.perf_counter(), time.process_time()
                fn()
                elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
            out[impl]["runs_s"].append(elapsed)
            out[impl]["cpu_runs_s"].append(cpu)
            out[impl]["peak_mib"] = max(out[impl]["peak_mib"], mem.peak / 2**20)
    for t in out.values():
        t["run_s"] = statistics.median(t["runs_s"])
        t["best_s"] = min(t["runs_s"])
        t["compile_s"] = max(0.0, t["first_s"] - t["run_s"])
        t["cpu_s"] = statistics.median(t["cpu_runs_s"])
    return out


def _case(spec, dtype, n: int, repeats: int) -> list[dict]:
    x64 = dtype == np.float64
    rows = []
    x_np = _inputs(n)
    with jax.enable_x64(x64):
        x = jnp.asarray(x_np, dtype)
        ours_fn = kernel_fn(spec)
        nt_fn = jax.jit(stax_model(spec)[2], static_argnames=("get",))
        runs = {
            "companion": lambda: kernel(x_np, None, spec, dtype=dtype),
            "companion, one program": lambda: jax.block_until_ready(ours_fn(x, x)),
            "neural-tangents": lambda: jax.block_until_ready(tuple(nt_fn(x, x, ("nngp", "ntk")))),
        }
        timings = _interleaved(runs, repeats)
        results = {impl: t.pop("result") for impl, t in timings.items()}
        diffs = _compare(results["companion"], results["neural-tangents"])
    nt_runs = timings["neural-tangents"]["runs_s"]
    for impl, t in timings.items():
        row = {"impl": impl, "arch": spec.label, "dtype": np.dtype(dtype).name, "n": n, **t, **diffs}
        if impl != "neural-tangents":
            speedups = [theirs / ours for theirs, ours in zip(nt_runs, t["runs_s"])]
            cpu = [theirs / ours for theirs, ours in zip(timings["neural-tangents"]["cpu_runs_s"], t["cpu_runs_s"])]
            row.update(speedup_median=statistics.median(speedups), speedup_min=min(speedups),
                       speedup_max=max(speedups), cpu_speedup_median=statistics.median(cpu))
        rows.append(row)
    return rows


@functools.partial(jax.jit, static_argnums=(4, 5))
def _two_outputs(x1, x2, rows, cols, arch, tile):
    """The tile program of ``kernel(x, None)`` as it was before packing: NNGP and NTK as two outputs."""
    a = x1.reshape(-1, tile, x1.shape[1])[rows]
    b = x2.reshape(-1, tile, x2.shape[1])[cols]
    nngp, ntk = jax.vmap(lambda u, v: recursion._propagate(*recursion._first_layer(u, v, arch), arch))(a, b)
    return nngp, ntk, jnp.all(jnp.isfinite(nngp)) & jnp.all(jnp.isfinite(ntk))


def _packing(spec, dtype, n: int, repeats: int) -> dict:
    """Device time of the tiles on and above the diagonal (no placement on the host): the recursion
    with NNGP and NTK packed in one complex output (what ``kernel`` runs) against two outputs."""
    arch = recursion._Arch.of(spec)
    padded = blocks.padded_rows(n)
    tile = blocks.tile_size(padded)
    rows, cols = np.triu_indices(padded // tile)
    with jax.enable_x64(dtype == np.float64):
        x = jnp.asarray(blocks.pad_rows(_inputs(n), padded), dtype)
        r, c = jnp.asarray(rows, jnp.int32), jnp.asarray(cols, jnp.int32)
        runs = {"one packed output": lambda: jax.block_until_ready(recursion._tiled(x, x, r, c, arch, (tile, tile))),
                "two outputs": lambda: jax.block_until_ready(_two_outputs(x, x, r, c, arch, tile))}
        timings = _interleaved(runs, repeats)
    ratios = [two / one for one, two in zip(timings["one packed output"]["runs_s"], timings["two outputs"]["runs_s"])]
    return {"arch": spec.label, "dtype": np.dtype(dtype).name, "n": n,
            **{f"{impl}_s": t["run_s"] for impl, t in timings.items()},
            "ratio_median": statistics.median(ratios), "ratio_min": min(ratios), "ratio_max": max(ratios)}


def run(mode: str) -> dict:
    before = load_average()
    matrix = []
    for placement in PLACEMENTS:
        spec = theory_spec(layernorm=placement)
        for dtype in (np.float32, np.float64):
            for n in SIZES[mode]:
                matrix += _case(spec, dtype, n, REPEATS[mode])
                print(f"  kernels {spec.label:9s} {np.dtype(dtype).name} n={n}: "
                      + ", ".join(f"{r['impl']} {r['run_s']:.3f}s" for r in matrix[-3:])
                      + f"; neural-tangents / companion {matrix[-3]['speedup_median']:.2f} "
                        f"({matrix[-3]['speedup_min']:.2f}-{matrix[-3]['speedup_max']:.2f})", flush=True)
    packing = []
    for placement in PLACEMENTS:
        for dtype in (np.float32, np.float64):
            packing.append(_packing(theory_spec(layernorm=placement), dtype, SIZES[mode][-1], REPEATS[mode]))
            print(f"  tile program {packing[-1]['arch']:9s} {packing[-1]['dtype']}: two outputs / one packed "
                  f"{packing[-1]['ratio_median']:.2f}", flush=True)
    blocked = []
    spec = theory_spec(layernorm="every")
    for dtype in (np.float32, np.float64):
        itemsize = np.dtype(dtype).itemsize
        for n in BLOCKED[mode]:
            # the two n x n results and the blocks in flight; leave room for the other processes
            if 2.2 * n * n * itemsize > 0.6 * _available_bytes():
                blocked.append({"arch": spec.label, "dtype": np.dtype(dtype).name, "n": n,
                                "skipped": "the results would not fit in the available memory"})
                continue
            x = _inputs(n)
            t = timed(lambda: kernel(x, None, spec, dtype=dtype), 1)
            t.pop("result")
            blocked.append({"arch": spec.label, "dtype": np.dtype(dtype).name, "n": n, **t})
            print(f"  blocked kernel {np.dtype(dtype).name} n={n}: {t['run_s']:.2f}s", flush=True)
    return {"load_before": before, "load_after": load_average(), "matrix": matrix, "packing": packing, "blocked": blocked,
            "features": FEATURES, "threads": os.cpu_count(), "devices": len(jax.devices())}
