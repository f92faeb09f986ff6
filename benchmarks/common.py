"""Shared helpers of the benchmarks: provenance, repeated timing, peak memory, load average.

Every number a benchmark records is the median of several timed repetitions after a warm-up
(compilation) call, so that one burst of another process on a shared machine does not decide a
result; the load average before and after each benchmark is stored beside its numbers.
"""

from __future__ import annotations

import datetime
import os
import platform
import statistics
import subprocess
import threading
import time
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("jax", "jaxlib", "flax", "optax", "neural-tangents", "numpy", "torch")


def load_average() -> list[float]:
    return [round(v, 2) for v in os.getloadavg()]


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _memory_gib() -> float | None:
    try:
        return round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        return None


def _git(*args: str) -> str:
    try:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def device() -> dict[str, Any]:
    """The accelerator JAX uses (``cpu`` or the GPU's name) and its count."""
    import jax

    devices = jax.devices()
    kind = devices[0].platform
    return {"platform": kind, "name": devices[0].device_kind, "count": len(devices)}


def device_tag() -> str:
    """Short name of the machine's accelerator for result file names: ``cpu`` or e.g. ``gpu-h100``."""
    dev = device()
    if dev["platform"] == "cpu":
        return "cpu"
    name = "".join(c if c.isalnum() else "-" for c in dev["name"].lower()).strip("-")
    return f"{dev['platform']}-{name.split('-')[-1] if name else 'unknown'}"


def provenance(mode: str) -> dict[str, Any]:
    versions = {}
    for package in PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    versions["python"] = platform.python_version()
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "git_commit": _git("rev-parse", "HEAD"),
        "git_dirty": bool(_git("status", "--porcelain", "--untracked-files=no")),
        "mode": mode,
        "machine": {
            "cpu": _cpu_model(),
            "cores": os.cpu_count(),
            "memory_gib": _memory_gib(),
            "system": f"{platform.system()} {platform.release()}",
            "device": device(),
        },
        "versions": versions,
        "shared_machine_note": "timings are medians of repeats on a machine shared with other work; "
                               "compare ratios measured in the same run",
    }


class PeakRSS:
    """Peak resident memory above the level at entry, sampled every few milliseconds (bytes)."""

    def __init__(self, interval: float = 0.002) -> None:
        self.interval = interval
        self.peak = 0
        self._stop = threading.Event()

    @staticmethod
    def _rss() -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._rss() - self.start)
            time.sleep(self.interval)

    def __enter__(self) -> "PeakRSS":
        self.start = self._rss()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._rss() - self.start)


def timed(fn: Callable[[], Any], repeats: int) -> dict[str, Any]:
    """First call (compilation included), then ``repeats`` timed calls; ``fn`` must block until done.

    Returns ``first_s``, ``run_s`` (median of the repeats), ``best_s`` (the fastest: the least disturbed by other
    processes), ``runs_s`` (all of them),
    ``compile_s`` (first minus median, at least 0) and ``peak_mib`` (peak resident memory of the
    timed calls above the level before them, on CPU: what one evaluation needs), plus ``result`` (the first call's return value).
    """
    start = time.perf_counter()
    result = fn()
    first = time.perf_counter() - start
    runs = []
    with PeakRSS() as mem:  # after compilation: the memory one evaluation needs
        for _ in range(repeats):
            start = time.perf_counter()
            fn()
            runs.append(time.perf_counter() - start)
    median = statistics.median(runs) if runs else first
    return {
        "first_s": first, "run_s": median, "best_s": min(runs) if runs else first, "runs_s": runs, "compile_s": max(0.0, first - median),
        "peak_mib": mem.peak / 2**20, "result": result,
    }
