"""Shared test set-up: a known profile and no progress bars, whatever the caller's environment."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _quiet_ci_profile(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COMPANION_PROFILE", "ci")
    monkeypatch.setenv("COMPANION_PROGRESS", "0")
