"""`python -m companion doctor` is green here and says what to fix when something is broken."""

from __future__ import annotations

import subprocess
import sys

import pytest

from companion import doctor


def test_all_checks_pass_here() -> None:
    checks = doctor.run_checks()
    failed = [(c.name, c.detail) for c in checks if not c.ok]
    assert not failed
    assert {c.name for c in checks} >= {"python", "versions", "jax", "profile", "data", "neural-tangents"}


def test_command_line_exit_status(monkeypatch: pytest.MonkeyPatch) -> None:
    ok = subprocess.run([sys.executable, "-m", "companion", "doctor"], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "all good" in ok.stdout and "neural-tangents" in ok.stdout
    monkeypatch.setenv("COMPANION_PROFILE", "gpu")
    bad = subprocess.run([sys.executable, "-m", "companion", "doctor"], capture_output=True, text=True)
    assert bad.returncode == 1
    assert "fix: unset $COMPANION_PROFILE or set it to ci or full" in bad.stdout


def test_data_directory_follows_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    from companion import data

    monkeypatch.setenv("COMPANION_DATA_DIR", str(tmp_path))
    assert data.data_dir() == tmp_path.resolve()
    check = doctor._data()
    assert check.ok and str(tmp_path.resolve()) in check.detail
