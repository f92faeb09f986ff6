"""Training: the protein Table-1 sweep (4 networks x 10 seeds, full batch on 40,132 rows).

Ways to run the same sweep, timed in one process so that their ratios are fair:

- ``vmapped``: :func:`companion.train.fit_variants` with all 40 runs in one vmap
  (``runs_per_program=40``), and ``grouped``: the same program with its default grouping on this
  device (``runs_per_program=None``);
- ``per_architecture``: :func:`companion.train.fit` with the 10 seeds vmapped, one call per network,
  as :mod:`companion.experiments.protein` trains them;
- ``jax_per_seed``: :func:`companion.train.fit` with one seed per call (x 10 seeds);
- ``torch_per_seed``: a plain PyTorch loop of the same model (Linear-[LN]-ReLU twice, Linear), Adam
  with learning rate 1e-3 and full-batch MSE, one seed after another;
- ``runs_per_program``: ``fit_variants`` with 1, 2, 4, ..., 40 runs per vmapped group.

**Interleaved repeats.** Every program runs in its own thread, but only one runs at a time: a token
passes from program to program after each chunk of ``CHUNK_EPOCHS`` epochs (the chunks are the
training's own progress reports), so repeat ``r`` times one chunk of every program, one after
another. The first chunk compiles and is not timed, nor is the last (programs that finished check
their results meanwhile); each chunk between is one repeat. Ratios (each
way's sweep time over PyTorch's) are computed per repeat and reported as median, min and max, so a
burst of load on a shared machine shows up as spread instead of moving one way's median.

**Same-shape efficiency.** Each way's achieved FLOP/s (6 multiply-adds per weight, row and epoch,
:func:`companion.experiments.protein.training_flops`) is compared with the float32 matmul rate of the
training's own hidden layer, 40,132 x 128 by 128 x 128, in the same framework (and batched,
``(runs, 40,132, 128) x (runs, 128, 128)``, for the vmapped programs), and with a square 4,096
matmul, the machine's peak.
"""

from __future__ import annotations

import contextlib
import statistics
import threading
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

import companion.train as train_module
from common import load_average
from companion._train_checks import _check_runs_per_program
from companion.experiments import protein
from companion.train import fit, fit_variants

SWEEP_EPOCHS = 2500
REPEATS = {"quick": 3, "full": 5}
CHUNK_EPOCHS = {"quick": 2, "full": 5}
RUNS_PER_PROGRAM = [1, 2, 4, 8, 10, 20, 40]
MATMUL = 4096
WAIT_S = 3600  # a program that waits longer for its turn has lost its partner: fail instead of hanging


class _Turns:
    """Lets one registered program run at a time, in a fixed order, one chunk per turn."""

    def __init__(self, names: list[str], chunks: int) -> None:
        self.order, self.chunks, self.turn = list(names), chunks, 0
        self.cond = threading.Condition()
        self.times: dict[str, list[float]] = {n: [] for n in names}  # seconds per epoch, per chunk
        self.failed: BaseException | None = None

    def wait(self, name: str) -> float:
        with self.cond:
            if not self.cond.wait_for(lambda: self.failed or self.order[self.turn] == name, WAIT_S):
                raise TimeoutError(f"{name} waited {WAIT_S} s for its turn")
            if self.failed:
                raise RuntimeError("another program of the benchmark failed") from self.failed
        return time.perf_counter()

    def done(self, name: str, start: float, epochs: int) -> float | None:
        """Record a chunk; pass the turn on; wait for the next turn unless this was the last chunk."""
        self.times[name].append((time.perf_counter() - start) / epochs)
        with self.cond:
            if len(self.times[name]) == self.chunks:
                self.order.remove(name)  # the next program in line now sits at the same index
                self.turn = self.turn % len(self.order) if self.order else 0
            else:
                self.turn = (self.turn + 1) % len(self.order)
            self.cond.notify_all()
        return self.wait(name) if len(self.times[name]) < self.chunks else None

    def fail(self, error: BaseException) -> None:
        with self.cond:
            self.failed = error
            self.cond.notify_all()


class _Clock:
    """Stands in for :func:`companion.progress.bar` in one program's thread."""

    def __init__(self, turns: _Turns, name: str) -> None:
        self.turns, self.name = turns, name

    def __enter__(self) -> "_Clock":
        self.start = self.turns.wait(self.name)
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def update(self, n: int) -> None:
        self.start = self.turns.done(self.name, self.start, n)


@contextlib.contextmanager
def _one_chunk_per_turn(turns: _Turns, clocks: dict[int, _Clock]):
    original = train_module.progress.bar, train_module.PROGRESS_STEPS
    train_module.progress.bar = lambda total, desc, **kw: clocks[threading.get_ident()]
    train_module.PROGRESS_STEPS = turns.chunks
    try:
        yield
    finally:
        train_module.progress.bar, train_module.PROGRESS_STEPS = original


def interleaved(programs: dict[str, Callable[[_Clock], Any]], chunks: int) -> dict[str, list[float]]:
    """Run every program in its own thread, one chunk at a time in turn; seconds per epoch of each
    chunk but the first (compilation) and the last (it overlaps with the checks the programs that
    finished before run after training), per program. A program must report ``chunks`` chunks."""
    turns = _Turns(list(programs), chunks)
    clocks: dict[int, _Clock] = {}

    def main(name: str, program: Callable[[_Clock], Any]) -> None:
        clocks[threading.get_ident()] = clock = _Clock(turns, name)
        try:
            program(clock)
        except BaseException as error:  # noqa: BLE001 - passed on to the other threads and re-raised
            turns.fail(error)

    with _one_chunk_per_turn(turns, clocks):
        threads = [threading.Thread(target=main, args=item) for item in programs.items()]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    if turns.failed:
        raise turns.failed
    return {name: times[1:-1] for name, times in turns.times.items()}


def _torch_program(spec, x: np.ndarray, y: np.ndarray, epochs: int, chunks: int, seed: int = 0):
    import torch

    def program(clock: _Clock) -> None:
        torch.manual_seed(seed)
        layers, n_in = [], x.shape[1]
        for h in (1, 2):
            layers.append(torch.nn.Linear(n_in, spec.width))
            if h in spec.layernorm:
                layers.append(torch.nn.LayerNorm(spec.width, elementwise_affine=False))
            layers.append(torch.nn.ReLU())
            n_in = spec.width
        model = torch.nn.Sequential(*layers, torch.nn.Linear(spec.width, 1))
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        xt, yt = torch.from_numpy(x.astype(np.float32)), torch.from_numpy(y.astype(np.float32))
        with clock:
            for _ in range(chunks):
                for _ in range(epochs):
                    opt.zero_grad(set_to_none=True)
                    loss = torch.mean((model(xt)[:, 0] - yt) ** 2)
                    loss.backward()
                    opt.step()
                clock.update(epochs)

    return program


def _median_time(call: Callable[[], Any], repeats: int) -> float:
    call()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def matmul_rates(rows: int, width: int, batches: list[int], repeats: int = 5) -> dict[str, Any]:
    """float32 FLOP/s of the training's shapes, ``rows x width`` by ``width x width`` (JAX, jit, and
    PyTorch) and batched ``(runs, rows, width) x (runs, width, width)`` (JAX), and of a square
    ``MATMUL`` matmul, the peak."""
    mm = jax.jit(jnp.matmul)
    rng = np.random.default_rng(0)

    def jax_rate(a: np.ndarray, b: np.ndarray) -> float:
        a, b = jnp.asarray(a), jnp.asarray(b)
        return 2 * a.size * b.shape[-1] / _median_time(lambda: jax.block_until_ready(mm(a, b)), repeats)

    a = rng.standard_normal((rows, width), dtype=np.float32)
    w = rng.standard_normal((width, width), dtype=np.float32)
    square = np.ones((MATMUL, MATMUL), np.float32)
    out: dict[str, Any] = {"rows": rows, "width": width, "peak_size": MATMUL,
                           "jax_same_shape": jax_rate(a, w), "jax_peak": jax_rate(square, square),
                           "jax_batched": {str(r): jax_rate(np.broadcast_to(a, (r, rows, width)).copy(),
                                                            np.broadcast_to(w, (r, width, width)).copy())
                                           for r in batches if r > 1}}
    out["jax_batched"]["1"] = out["jax_same_shape"]
    try:
        import torch
    except ImportError:
        return out
    ta, tw, ts = torch.from_numpy(a), torch.from_numpy(w), torch.from_numpy(square)
    out["torch_same_shape"] = 2 * a.size * width / _median_time(lambda: ta @ tw, repeats)
    out["torch_peak"] = 2 * MATMUL**3 / _median_time(lambda: ts @ ts, repeats)
    return out


def _spread(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def run(mode: str) -> dict:
    before = load_average()
    cfg = protein.config("full")
    split = protein.load_split(cfg)
    x, y = split.inputs("train"), split.targets("train")
    specs = list(protein.architectures(cfg).values())
    seeds = list(range(cfg.seeds))
    n_runs = len(specs) * len(seeds)
    repeats, chunk = REPEATS[mode], CHUNK_EPOCHS[mode]
    chunks = repeats + 2  # the first compiles, the last overlaps with finished programs' checks
    epochs = chunk * chunks
    grouped = _check_runs_per_program(None, n_runs, jax.default_backend())
    flops_model_epoch = protein.training_flops(cfg, len(y)) / cfg.epochs / n_runs
    out: dict[str, Any] = {"rows": len(y), "features": x.shape[1], "seeds": len(seeds), "networks": len(specs),
                           "runs": n_runs, "sweep_epochs": SWEEP_EPOCHS, "repeats": repeats,
                           "chunk_epochs": chunk, "grouped_runs_per_program": grouped,
                           "flops_per_model_epoch": flops_model_epoch}

    out["matmul"] = rates = matmul_rates(len(y), specs[0].width, sorted({len(seeds), grouped, n_runs}))
    print(f"  float32 matmul {len(y):,} x {specs[0].width} by {specs[0].width} x {specs[0].width}: "
          f"{rates['jax_same_shape'] / 1e9:.0f} GFLOP/s (JAX), square {MATMUL}: {rates['jax_peak'] / 1e9:.0f}",
          flush=True)

    programs: dict[str, Callable[[_Clock], Any]] = {}
    for g in RUNS_PER_PROGRAM:
        programs[f"rpp {g}"] = lambda clock, g=g: fit_variants(specs, x, y, seeds=seeds, epochs=epochs,
                                                               runs_per_program=g)
    if grouped not in RUNS_PER_PROGRAM:
        programs[f"rpp {grouped}"] = lambda clock: fit_variants(specs, x, y, seeds=seeds, epochs=epochs)
    for spec in specs:
        programs[f"arch {spec.label}"] = lambda clock, spec=spec: fit(spec, x, y, seeds=seeds, epochs=epochs)
        programs[f"seed {spec.label}"] = lambda clock, spec=spec: fit(spec, x, y, seeds=[0], epochs=epochs)
    try:
        import torch
    except ImportError:
        print("  PyTorch is not installed: skipping the PyTorch baseline (make bench installs it)", flush=True)
        torch = None
    else:
        out["torch_threads"] = torch.get_num_threads()
        for spec in specs:
            programs[f"torch {spec.label}"] = _torch_program(spec, x, y, chunk, chunks)
    print(f"  {len(programs)} programs, {repeats} interleaved repeats of {chunk} epochs each ...", flush=True)
    times = interleaved(programs, chunks)  # seconds per epoch, per repeat

    def sweep(names: list[str], runs_each: int) -> list[float]:
        """Seconds per epoch of the whole sweep, per repeat."""
        return [sum(times[n][r] for n in names) * runs_each for r in range(repeats)]

    def per_network(way: str) -> list[str]:
        return [f"{way} {spec.label}" for spec in specs]

    ways = {"vmapped": sweep([f"rpp {n_runs}"], 1), "grouped": sweep([f"rpp {grouped}"], 1),
            "per_architecture": sweep(per_network("arch"), 1), "jax_per_seed": sweep(per_network("seed"), len(seeds))}
    if torch is not None:
        ways["torch_per_seed"] = sweep(per_network("torch"), len(seeds))
    same_shape = {"vmapped": rates["jax_batched"][str(n_runs)], "grouped": rates["jax_batched"][str(grouped)],
                  "per_architecture": rates["jax_batched"][str(len(seeds))], "jax_per_seed": rates["jax_same_shape"],
                  "torch_per_seed": rates.get("torch_same_shape")}
    peak = {k: rates["torch_peak" if k.startswith("torch") else "jax_peak"] for k in ways}
    out["ways"] = {}
    for way, per_repeat in ways.items():
        achieved = flops_model_epoch * n_runs / statistics.median(per_repeat)
        row = {"sweep_epoch_s": per_repeat, **{f"epoch_{k}": v for k, v in _spread(per_repeat).items()},
               "sweep_s": SWEEP_EPOCHS * statistics.median(per_repeat), "achieved_flops": achieved,
               "same_shape_flops": same_shape[way], "of_same_shape": achieved / same_shape[way],
               "peak_flops": peak[way], "of_peak": achieved / peak[way]}
        if "torch_per_seed" in ways:
            ratio = [t / w for t, w in zip(ways["torch_per_seed"], per_repeat)]
            row |= {"vs_torch": ratio, **{f"vs_torch_{k}": v for k, v in _spread(ratio).items()}}
        out["ways"][way] = row
        print(f"  {way}: {row['epoch_median']:.3f} s per sweep epoch, {row['of_same_shape']:.0%} of the "
              f"same-shape matmul rate" + (f", {row['vs_torch_median']:.2f}x PyTorch" if "vs_torch" in row else ""),
              flush=True)
    out["runs_per_program"] = []
    for g in sorted({*RUNS_PER_PROGRAM, grouped}):
        per_run = [t / n_runs for t in times[f"rpp {g}"]]
        out["runs_per_program"].append({"runs_per_program": g, "run_epoch_s": per_run,
                                        **{f"run_epoch_{k}": v for k, v in _spread(per_run).items()}})
        print(f"  {g} runs per program: {1e3 * statistics.median(per_run):.1f} ms per run-epoch", flush=True)
    out["load_before"], out["load_after"] = before, load_average()
    return out
