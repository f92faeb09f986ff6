"""The ci/full profile switch and the progress-bar setting."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from companion import profile, progress
from companion.experiments import first_look
from conftest import ROOT


def test_environment_variable_selects_profile(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COMPANION_PROFILE", "full")
    assert profile.active() == "full"
    monkeypatch.setenv("COMPANION_PROFILE", " CI ")
    assert profile.active() == "ci"


@pytest.mark.parametrize("gpu, expected", [(True, "full"), (False, "ci")])
def test_default_follows_the_device(monkeypatch: pytest.MonkeyPatch, gpu: bool, expected: str) -> None:
    monkeypatch.delenv("COMPANION_PROFILE")
    monkeypatch.setattr(profile, "_jax_sees_gpu", lambda: gpu)
    assert profile.active() == expected


def test_default_on_this_machine_is_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("COMPANION_PROFILE")
    assert profile.active() == "ci"  # the test machines have no GPU


def test_unknown_profile_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COMPANION_PROFILE", "gpu")
    with pytest.raises(profile.UnknownProfileError, match="must be one of ci, full"):
        profile.active()
    with pytest.raises(profile.UnknownProfileError, match="profile argument"):
        profile.select({"ci": 1, "full": 2}, "paper")


def test_select_picks_the_active_configuration(monkeypatch: pytest.MonkeyPatch) -> None:
    configs = {"ci": "small", "full": "paper"}
    assert profile.select(configs) == "small"
    monkeypatch.setenv("COMPANION_PROFILE", "full")
    assert profile.select(configs) == "paper"
    assert profile.select(configs, "ci") == "small"
    with pytest.raises(KeyError, match="full"):
        profile.select({"ci": 1})


def test_experiment_sizes_come_from_the_profile(monkeypatch: pytest.MonkeyPatch) -> None:
    assert first_look.config() == first_look.CONFIGS["ci"]
    monkeypatch.setenv("COMPANION_PROFILE", "full")
    full = first_look.config()
    assert full == first_look.CONFIGS["full"]
    # The full profile is the paper's toy protocol (Table 3): 3000 full-batch epochs, 5 seeds.
    assert (full.epochs, full.seeds, full.n_train, full.learning_rate) == (3000, 5, 100, 1e-3)


def test_progress_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    assert progress.enabled() is False
    monkeypatch.setenv("COMPANION_PROGRESS", "1")
    assert progress.enabled() is True
    monkeypatch.delenv("COMPANION_PROGRESS")
    monkeypatch.setenv("COMPANION_PROFILE", "full")
    assert progress.enabled() is True
    monkeypatch.setenv("COMPANION_PROGRESS", "maybe")
    with pytest.raises(ValueError, match="COMPANION_PROGRESS"):
        progress.enabled()


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_a_change_of_profile_clears_the_execution_cache(tmp_path: Path) -> None:
    """jupyter-cache keys a notebook on its code only, so the Makefile must drop it when the profile changes."""
    shutil.copy(ROOT / "Makefile", tmp_path)
    (tmp_path / "src").mkdir()
    (tmp_path / "requirements.lock").touch()

    def build_cache_key(profile_name: str | None) -> bool:
        """Run make's cache-key step; return whether it cleared the cache."""
        env = {k: v for k, v in os.environ.items() if k not in ("COMPANION_PROFILE", "MAKEFLAGS", "MFLAGS")}
        if profile_name:
            env["COMPANION_PROFILE"] = profile_name
        cache = tmp_path / "_build" / ".jupyter_cache"
        cache.mkdir(parents=True, exist_ok=True)
        subprocess.run(["make", "-s", "_build/.cache-key"], cwd=tmp_path, env=env, check=True, capture_output=True)
        return not cache.exists()

    assert build_cache_key(None), "the first build starts from an empty cache"
    assert not build_cache_key(None), "nothing changed: the cache is kept"
    assert build_cache_key("full"), "switching to the full profile must clear the cache"
    assert not build_cache_key("full")
    assert build_cache_key("ci")
