"""Small helpers for the chapters: computed numbers in the text, and Colab detection.

:func:`glue` stores a computed value for the book's text (``{glue:text}`name:.2f```) through
myst-nb when it is installed (the book build) and simply displays it (when asked) elsewhere (Colab, a laptop
without the book tools), so chapters run everywhere.
"""

from __future__ import annotations

import sys
from typing import Any

__all__ = ["glue", "in_colab"]


def in_colab() -> bool:
    """True inside Google Colab."""
    return "google.colab" in sys.modules


def glue(name: str, value: Any, display: bool = False) -> None:
    """Make ``value`` available to the chapter's text as ``name`` (myst-nb glue).

    It returns nothing, so that a cell ending with ``glue(...)`` shows no stray output under it;
    with ``display=True`` the value is shown where the cell is.
    """
    try:
        from myst_nb import glue as _glue
    except ImportError:
        if display:
            print(f"{name} = {value}")
        return
    _glue(name, value, display=display)
