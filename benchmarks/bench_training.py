"""Training: the protein Table-1 sweep (4 networks x 10 seeds, full batch on 40,132 rows).

Three ways to run the same sweep, timed per epoch in one process so that their ratios are fair:

(a) ``vmapped``: the book's program, :func:`companion.train.fit_variants`, all 40 runs in one
    jit-compiled, vmapped program (and ``per_architecture``: :func:`companion.train.fit` with the
    10 seeds vmapped, one call per network, as :mod:`companion.experiments.protein` trains them);
(b) ``jax_per_seed``: :func:`companion.train.fit` with one seed per call;
(c) ``torch_per_seed``: a plain PyTorch loop of the same model (Linear-[LN]-ReLU twice, Linear),
    Adam with learning rate 1e-3 and full-batch MSE, one seed after another.

Per-epoch times of the book's programs are clocked where they report to :mod:`companion.progress`,
once per compiled chunk of epochs. Each call of a chunk costs about 20 ms on a 2-core CPU
whatever its length (XLA's per-call setup), which a real run (2,500 epochs in chunks of 125)
spreads thin, so the benchmark runs its few epochs in two chunks (``CHUNKS``) and times the
second: the first carries the compilation, and the second's per-call cost is shared by
``EPOCHS / CHUNKS`` epochs, as in a real run it is shared by 125.
Extrapolated sweep time = fixed cost (tracing, compilation, initialisation: a call's wall time
minus its epochs) + 2,500 x per-epoch (x runs where run one at a time). Achieved
FLOP/s count 6 multiply-adds per weight, row and epoch (:func:`companion.experiments.protein.training_flops`)
against the machine's measured peak: a large float32 matmul.

Plus scaling: per-epoch time against the number of vmapped seeds and against the training rows.
"""

from __future__ import annotations

import contextlib
import statistics
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

import companion.train as train_module
from common import load_average
from companion.experiments import protein
from companion.train import fit, fit_variants

SWEEP_EPOCHS = 2500
EPOCHS = {"quick": 12, "full": 40}
CHUNKS = 2  # progress reports per call of fit: one compiled chunk, then one timed chunk
TORCH_EPOCHS = {"quick": 6, "full": 20}
SCALING_SEEDS = {"quick": [1, 4, 16], "full": [1, 2, 4, 8, 16, 32, 64]}
SCALING_ROWS = {"quick": [2500, 10000, 40132], "full": [1250, 2500, 5000, 10000, 20000, 40132]}
MATMUL = 4096


class _EpochClock:
    """Stands in for :func:`companion.progress.bar`: the time at which each chunk of epochs ended."""

    def __init__(self) -> None:
        self.marks: list[tuple[float, int]] = []

    def __call__(self, total: int, desc: str, **kwargs: Any) -> "_EpochClock":
        self.start = time.perf_counter()
        return self

    def __enter__(self) -> "_EpochClock":
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def update(self, n: int) -> None:
        self.marks.append((time.perf_counter(), n))

    def summary(self) -> dict[str, float]:
        times = [self.start] + [t for t, _ in self.marks]
        per = [(b - a) / n for a, b, (_, n) in zip(times, times[1:], self.marks)]
        epoch = statistics.median(per[1:])
        return {"epoch_s": epoch, "compile_s": max(0.0, per[0] * self.marks[0][1] - self.marks[0][1] * epoch),
                "epochs_timed": sum(n for _, n in self.marks[1:])}


@contextlib.contextmanager
def _clocked():
    clock = _EpochClock()
    original = train_module.progress.bar, train_module.PROGRESS_STEPS
    train_module.progress.bar, train_module.PROGRESS_STEPS = clock, CHUNKS
    try:
        yield clock
    finally:
        train_module.progress.bar, train_module.PROGRESS_STEPS = original


def _jax_epoch(run) -> dict[str, float]:
    with _clocked() as clock:
        start = time.perf_counter()
        run()
        total = time.perf_counter() - start
    summary = clock.summary()
    epochs = sum(n for _, n in clock.marks)
    # everything but the epochs themselves: tracing, compilation, initialisation, copies
    return summary | {"wall_s": total, "fixed_s": max(0.0, total - epochs * summary["epoch_s"])}


def _torch_model(torch, width: int, layernorm: frozenset[int], features: int):
    layers = []
    n_in = features
    for h in (1, 2):
        layers.append(torch.nn.Linear(n_in, width))
        if h in layernorm:
            layers.append(torch.nn.LayerNorm(width, elementwise_affine=False))
        layers.append(torch.nn.ReLU())
        n_in = width
    layers.append(torch.nn.Linear(width, 1))
    return torch.nn.Sequential(*layers)


def _torch_epoch(spec, x: np.ndarray, y: np.ndarray, epochs: int, seed: int = 0) -> dict[str, float]:
    import torch

    torch.manual_seed(seed)
    model = _torch_model(torch, spec.width, frozenset(spec.layernorm), x.shape[1])
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    xt, yt = torch.from_numpy(x.astype(np.float32)), torch.from_numpy(y.astype(np.float32))
    times = []
    for _ in range(epochs + 1):
        start = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss = torch.mean((model(xt)[:, 0] - yt) ** 2)
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - start)
    return {"epoch_s": statistics.median(times[1:]), "first_s": times[0], "epochs_timed": epochs,
            "threads": torch.get_num_threads()}


def peak_flops(repeats: int = 5) -> dict[str, float]:
    """Achieved float32 FLOP/s of a ``MATMUL`` x ``MATMUL`` matmul in JAX (and PyTorch when present)."""
    out = {"size": MATMUL}
    a = jnp.ones((MATMUL, MATMUL), jnp.float32)
    mm = jax.jit(jnp.matmul)
    jax.block_until_ready(mm(a, a))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(mm(a, a))
        times.append(time.perf_counter() - start)
    out["jax_flops"] = 2 * MATMUL**3 / statistics.median(times)
    try:
        import torch
    except ImportError:
        return out
    t = torch.ones((MATMUL, MATMUL))
    t @ t
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        t @ t
        times.append(time.perf_counter() - start)
    out["torch_flops"] = 2 * MATMUL**3 / statistics.median(times)
    return out


def run(mode: str) -> dict:
    before = load_average()
    cfg = protein.config("full")
    split = protein.load_split(cfg)
    x, y = split.inputs("train"), split.targets("train")
    specs = list(protein.architectures(cfg).values())
    seeds = list(range(cfg.seeds))
    epochs = EPOCHS[mode]
    flops_per_epoch = {spec.label: protein.training_flops(cfg, len(y)) / cfg.epochs / cfg.seeds / len(specs)
                       for spec in specs}  # one model, one epoch
    out: dict[str, Any] = {"rows": len(y), "features": x.shape[1], "seeds": cfg.seeds, "networks": len(specs),
                           "sweep_epochs": SWEEP_EPOCHS, "flops_per_model_epoch": flops_per_epoch[specs[0].label],
                           "peak": peak_flops()}
    print(f"  peak float32 matmul: {out['peak']['jax_flops'] / 1e9:.0f} GFLOP/s (JAX)", flush=True)

    vm = _jax_epoch(lambda: fit_variants(specs, x, y, seeds=seeds, epochs=epochs))
    out["vmapped"] = vm | {"runs_per_program": len(specs) * len(seeds)}
    print(f"  (a) vmapped 40 runs: {vm['epoch_s']:.3f} s/epoch, compile {vm['compile_s']:.1f}s", flush=True)

    per_arch, per_seed, torch_rows = {}, {}, {}
    for spec in specs:
        per_arch[spec.label] = _jax_epoch(lambda: fit(spec, x, y, seeds=seeds, epochs=epochs))
        per_seed[spec.label] = _jax_epoch(lambda: fit(spec, x, y, seeds=[0], epochs=epochs))
        print(f"  {spec.label}: fit x10 seeds {per_arch[spec.label]['epoch_s']:.3f} s/epoch, "
              f"one seed {per_seed[spec.label]['epoch_s']:.4f} s/epoch", flush=True)
    out["per_architecture"], out["jax_per_seed"] = per_arch, per_seed
    try:
        import torch  # noqa: F401
    except ImportError:
        out["torch_per_seed"] = None
        print("  PyTorch is not installed: skipping the PyTorch baseline (make bench installs it)", flush=True)
    else:
        for spec in specs:
            torch_rows[spec.label] = _torch_epoch(spec, x, y, TORCH_EPOCHS[mode])
            print(f"  {spec.label}: torch one seed {torch_rows[spec.label]['epoch_s']:.4f} s/epoch", flush=True)
        out["torch_per_seed"] = torch_rows

    n_runs = len(specs) * len(seeds)
    sweep = {"vmapped": vm["fixed_s"] + SWEEP_EPOCHS * vm["epoch_s"],
             "per_architecture": sum(r["fixed_s"] + SWEEP_EPOCHS * r["epoch_s"] for r in per_arch.values()),
             "jax_per_seed": sum(len(seeds) * (r["fixed_s"] + SWEEP_EPOCHS * r["epoch_s"]) for r in per_seed.values())}
    if torch_rows:
        sweep["torch_per_seed"] = sum(len(seeds) * SWEEP_EPOCHS * r["epoch_s"] for r in torch_rows.values())
    sweep_epoch = {"vmapped": vm["epoch_s"],
                   "per_architecture": sum(r["epoch_s"] for r in per_arch.values()),
                   "jax_per_seed": len(seeds) * sum(r["epoch_s"] for r in per_seed.values())}
    if torch_rows:
        sweep_epoch["torch_per_seed"] = len(seeds) * sum(r["epoch_s"] for r in torch_rows.values())
    total_flops = flops_per_epoch[specs[0].label] * n_runs
    out["sweep_seconds"] = sweep
    out["sweep_epoch_seconds"] = sweep_epoch
    out["achieved_flops"] = {k: total_flops / v for k, v in sweep_epoch.items()}
    if torch_rows:
        out["speedup_vs_torch"] = {k: sweep_epoch["torch_per_seed"] / v for k, v in sweep_epoch.items()}

    spec = specs[0]
    out["scaling_seeds"] = []
    for s in SCALING_SEEDS[mode]:
        r = _jax_epoch(lambda: fit(spec, x, y, seeds=list(range(s)), epochs=epochs))
        out["scaling_seeds"].append({"seeds": s, **r})
        print(f"  scaling: {s} seeds {r['epoch_s']:.4f} s/epoch", flush=True)
    out["scaling_rows"] = []
    for n in SCALING_ROWS[mode]:
        r = _jax_epoch(lambda: fit(spec, x[:n], y[:n], seeds=[0], epochs=epochs))
        out["scaling_rows"].append({"rows": n, **r})
        print(f"  scaling: {n} rows {r['epoch_s']:.4f} s/epoch", flush=True)
    out["scaling_arch"] = spec.label
    out["load_before"], out["load_after"] = before, load_average()
    return out
