"""Run the benchmarks and write one JSON file of results with its provenance.

    python benchmarks/run.py [--quick] [--only kernels,training,book] [--out benchmarks/results]

Writes ``<out>/<device>-<mode>.json`` (``cpu-quick.json``, ``gpu-h100-full.json``, ...), where
``device`` is the accelerator JAX uses, so results of several machines sit side by side; with
``--only`` the other sections of an existing file are kept. The performance appendix of the book
plots every file there. Needs ``COMPANION_DATA_DIR`` (or a download) for the protein data.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import ROOT, device_tag, load_average, provenance  # noqa: E402

SECTIONS = ("kernels", "training", "book", "large_regression")


def _jsonable(value: object) -> object:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if hasattr(value, "item"):
        return value.item()
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes: a few minutes on 2 CPU cores")
    parser.add_argument("--only", default=",".join(SECTIONS), help=f"comma-separated subset of {', '.join(SECTIONS)}")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--book-build", type=Path, default=ROOT / "_build",
                        help="build folder whose jupyter-cache holds the chapters' execution times")
    parser.add_argument("--execute-chapters", action="store_true",
                        help="execute the chapters here instead of reading the build's records")
    args = parser.parse_args(argv)
    sections = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown section(s) {', '.join(sorted(unknown))}; choose from {', '.join(SECTIONS)}")
    os.environ.setdefault("COMPANION_PROGRESS", "0")
    mode = "quick" if args.quick else "full"
    path = args.out / f"{device_tag()}-{mode}.json"
    results = json.loads(path.read_text()) if path.exists() else {}
    results["provenance"] = provenance(mode)
    results.setdefault("benchmarks", {})
    for section in sections:
        print(f"{section} ({mode}); load average {load_average()}", flush=True)
        start = time.perf_counter()
        if section == "kernels":
            import bench_kernels
            result = bench_kernels.run(mode)
        elif section == "training":
            import bench_training
            result = bench_training.run(mode)
        elif section == "large_regression":
            result = __import__("bench_large_regression").run(mode)
        else:
            import bench_book
            result = bench_book.run(mode, args.book_build, args.execute_chapters)
        result["benchmark_seconds"] = time.perf_counter() - start
        result["date"] = results["provenance"]["date"]
        result["git_commit"] = results["provenance"]["git_commit"]
        results["benchmarks"][section] = _jsonable(result)
    args.out.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=1, sort_keys=True) + "\n")
    print(f"wrote {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
