#!/usr/bin/env bash
# Everything that needs a GPU, in one prepared run: the benchmarks at full size and the `full`
# profile of the heavy experiments, with the device recorded in every result's provenance.
#
#   tools/gpu-check.sh            (on a machine with an NVIDIA GPU, from any folder)
#
# 1. `make gpu-env`: the CUDA build of the pinned JAX in .venv; then checks that JAX sees the GPU.
# 2. `make bench`: benchmarks/results/gpu-<name>-full.json (kernels against neural-tangents at every
#    size that fits, the training sweep against PyTorch, the chapters' times); the file's provenance
#    names the GPU. The Performance page shows it beside the CPU results.
# 3. `tools/run-full.sh`: every experiment of tools/full-experiments.txt with the paper's protocol;
#    their artefacts (with their provenance) change in place and are copied to _build/full-results/;
#    then the protein chapter's redrawn-split protocol (`run protein --profile full --redrawn`).
# 4. Prints the two goals of the Performance page against what was measured: the whole Table 1 sweep (40 runs x
#    2,500 epochs) in at most 30 s, and the full-size (n = 40,132) NTK regression in at most 30 s.
#
# Then commit benchmarks/results/gpu-*.json and the changed artefacts (git status lists them).
# Environment: BENCH_ARGS (e.g. "--only kernels") is passed to `make bench`; SKIP_FULL=1 skips step 3.
set -euo pipefail
cd "$(dirname "$0")/.."
export XLA_PYTHON_CLIENT_PREALLOCATE="${XLA_PYTHON_CLIENT_PREALLOCATE:-false}"

if ! command -v nvidia-smi > /dev/null; then
  echo "error: no nvidia-smi on this machine: this script is for a machine with an NVIDIA GPU." >&2
  exit 2
fi
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
make gpu-env
if ! .venv/bin/python -c 'import jax, sys; sys.exit(0 if jax.devices()[0].platform == "gpu" else 1)'; then
  echo "error: JAX does not see the GPU after 'make gpu-env'; see 'make doctor'." >&2
  exit 2
fi

start=$SECONDS
make bench BENCH_ARGS="${BENCH_ARGS:-}"
echo "benchmarks: $((SECONDS - start)) s"

if [ "${SKIP_FULL:-0}" != 1 ]; then
  tools/run-full.sh
  # the protein chapter's second protocol: every seed redraws the 90/10 split
  .venv/bin/python -m companion run protein --profile full --redrawn
fi

.venv/bin/python - <<'PY'
import json
from pathlib import Path

for path in sorted(Path("benchmarks/results").glob("gpu-*-full.json")):
    result = json.loads(path.read_text())
    device = result["provenance"]["machine"]["device"]
    print(f"{path}: {device['count']} x {device['name']}")
    training = result["benchmarks"].get("training", {})
    ways = training.get("ways", {})
    if ways:
        best = min(ways, key=lambda way: ways[way]["sweep_s"])
        print(f"  Table 1 sweep (40 runs x 2,500 epochs, extrapolated): {ways[best]['sweep_s']:.0f} s, {best} (goal: <= 30 s)")
    for row in result["benchmarks"].get("kernels", {}).get("matrix", []):
        if row["impl"] == "companion" and row["n"] == 4000:
            print(f"  kernel n = 4,000 {row['arch']} {row['dtype']}: {row['speedup_median']:.2f}x neural-tangents")
run = Path("_build/full-results/RUN.md")
if run.exists():
    print("full profile (protein-ntk is the n = 40,132 NTK regression of four networks; goal: <= 30 s each):")
    print("\n".join(line for line in run.read_text().splitlines() if line.startswith("|")))
PY
echo "Now commit benchmarks/results/gpu-*.json and the changed artefacts:"
git status --short
