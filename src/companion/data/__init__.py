"""Where the book's data sets live, and the data sets themselves.

Downloaded files are cached in a per-user directory. ``COMPANION_DATA_DIR`` points the book at a
directory that already holds the files instead (CI points it at a local copy, so nothing is
downloaded there).
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

__all__ = ["ENV_VAR", "data_dir"]

ENV_VAR = "COMPANION_DATA_DIR"


def data_dir() -> Path:
    """The data directory: ``$COMPANION_DATA_DIR`` if set, else the user cache (``pooch.os_cache``)."""
    value = os.environ.get(ENV_VAR, "").strip()
    if value:
        return Path(value).expanduser().resolve()
    with warnings.catch_warnings():
        # pooch imports tqdm.auto, which warns "IProgress not found" in a notebook without ipywidgets.
        warnings.filterwarnings("ignore", message="IProgress not found")
        import pooch

    return Path(pooch.os_cache("layernorm-companion"))
