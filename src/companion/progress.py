"""Progress bars for long computations (tqdm), on by default only where runs are long.

``COMPANION_PROGRESS=1`` forces bars on, ``COMPANION_PROGRESS=0`` off. Unset, bars are shown in the
``full`` profile (GPU-scale runs that take minutes) and hidden in the ``ci`` profile, whose runs
take seconds and whose output ends up in the rendered book.
"""

from __future__ import annotations

import importlib.util
import os
from typing import Any

from companion import profile

__all__ = ["ENV_VAR", "enabled", "bar"]

ENV_VAR = "COMPANION_PROGRESS"


def enabled() -> bool:
    """Whether progress bars are shown (see the module docstring)."""
    value = os.environ.get(ENV_VAR, "").strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    if value:
        raise ValueError(f"${ENV_VAR} is {value!r}; set it to 1 (show progress bars) or 0 (hide them)")
    return profile.active() == "full"


def bar(total: int, desc: str, **kwargs: Any) -> Any:
    """A tqdm bar of ``total`` steps; widget-based in notebooks when ipywidgets is installed."""
    if importlib.util.find_spec("ipywidgets") is not None:
        from tqdm.auto import tqdm
    else:  # tqdm.auto would warn about missing ipywidgets in a notebook
        from tqdm.std import tqdm
    return tqdm(total=total, desc=desc, disable=not enabled(), **kwargs)
