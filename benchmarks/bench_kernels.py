"""Analytic kernels: ``companion.kernels`` against neural-tangents' ``stax`` ``kernel_fn``.

For the paper's two-hidden-layer ReLU network (:func:`companion.arch.theory_spec`, without
LayerNorm and with one in every hidden layer) both libraries compute the NNGP and NTK matrices
``K(x, x)`` of ``n`` Gaussian points in 9 dimensions (the protein data's width), each as one
jit-compiled call, in float32 and float64. Recorded per case: compile time (first call minus the
median of the timed calls), the median run time, peak resident memory (CPU) and the largest
difference between the two libraries (absolute and relative to the largest entry). Then the
blocked, checked entry point :func:`companion.kernels.kernel` at sizes whose results fit in memory.
"""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np

from common import load_average, timed
from companion.arch import theory_spec
from companion.kernels import kernel, kernel_fn, stax_model

FEATURES = 9
SIZES = {"quick": [250, 1000, 4000], "full": [250, 500, 1000, 2000, 4000, 8000]}
BLOCKED = {"quick": [8000], "full": [8000, 16000, 24000, 32000, 40000]}
REPEATS = {"quick": 3, "full": 5}
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


def _case(spec, dtype, n: int, repeats: int) -> list[dict]:
    x64 = dtype == np.float64
    rows = []
    with jax.enable_x64(x64):
        x = jnp.asarray(_inputs(n), dtype)
        ours_fn = kernel_fn(spec)
        nt_fn = jax.jit(stax_model(spec)[2], static_argnames=("get",))
        runs = {
            "companion": lambda: jax.block_until_ready(ours_fn(x, x)),
            "neural-tangents": lambda: jax.block_until_ready(tuple(nt_fn(x, x, ("nngp", "ntk")))),
        }
        results = {}
        for impl, fn in runs.items():
            t = timed(fn, repeats)
            results[impl] = t.pop("result")
            t.pop("runs_s")
            rows.append({"impl": impl, "arch": spec.label, "dtype": np.dtype(dtype).name, "n": n, **t})
        diffs = _compare(results["companion"], results["neural-tangents"])
    for row in rows:
        row.update(diffs)
    return rows


def run(mode: str) -> dict:
    before = load_average()
    matrix = []
    for placement in PLACEMENTS:
        spec = theory_spec(layernorm=placement)
        for dtype in (np.float32, np.float64):
            for n in SIZES[mode]:
                matrix += _case(spec, dtype, n, REPEATS[mode])
                print(f"  kernels {spec.label:9s} {np.dtype(dtype).name} n={n}: "
                      + ", ".join(f"{r['impl']} {r['run_s']:.3f}s" for r in matrix[-2:]), flush=True)
    blocked = []
    spec = theory_spec(layernorm="every")
    for dtype in (np.float32, np.float64):
        itemsize = np.dtype(dtype).itemsize
        for n in BLOCKED[mode]:
            # two n x n results, their symmetrised copies and the float64 staging: about 5 matrices
            if 5 * n * n * max(itemsize, 8) > 0.6 * _available_bytes():
                blocked.append({"arch": spec.label, "dtype": np.dtype(dtype).name, "n": n,
                                "skipped": "the results would not fit in the available memory"})
                continue
            x = _inputs(n)
            t = timed(lambda: kernel(x, None, spec, dtype=dtype), 1)
            t.pop("result")
            blocked.append({"arch": spec.label, "dtype": np.dtype(dtype).name, "n": n, **t})
            print(f"  blocked kernel {np.dtype(dtype).name} n={n}: {t['run_s']:.2f}s", flush=True)
    return {"load_before": before, "load_after": load_average(), "matrix": matrix, "blocked": blocked,
            "features": FEATURES, "threads": os.cpu_count()}
