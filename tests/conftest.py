"""Shared test set-up: a known profile and no progress bars, whatever the caller's environment, and
the one build of the whole book that the book and website tests share."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BOOK_BUILD_ENV = "COMPANION_BOOK_BUILD"


@pytest.fixture(autouse=True)
def _quiet_ci_profile(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COMPANION_PROFILE", "ci")
    monkeypatch.setenv("COMPANION_PROGRESS", "0")


@pytest.fixture(scope="session")
def book_build(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The book built once from scratch, every chapter executed, warnings as errors.

    Returns the output folder: the HTML is in ``_build/html``, the log in ``build.log``, and the
    website test saves its screenshots in ``_build/screenshots``. tests/test_book.py checks the
    pages' content and tests/test_site.py opens them in a browser; both use this one build. While
    working on the website, ``$COMPANION_BOOK_BUILD`` can name a folder built before (``make book``
    builds into the repository root) to check it without building again.
    """
    if os.environ.get(BOOK_BUILD_ENV):  # reuse a build, e.g. `make book`'s (the repository root)
        out = Path(os.environ[BOOK_BUILD_ENV]).resolve()
        assert (out / "_build" / "html" / "index.html").is_file(), f"${BOOK_BUILD_ENV}={out} holds no built book"
        return out
    out = tmp_path_factory.mktemp("book")
    jupyter_book = Path(sys.executable).with_name("jupyter-book")
    env = os.environ | {"COMPANION_PROFILE": "ci", "COMPANION_PROGRESS": "0"}
    build = subprocess.run(
        [str(jupyter_book), "build", str(ROOT), "--path-output", str(out), "-W", "-n", "--keep-going"],
        capture_output=True, text=True, env=env,
    )
    log = build.stdout + build.stderr
    (out / "build.log").write_text(log)
    assert build.returncode == 0, "book build failed:\n" + log[-6000:]
    assert "WARNING" not in re.sub(r"\[IPKernelApp\] WARNING \| Kernel is running over TCP[^\n]*", "", log)
    return out
