"""Every public module, function and class of ``companion`` is documented, for the API reference.

The appendix "API reference" is generated from these docstrings (``companion.site``), so a missing
one is a hole in the website. Modules that implement a chapter's experiment name that chapter.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import re

import pytest

from companion import apidoc, site
from conftest import ROOT

MODULES = apidoc.public_modules()


def _public_objects(module):
    """Functions and classes the module defines under a public name: what the API page shows."""
    for name, obj in vars(module).items():
        if name.startswith("_") or getattr(obj, "__module__", None) != module.__name__:
            continue
        if inspect.isfunction(obj) or inspect.isclass(obj):
            yield name, obj


def _public_members(cls):
    """Methods and properties a class defines itself (not those dataclasses write for it)."""
    for name, value in vars(cls).items():
        if name.startswith("_"):
            continue
        function = value.fget if isinstance(value, property) else getattr(value, "__func__", value)
        if inspect.isfunction(function):
            yield name, function


def _documented(obj) -> bool:
    doc = obj.__doc__ if inspect.isclass(obj) else inspect.getdoc(obj)
    if inspect.isclass(obj) and (doc is None or "__doc__" not in vars(obj)):
        return False
    # dataclasses and named tuples write their signature as a docstring when they have none
    return bool(doc and doc.strip()) and not doc.startswith(f"{obj.__name__}(")


@pytest.mark.parametrize("name", MODULES)
def test_public_module_functions_and_classes_have_docstrings(name: str) -> None:
    module = importlib.import_module(name)
    assert (module.__doc__ or "").strip(), f"module {name} has no docstring"
    missing = []
    for n, obj in _public_objects(module):
        if not _documented(obj):
            missing.append(f"{name}.{n}")
        if inspect.isclass(obj) and obj.__module__ == name:
            missing += [f"{name}.{n}.{m}" for m, f in _public_members(obj) if not (f.__doc__ or "").strip()]
    assert not missing, f"public objects without a docstring (the API reference shows them empty): {missing}"


def _chapter_titles() -> dict[str, str]:
    titles = {}
    for path in ROOT.glob("book/*/*.md"):
        match = re.search(r"^# (.+)$", path.read_text(), re.M)
        if match and path.with_suffix(".ipynb").is_file():
            titles[path.stem.replace("-", "_")] = match.group(1).strip()
    return titles


def test_each_experiment_module_names_its_chapter() -> None:
    titles = _chapter_titles()
    for name in MODULES:
        if name.startswith("companion.experiments.") and name.rsplit(".", 1)[-1] in titles:
            doc = importlib.import_module(name).__doc__
            title = titles[name.rsplit(".", 1)[-1]]
            short = title.split(":")[0]  # "Toy problems" for "Toy problems: explosion and saturation"
            assert short in " ".join(doc.split()), f"{name}'s docstring should name its chapter, {title!r}"


def test_chapters_importing_finds_modules_and_submodules() -> None:
    code = {"a": "from companion import plotting, profile\nfrom companion.data import casp\n",
            "b": "import companion.stats\nfrom companion.stats import lowess"}
    used = apidoc.chapters_importing(code)
    assert used["companion.plotting"] == ["a"] and used["companion.data.casp"] == ["a"]
    assert used["companion.stats"] == ["b"]
    assert "companion" not in used and "companion.data" not in used and "companion.models" not in used


def test_api_reference_alone_builds_without_a_warning(tmp_path) -> None:
    """The API pages built on their own, with the book's autodoc settings, nitpicky, warnings as errors.

    The book's build (tests/test_book.py) checks the same, but needs every chapter executed; this
    checks the docstrings' reST and cross-references in seconds.
    """
    import subprocess
    import sys

    import yaml

    settings = yaml.safe_load((ROOT / "_config.yml").read_text())["sphinx"]["config"]
    conf = {key: value for key, value in settings.items() if key.startswith(("autodoc_", "nitpick"))}
    source = tmp_path / "source"
    source.mkdir()
    pages = sorted(path.stem for path in (ROOT / "book" / "appendix").glob("api*.md"))
    for page in pages:
        (source / f"{page}.md").write_text((ROOT / "book" / "appendix" / f"{page}.md").read_text())
    (source / "index.md").write_text("# Index\n\n```{toctree}\n" + "\n".join(pages) + "\n```\n")
    (source / "conf.py").write_text(
        f"extensions = ['myst_parser', 'companion.site']\nroot_doc = 'index'\n"
        + "".join(f"{key} = {value!r}\n" for key, value in conf.items())
    )
    build = subprocess.run(
        [sys.executable, "-m", "sphinx", "-b", "html", "-W", "-n", "--keep-going", "-q", str(source), str(tmp_path / "html")],
        capture_output=True, text=True,
    )
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-6000:]


def test_every_public_module_is_on_one_api_page_and_the_pages_say_so() -> None:
    pages = {"book/appendix/api": ()} | apidoc.API_PAGES
    on = [m for names in pages.values() for m in apidoc.modules_of_page(names)]
    assert sorted(on) == sorted(MODULES), "each public module belongs on exactly one API page"
    toc = (ROOT / "_toc.yml").read_text()
    for page, names in pages.items():
        text = (ROOT / f"{page}.md").read_text()
        assert re.search(rf"^```\{{api-modules\}} *{re.escape(' '.join(names))} *$", text, re.M), page
        assert f"file: {page}\n" in toc, f"{page} is not in _toc.yml"


def test_dataclass_fields_are_described_by_type_and_default() -> None:
    from companion.experiments import bounded_kernel

    assert apidoc.field_lines(bounded_kernel.Config, "depth") == ["Field of type ``int``, default ``3``."]
    assert apidoc.field_lines(bounded_kernel.Config, "pairs") == ["Field of type ``int``, required."]
    assert apidoc.field_lines(int, "real") == []


def test_dollar_maths_in_docstrings_is_typeset_and_environment_variables_are_not() -> None:
    to_role = apidoc.math_roles
    assert to_role(r"the NTK $\Theta(x, x)$ grows") == r"the NTK :math:`\Theta(x, x)` grows"
    assert to_role("set ``$COMPANION_DATA_DIR`` or $HOME") == "set ``$COMPANION_DATA_DIR`` or $HOME"


#: Maths written as plain text, once ``literals``, ``$...$`` and ``.. math::`` blocks are removed:
#: an exponent (``w_1^2``, ``|x|^2``, ``Theta^(h)``), a square root or arccos written as a call,
#: kernel notation (``Sigma(x, x')``, ``Theta^(1)``), a subscripted symbol spelt out (``lambda_min``,
#: ``sigma_b``, ``x_i``), Greek letters by name, an expectation ``E[...]``, a norm ``|x|``, a dot
#: product ``x.x'`` and ``+-1`` (in a literal, the narrower ``_MATHS_LITERAL``). :func:`plain_maths` shows
#: one formula it catches.
_PLAIN_MATHS = re.compile(
    r"[\w)|\]]\^[-\w({]"  # exponent
    r"|\b(?:sqrt|arccos|arcsin|exp|log|tanh|erf)\("  # a function of maths written as a call
    r"|\b(?:Sigma|Theta|Phi)\^?\(|\b(?:lambda|sigma|Sigma|Theta|mu|eps|kappa)_\w"  # kernels, subscripts
    r"|\b(?:rho|phi|sigma|lambda|kappa|Theta|Sigma|pi)\b(?!-)"  # Greek letters by name
    r"|\bE\[|\|\w+\||\b[a-z]\.[a-z]'|\+-\d|\b[a-z]_[a-z0-9]\b"  # expectation, norm, dot product, +-, x_i
)
#: The same in a ``literal``, where code is allowed: an exponent, a kernel, a norm, an expectation, ``+-1``.
_MATHS_LITERAL = re.compile(r"[\w)|\]]\^[-\w({]|\b(?:Sigma|Theta)\b|(?<![.\w])sqrt\(|\|\w+\||\bE\[|\+-\d")
#: A parameter's name alone on its line (a NumPy section entry) is code, not maths.
_PARAMETER = re.compile(r"^\s*\w+(?:, \w+)*:\s*$", re.M)
_LITERAL = re.compile(r"``.+?``|:\w+:`[^`]+`|\$\$.+?\$\$|(?<![\\\w])\$[^$\n]+?\$|`[^`\n]+`", re.S)


def _docstrings(path) -> list[tuple[int, str]]:
    """Every docstring of a module's source (module, class, function, attribute) and every ``#:`` comment."""
    source = path.read_text()
    found = [(i + 1, line.split("#:", 1)[1]) for i, line in enumerate(source.splitlines()) if line.strip().startswith("#:")]
    for node in ast.walk(ast.parse(source)):
        body = getattr(node, "body", None)
        if not isinstance(body, list):
            continue
        for statement in body:
            if isinstance(statement, ast.Expr) and isinstance(statement.value, ast.Constant) and isinstance(statement.value.value, str):
                found.append((statement.lineno, statement.value.value))
    return found


def _without_maths_blocks(doc: str) -> str:
    """``doc`` without its ``.. math::`` blocks (the directive and its indented lines)."""
    out, indent = [], None
    for line in doc.splitlines():
        depth = len(line) - len(line.lstrip())
        if indent is not None and (not line.strip() or depth > indent):
            continue
        indent = depth if line.strip().startswith(".. math::") else None
        if indent is None:
            out.append(line)
    return "\n".join(out)


def plain_maths(doc: str) -> list[str]:
    """The plain-text maths of a docstring: each match of :data:`_PLAIN_MATHS` with its context.

    >>> plain_maths("Sigma^(1)(x, x') = w_1^2 x.x' / n0 + sigma_b^2")[0]
    "Sigma^(1)(x, x') = w_1^2 x.x' / n0 + sigma_b^2"
    >>> plain_maths(r"$\\Sigma^{(1)}(x, x') = w_1^2 \\, x \\cdot x' / n_0 + \\sigma_b^2$ with ``sigma_b``")
    []
    """
    text = _PARAMETER.sub("", _without_maths_blocks(doc))
    found = [literal for literal in re.findall(r"``(.+?)``", text, re.S) if _MATHS_LITERAL.search(literal)]
    text = _LITERAL.sub(" ", text)
    return found + [line.strip() for line in text.splitlines() if _PLAIN_MATHS.search(line)]


def test_plain_maths_is_found_and_typeset_maths_is_not() -> None:
    assert plain_maths("the kernel Sigma^(1)(x, x') = w_1^2 x.x' / n0 + sigma_b^2 of layer 1")
    for plain in ("grows like |x|^2", "grows like ``|x|^2``", "the scale sqrt(K(x, x) K(x', x'))", "(pi - arccos rho) / 2 pi",
                  "lambda_min of the NTK", "E[phi(u) phi(v)]", "correlations near +-1"):
        assert plain_maths(plain), plain
    for typeset in (r"grows like $\|x\|^2$", r"``sigma_b``, ``np.sqrt(2)`` and ``x[:, None]``", ":func:`kernel` of ``x ** 2``",
                    ".. math::\n\n    \\Theta^{(1)} = \\Sigma^{(1)}\n\nthen the rest", "the phase and the epsilon-free case",
                    "set ``$COMPANION_DATA_DIR``", "in float64, about 1e-8 of that"):
        assert not plain_maths(typeset), typeset


def test_docstrings_typeset_their_maths() -> None:
    """No docstring writes a formula as plain text (the API reference would show ``Sigma^(1)`` as such)."""
    found = [f"{path.relative_to(ROOT)}:{line}: {text}"
             for path in sorted((ROOT / "src" / "companion").rglob("*.py"))
             for line, doc in _docstrings(path) for text in plain_maths(doc)]
    assert not found, "write these formulas as $...$ (or a .. math:: block):\n" + "\n".join(found)
