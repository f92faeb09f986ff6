#!/usr/bin/env bash
# Recompute the committed results of the heavy chapters with the paper's protocol (profile `full`).
#
#   tools/run-full.sh                  every experiment listed in tools/full-experiments.txt
#   tools/run-full.sh NAME [NAME ...]  only these (or EXPERIMENTS="NAME ..." in the environment)
#
# Each experiment runs as `python -m companion run NAME --profile full` in a process of its own,
# one after the other, so that each has the whole GPU and gives its memory back when it ends
# (XLA_PYTHON_CLIENT_PREALLOCATE=false also stops JAX from reserving 75% of it up front). An
# experiment writes its small result files, with their provenance, into the repository; this script
# then copies every file the runs added or changed to _build/full-results/ (keeping their paths)
# beside RUN.md, which records the commit, the machine, the package versions and each run's time.
# It refuses to run the `full` profile without a GPU unless COMPANION_FULL_ON_CPU=1.
set -euo pipefail
cd "$(dirname "$0")/.."

python="${PYTHON:-.venv/bin/python}"
list=tools/full-experiments.txt
out=_build/full-results
export XLA_PYTHON_CLIENT_PREALLOCATE="${XLA_PYTHON_CLIENT_PREALLOCATE:-false}"

if [ $# -gt 0 ]; then
  names=("$@")
elif [ -n "${EXPERIMENTS:-}" ]; then
  read -r -a names <<< "$EXPERIMENTS"
else
  mapfile -t names < <(sed -e 's/#.*//' -e 's/[[:space:]]//g' "$list" | grep -v '^$' || true)
fi
if [ "${#names[@]}" -eq 0 ]; then
  echo "No experiment is listed in $list: nothing to run."
  exit 0
fi

if [ ! -x "$python" ]; then
  echo "error: $python not found; run 'make env' first (or set PYTHON=/path/to/python)." >&2
  exit 2
fi
if ! help="$("$python" -m companion run --help 2>&1)"; then
  echo "error: '$python -m companion run' is not available, so the experiments cannot be run:" >&2
  echo "$help" | tail -n 3 >&2
  echo "The command belongs in src/companion/cli.py: 'run NAME --profile full' runs one experiment." >&2
  exit 2
fi
if [ "${COMPANION_FULL_ON_CPU:-0}" != 1 ] && ! "$python" -c '
import sys, jax
sys.exit(0 if any(d.platform in ("gpu", "cuda", "rocm") for d in jax.devices()) else 1)
' 2>/dev/null; then
  echo "error: JAX sees no GPU, and the full profile is meant for one. Install the CUDA build of" >&2
  echo "the pinned JAX ('make gpu-env'), or set COMPANION_FULL_ON_CPU=1 to run on the CPU anyway." >&2
  exit 2
fi

rm -rf "$out"
mkdir -p "$out"
summary="$out/RUN.md"
{
  echo "# Results of the \`full\` profile"
  echo
  echo "- commit: $(git rev-parse HEAD 2>/dev/null || echo unknown)"
  echo "- started: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "- XLA_PYTHON_CLIENT_PREALLOCATE=$XLA_PYTHON_CLIENT_PREALLOCATE"
  if command -v nvidia-smi > /dev/null; then
    echo "- GPU: $(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | paste -sd ';' -)"
  fi
  echo
  echo '```'
  "$python" -m companion doctor || true
  echo '```'
  echo
  echo "| experiment | status | seconds |"
  echo "|---|---|---|"
} > "$summary"

failed=()
for name in "${names[@]}"; do
  echo "=== $name (profile full)"
  start=$SECONDS
  if "$python" -m companion run "$name" --profile full; then
    status=ok
  else
    status="failed (exit $?)"
    failed+=("$name")
  fi
  echo "| $name | $status | $((SECONDS - start)) |" >> "$summary"
done

# Every file the runs added or changed (ignored paths such as _build/ are not results).
changed=0
while IFS= read -r -d '' entry; do
  path="${entry:3}"
  [ -f "$path" ] || continue
  mkdir -p "$out/$(dirname "$path")"
  cp "$path" "$out/$path"
  changed=$((changed + 1))
done < <(git status --porcelain -z --untracked-files=all)
{
  echo
  echo "$changed result file(s) added or changed; finished $(date -u +%Y-%m-%dT%H:%M:%SZ)."
} >> "$summary"
cat "$summary"

if [ "${#failed[@]}" -gt 0 ]; then
  echo "error: ${#failed[@]} experiment(s) failed: ${failed[*]}" >&2
  exit 1
fi
