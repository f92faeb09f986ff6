"""The API reference of the book (appendix "API reference" and its pages), as ``companion.site`` builds it.

Which public modules there are and which page documents each (:data:`API_PAGES`), which chapters
import each module, and what autodoc is told beyond the docstrings: a dataclass field's type and
default, and ``$...$`` maths in a docstring typeset like the book's text (:func:`math_roles`).
"""

from __future__ import annotations

import json
import pkgutil
import re
from pathlib import Path
from typing import Any

import companion

__all__ = ["API_PAGES", "public_modules", "modules_of_page", "chapters_importing", "field_lines", "math_roles",
           "owner_class", "notebook_code"]

_IMPORT = re.compile(  # from companion.x import a, b | from companion.x import (a, b) | import companion.x
    r"^[ \t]*(?:from[ \t]+(companion(?:\.\w+)*)[ \t]+import[ \t]+(\([^)]*\)|[^\n#]+)|import[ \t]+(companion(?:\.\w+)*))", re.M
)


#: The pages of the API reference (docnames) and the modules each documents; book/appendix/api
#: documents the rest. Each page says ``{api-modules}`` followed by its modules.
API_PAGES = {
    "book/appendix/api-kernels": ("companion.kernels",),
    "book/appendix/api-experiments": ("companion.experiments",),
    "book/appendix/api-data": ("companion.data",),
    "book/appendix/api-book": ("companion.artefacts", "companion.cli", "companion.doctor", "companion.notebook",
                               "companion.plotting", "companion.progress", "companion.site", "companion.apidoc"),
}


def modules_of_page(names: list[str] | tuple[str, ...]) -> list[str]:
    """The public modules an API page documents: those ``names`` (a package with its submodules),
    or with no names, every module that no page of :data:`API_PAGES` takes."""
    def under(module: str, name: str) -> bool:
        return module == name or (module.startswith(name + ".") and name != "companion")

    if names:
        return [m for m in public_modules() if any(under(m, n) for n in names)]
    taken = [n for page in API_PAGES.values() for n in page]
    return [m for m in public_modules() if not any(under(m, n) for n in taken)]


def field_lines(cls: type, name: str) -> list[str]:
    """What the API reference says of a dataclass field without a docstring of its own: its type
    and default, e.g. ``int``, default ``3``."""
    import dataclasses

    if not dataclasses.is_dataclass(cls):
        return []
    field = next((f for f in dataclasses.fields(cls) if f.name == name), None)
    if field is None:
        return []
    kind = field.type if isinstance(field.type, str) else getattr(field.type, "__name__", repr(field.type))
    if field.default is not dataclasses.MISSING:
        default = f", default ``{field.default!r}``"
    elif field.default_factory is not dataclasses.MISSING:
        default = f", default ``{field.default_factory.__name__}()``"
    else:
        default = ", required"
    return [f"Field of type ``{kind}``{default}."]


#: ``$...$`` in a docstring (not ``$NAME`` of an environment variable in a literal): maths.
_DOLLAR_MATH = re.compile(r"(?<![\\$`\w])\$(?=\S)([^$\n]+?)(?<=\S)\$(?![\w`$])")


def public_modules() -> list[str]:
    """Every module and subpackage of :mod:`companion` whose name has no part starting with ``_``."""
    names = ["companion"]
    for info in pkgutil.walk_packages(companion.__path__, "companion."):
        if not any(part.startswith("_") for part in info.name.split(".")):
            names.append(info.name)
    return sorted(names)


def chapters_importing(sources: dict[str, str]) -> dict[str, list[str]]:
    """Which chapters import each module: ``{module: [docname, ...]}`` from ``{docname: code}``.

    ``from companion.data import casp`` counts for the module ``companion.data.casp`` (not for the
    package), ``from companion.stats import lowess`` and ``import companion.stats`` for
    ``companion.stats``.
    """
    modules = set(public_modules())
    used: dict[str, list[str]] = {}
    for docname, code in sorted(sources.items()):
        found = set()
        for package, names, plain in _IMPORT.findall(code):
            submodules = {f"{package}.{n}" for n in re.split(r"[\s,()]+", names or "") if f"{package}.{n}" in modules}
            found |= {plain} if plain else (submodules or {package})
        for module in sorted(found & modules):
            used.setdefault(module, []).append(docname)
    return used


def math_roles(line: str) -> str:
    """``$...$`` maths of a docstring line as the ``:math:`` role (``$NAME`` of an environment
    variable, or ``$`` inside a literal, stays as it is)."""
    return _DOLLAR_MATH.sub(lambda m: f":math:`{m.group(1)}`", line)


def owner_class(name: str) -> type | None:
    """The class of an attribute's dotted name (``companion.x.Config.seed`` -> ``Config``), if any."""
    import importlib

    parts = name.split(".")
    for split in range(len(parts) - 2, 0, -1):
        try:
            obj: Any = importlib.import_module(".".join(parts[:split]))
        except ImportError:
            continue
        for part in parts[split:-1]:
            obj = getattr(obj, part, None)
        return obj if isinstance(obj, type) else None
    return None


def notebook_code(path: Path) -> str:
    """The code cells of a notebook (empty for any other file), for :func:`chapters_importing`."""
    if path.suffix != ".ipynb":
        return ""
    cells = json.loads(path.read_text())["cells"]
    return "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
