"""Full-size NTK regression: :func:`companion.kernels.large.large_ntk_regression` on CASP rows.

For the protein chapter's network without LayerNorm, the regression on the first ``n`` training
rows (predicting the 1,139 OOD proteins) runs in a fresh process per ``n``, so that its peak
resident memory (``ru_maxrss``) is its own. Recorded per ``n``: the seconds of the blocked kernel
evaluation, the in-place Cholesky factorisation and the prediction, and the peak memory. A fit
``t = c n^3`` of the factorisation time and ``m = 8 n^2`` bytes extrapolate to all 40,132 rows;
the measured full-size run (``artefacts/protein/ntk-full``, when present) is reported next to it.
"""

from __future__ import annotations

import json
import subprocess
import sys

from common import ROOT, load_average

SIZES = {"quick": [1000, 2000], "full": [5000, 10000, 20000]}
FULL_N = 40_132

_CHILD = """
import json, time
from companion.data import casp
from companion.experiments import protein
from companion.kernels import large
split = casp.split(casp.load(), seed=0)
spec = protein.architectures(protein.config("full"))["no LN"]
n = {n}
result = large.large_ntk_regression(split.inputs("train")[:n], split.targets("train")[:n],
                                    {{"ood": split.inputs("ood")}}, spec, relative_jitter=1e-8)
print(json.dumps(result.seconds | {{"peak_memory_gb": large.peak_memory_bytes() / 1e9}}))
"""


def _one(n: int) -> dict:
    done = subprocess.run([sys.executable, "-c", _CHILD.format(n=n)], capture_output=True, text=True,
                          cwd=ROOT, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def _measured_full_run() -> dict:
    runs = {}
    for path in sorted((ROOT / "artefacts" / "protein" / "ntk-full" / "runs").glob("*/column.json")):
        content = json.loads(path.read_text())
        runs[content["method"]] = {"n_train": content["n_train"], "seconds": content["seconds"],
                                   "peak_memory_gb": content["peak_memory_gb"],
                                   "machine": content["provenance"]["machine"],
                                   "devices": content["provenance"]["devices"]}
    return runs


def run(mode: str) -> dict:
    before = load_average()
    rows = {n: _one(n) for n in SIZES[mode]}
    largest = max(rows)
    factor_per_n3 = rows[largest]["factor"] / largest**3
    kernel_per_n2 = rows[largest]["kernel"] / largest**2
    return {
        "load_before": before, "load_after": load_average(), "sizes": rows,
        "extrapolated_full": {
            "n": FULL_N,
            "factor_seconds": factor_per_n3 * FULL_N**3,
            "kernel_seconds": kernel_per_n2 * FULL_N**2,
            "gram_gb": 8 * FULL_N**2 / 1e9,
        },
        "measured_full": _measured_full_run(),
    }


if __name__ == "__main__":
    print(json.dumps(run(sys.argv[1] if len(sys.argv) > 1 else "quick"), indent=1))
