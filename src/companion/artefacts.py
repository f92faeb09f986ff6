"""Result files of the ``full`` profile: small JSON files committed with their provenance.

Heavy chapters cannot train the paper's protocol while the book builds on two CPU cores, so
``python -m companion run <experiment> --profile full`` (on a GPU, see ``tools/run-full.sh``)
writes the numbers the chapter plots into ``src/companion/results/<name>.json``, which is shipped
with the package: the chapter finds them on the website, on a laptop and in Colab alike, and says
so when they are absent. ``COMPANION_RESULTS_DIR`` points reading and writing elsewhere (tests).

Every file carries :func:`provenance`: package versions, device, date and the git commit.
"""

from __future__ import annotations

import datetime
import importlib.metadata
import json
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

__all__ = ["ENV_VAR", "directory", "path", "load", "save", "provenance"]

ENV_VAR = "COMPANION_RESULTS_DIR"
PACKAGES = ("jax", "jaxlib", "flax", "optax", "numpy", "neural-tangents", "layernorm-companion")


def directory() -> Path:
    """Where result files live: ``$COMPANION_RESULTS_DIR``, else the package's ``results`` folder."""
    value = os.environ.get(ENV_VAR, "").strip()
    return Path(value).expanduser() if value else Path(__file__).resolve().parent / "results"


def path(name: str) -> Path:
    """The file of result ``name`` (letters, digits, ``-`` and ``_`` only)."""
    if not name or not name.replace("-", "").replace("_", "").isalnum():
        raise ValueError(f"result names use letters, digits, '-' and '_' only, got {name!r}")
    return directory() / f"{name}.json"


def load(name: str) -> dict[str, Any] | None:
    """The stored result ``name``, or ``None`` when it has not been computed yet."""
    file = path(name)
    if not file.is_file():
        return None
    return json.loads(file.read_text())


def save(name: str, payload: dict[str, Any]) -> Path:
    """Write ``payload`` as ``name`` atomically (a run killed mid-write leaves the old file intact)."""
    file = path(name)
    file.parent.mkdir(parents=True, exist_ok=True)
    partial = file.with_suffix(".json.partial")
    partial.write_text(json.dumps(payload, indent=1, sort_keys=True) + "\n")
    partial.replace(file)
    return file


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def _commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=Path(__file__).resolve().parent,
            capture_output=True, text=True, timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def provenance() -> dict[str, Any]:
    """Versions, device, Python, UTC date and git commit of the running computation."""
    import jax

    device = jax.devices()[0]
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "commit": _commit(),
        "device": f"{device.platform}: {getattr(device, 'device_kind', 'unknown')} (x{jax.device_count()})",
        "python": platform.python_version(),
        "versions": {package: _version(package) for package in PACKAGES},
    }
