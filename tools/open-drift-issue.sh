#!/usr/bin/env bash
# Report a failed drift check in an issue:  tools/open-drift-issue.sh REPORT.md [REPORT.md ...]
#
# One open issue labelled `drift` collects the failures: when it exists, the new reports are added
# to it as a comment, so that a broken week does not open one issue per run. Needs the GitHub CLI
# (`gh`) with a token (GH_TOKEN) and the repository (GH_REPO, or run it inside a clone); RUN_URL,
# when set, links the workflow run.
set -euo pipefail
if [ $# -eq 0 ]; then
  echo "usage: $0 REPORT.md [REPORT.md ...]" >&2
  exit 2
fi
label=drift
title="Drift check: chapters fail on the newest JAX, flax or optax"
full="$(mktemp)"
body="$(mktemp)"
trap 'rm -f "$full" "$body"' EXIT
{
  echo "The drift check installs the book as the chapters' Colab cell does, on the newest jax, flax"
  echo "and optax that pyproject.toml admits, and executes every chapter in the ci profile."
  if [ -n "${RUN_URL:-}" ]; then
    echo "Workflow run: $RUN_URL"
  fi
  for report in "$@"; do
    echo
    cat "$report"
  done
} > "$full"
head -c 60000 "$full" > "$body"  # GitHub refuses issue bodies over 65,536 characters

gh label create "$label" --force --color D93F0B \
  --description "The book broke on newer releases of its dependencies" > /dev/null
number="$(gh issue list --label "$label" --state open --limit 1 --json number --jq '.[0].number // empty')"
if [ -n "$number" ]; then
  gh issue comment "$number" --body-file "$body"
else
  gh issue create --title "$title" --label "$label" --body-file "$body"
fi
