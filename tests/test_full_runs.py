"""tools/run-full.sh: the one entry point of the GPU workflow, tried with a stand-in Python.

The stand-in records how it is called and writes a result file per experiment, so these tests check
the script's contract (experiments from tools/full-experiments.txt, one process each, in order,
with the `full` profile and no memory preallocation; refreshed files and RUN.md collected in
_build/full-results) without JAX or a GPU. They run in a scratch git repository holding a copy of
the script, so nothing is written into this checkout.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import ROOT

STAND_IN = r"""#!/usr/bin/env bash
echo "$*" >> "$STUB_LOG"
case "$*" in
  "-m companion run --help")
    if [ "${STUB_HAS_RUN:-1}" = 1 ]; then exit 0; fi
    echo "python -m companion: error: argument command: invalid choice: 'run'" >&2; exit 2 ;;
  "-c "*) exit "${STUB_NO_GPU:-0}" ;;
  "-m companion doctor") echo "companion doctor: all good" ;;
  "-m companion run "*)
    if [ "$4" = broken ]; then exit 3; fi
    mkdir -p results
    echo "$4 $5 $6 preallocate=$XLA_PYTHON_CLIENT_PREALLOCATE" > "results/$4.json" ;;
  *) echo "unexpected call: $*" >&2; exit 99 ;;
esac
"""


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    (tmp_path / "tools").mkdir()
    shutil.copy2(ROOT / "tools" / "run-full.sh", tmp_path / "tools" / "run-full.sh")
    # The repository's header comments, without its experiments: each test lists its own.
    header = [line for line in (ROOT / "tools" / "full-experiments.txt").read_text().splitlines() if line.startswith("#")]
    (tmp_path / "tools" / "full-experiments.txt").write_text("\n".join(header) + "\n")
    (tmp_path / ".gitignore").write_text("_build/\nstand-in\ncalls.log\n")
    stand_in = tmp_path / "stand-in"
    stand_in.write_text(STAND_IN)
    stand_in.chmod(0o755)
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    _commit(tmp_path)
    return tmp_path


def _commit(repo: Path) -> None:
    git = ["git", "-c", "user.name=test", "-c", "user.email=test@example.org"]
    subprocess.run([*git, "add", "."], cwd=repo, check=True)
    subprocess.run([*git, "commit", "-qm", "change"], cwd=repo, check=True)


def _run(repo: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if k not in ("XLA_PYTHON_CLIENT_PREALLOCATE", "EXPERIMENTS")}
    environment |= {"PYTHON": str(repo / "stand-in"), "STUB_LOG": str(repo / "calls.log")} | env
    return subprocess.run(["bash", str(repo / "tools" / "run-full.sh"), *args], capture_output=True, text=True, env=environment)


def _calls(repo: Path) -> list[str]:
    log = repo / "calls.log"
    return log.read_text().splitlines() if log.exists() else []


def _list(repo: Path, *names: str) -> None:
    listing = repo / "tools" / "full-experiments.txt"
    listing.write_text(listing.read_text() + "".join(f"{name}   # a comment\n" for name in names) + "\n")
    _commit(repo)


def test_the_list_is_comments_and_names_only() -> None:
    for line in (ROOT / "tools" / "full-experiments.txt").read_text().splitlines():
        name = line.split("#", 1)[0].strip()
        assert not name or name.replace("_", "").replace("-", "").isalnum(), line


def test_an_empty_list_runs_nothing(repo: Path) -> None:
    (repo / "tools" / "full-experiments.txt").write_text("# nothing yet\n")
    result = _run(repo)
    assert result.returncode == 0 and "nothing to run" in result.stdout
    assert _calls(repo) == []


def test_a_missing_run_command_fails_clearly(repo: Path) -> None:
    result = _run(repo, "toy", STUB_HAS_RUN="0")
    assert result.returncode == 2
    assert "-m companion run' is not available" in result.stderr and "src/companion/cli.py" in result.stderr
    assert "invalid choice: 'run'" in result.stderr
    assert _calls(repo) == ["-m companion run --help"]


def test_it_refuses_the_full_profile_without_a_gpu(repo: Path) -> None:
    result = _run(repo, "toy", STUB_NO_GPU="1")
    assert result.returncode == 2 and "JAX sees no GPU" in result.stderr and "make gpu-env" in result.stderr
    assert not any(call.startswith("-m companion run toy") for call in _calls(repo))
    assert _run(repo, "toy", STUB_NO_GPU="1", COMPANION_FULL_ON_CPU="1").returncode == 0


def test_listed_experiments_run_one_process_each_in_order(repo: Path) -> None:
    _list(repo, "toy", "protein")
    result = _run(repo)
    assert result.returncode == 0, result.stderr
    runs = [call for call in _calls(repo) if call.startswith("-m companion run ") and "--help" not in call]
    assert runs == ["-m companion run toy --profile full", "-m companion run protein --profile full"]
    out = repo / "_build" / "full-results"
    assert (out / "results" / "toy.json").read_text() == "toy --profile full preallocate=false\n"
    assert (out / "results" / "protein.json").is_file()
    summary = (out / "RUN.md").read_text()
    assert "| toy | ok |" in summary and "| protein | ok |" in summary
    assert "companion doctor: all good" in summary and "commit: " in summary
    assert "2 result file(s) added or changed" in summary


def test_names_on_the_command_line_or_in_EXPERIMENTS_replace_the_list(repo: Path) -> None:
    _list(repo, "toy", "protein")
    assert _run(repo, "protein").returncode == 0
    assert _run(repo, EXPERIMENTS="faces toy").returncode == 0
    runs = [call.split()[3] for call in _calls(repo) if call.startswith("-m companion run ") and "--help" not in call]
    assert runs == ["protein", "faces", "toy"]


def test_a_failed_experiment_fails_the_run_after_the_others_ran(repo: Path) -> None:
    result = _run(repo, "broken", "toy")
    assert result.returncode == 1 and "1 experiment(s) failed: broken" in result.stderr
    summary = (repo / "_build" / "full-results" / "RUN.md").read_text()
    assert "| broken | failed (exit 3) |" in summary and "| toy | ok |" in summary
