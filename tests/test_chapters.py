"""Static checks of the chapters: jupytext pairs in sync, Colab wiring, imports, closing asserts."""

from __future__ import annotations

import ast
import fnmatch
import importlib.util
import re
from pathlib import Path

import jupytext
import nbformat
import pytest
import yaml

from conftest import ROOT

CONFIG = yaml.safe_load((ROOT / "_config.yml").read_text())
TOC = yaml.safe_load((ROOT / "_toc.yml").read_text())


def _toc_files(node: object) -> list[str]:
    found = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("file", "root"):
                found.append(value)
            found += _toc_files(value)
    elif isinstance(node, list):
        for item in node:
            found += _toc_files(item)
    return found


PAGES = _toc_files(TOC)
CHAPTERS = [p for p in PAGES if (ROOT / f"{p}.ipynb").exists()]


def test_every_page_in_the_toc_exists() -> None:
    for page in PAGES:
        assert (ROOT / f"{page}.md").exists() or (ROOT / f"{page}.ipynb").exists(), page
    assert CHAPTERS, "the book has no executable chapter"


def test_every_notebook_is_paired_and_listed() -> None:
    for notebook in (ROOT / "book").rglob("*.ipynb"):
        if ".ipynb_checkpoints" in notebook.parts:
            continue
        stem = notebook.relative_to(ROOT).with_suffix("").as_posix()
        assert notebook.with_suffix(".md").exists(), f"{notebook.name} has no paired .md"
        assert stem in PAGES, f"{stem} is not in _toc.yml"


def _code_and_markdown(notebook: nbformat.NotebookNode) -> list[tuple[str, str]]:
    return [(cell.cell_type, cell.source.strip()) for cell in notebook.cells]


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_jupytext_pair_is_in_sync(chapter: str) -> None:
    md = jupytext.read(ROOT / f"{chapter}.md")
    ipynb = jupytext.read(ROOT / f"{chapter}.ipynb")
    assert md.metadata["jupytext"]["formats"] == "ipynb,md:myst"
    assert _code_and_markdown(md) == _code_and_markdown(ipynb), (
        f"{chapter}.md and {chapter}.ipynb differ; run: jupytext --sync {chapter}.md"
    )
    for a, b in zip(md.cells, ipynb.cells):
        assert a.metadata.get("tags") == b.metadata.get("tags")


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_notebook_is_stored_without_outputs(chapter: str) -> None:
    notebook = nbformat.read(ROOT / f"{chapter}.ipynb", as_version=4)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            assert not cell.outputs and cell.execution_count is None, f"{chapter}.ipynb has outputs"


CHAPTER_FOLDERS = ("introduction", "theory", "experiments", "beyond")


def _excluded(path: str) -> bool:
    return any(fnmatch.fnmatch(path, pattern) for pattern in CONFIG["exclude_patterns"])


def test_markdown_twins_and_only_they_are_excluded_from_the_build() -> None:
    # The book is built from the .ipynb (what Colab opens); building both twins would clash,
    # while excluding a plain page would silently drop it from the book.
    for md in (ROOT / "book").rglob("*.md"):
        rel = md.relative_to(ROOT).as_posix()
        paired = md.with_suffix(".ipynb").exists()
        assert _excluded(rel) == paired, f"{rel}: paired={paired} but excluded={_excluded(rel)}"
        in_chapter_folder = md.parent.name in CHAPTER_FOLDERS
        assert paired == in_chapter_folder, f"{rel}: chapters (and only chapters) live in {CHAPTER_FOLDERS}"


def _repository() -> tuple[str, str]:
    repo = CONFIG["repository"]
    return repo["url"].rstrip("/"), repo["branch"]


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_colab_link_and_install_cell_follow_the_configured_repository(chapter: str) -> None:
    url, branch = _repository()
    owner_repo = url.removeprefix("https://github.com/")
    text = (ROOT / f"{chapter}.md").read_text()
    colab = f"https://colab.research.google.com/github/{owner_repo}/blob/{branch}/{chapter}.ipynb"
    links = re.findall(r"https://colab\.research\.google\.com/[^\s)]+", text)
    assert links == [colab], f"{chapter}: Colab link should be {colab}, found {links}"
    installs = re.findall(r"git\+(https://[^\s\"@]+)@([^\s\"]+)\"", text)
    assert installs == [(url, branch)], f"{chapter}: install cell should use {url}@{branch}, found {installs}"
    assert CONFIG["launch_buttons"]["colab_url"] == "https://colab.research.google.com"


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_install_cell_runs_only_in_colab_and_keeps_jax(chapter: str) -> None:
    notebook = jupytext.read(ROOT / f"{chapter}.md")
    setup = [c for c in notebook.cells if c.cell_type == "code" and "%pip" in c.source]
    assert len(setup) == 1, f"{chapter}: expected one install cell"
    source = setup[0].source
    assert 'if "google.colab" in sys.modules:' in source
    assert "--no-deps neural-tangents==0.6.5" in source
    assert not re.search(r"%pip install[^\n]*\bjax\b", source), "the install cell must not reinstall JAX"


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_chapter_imports_are_available(chapter: str) -> None:
    notebook = jupytext.read(ROOT / f"{chapter}.md")
    for cell in notebook.cells:
        if cell.cell_type != "code":
            continue
        # IPython magics are not Python: keep the indentation, drop the command.
        code = "\n".join(
            line[: len(line) - len(line.lstrip())] + "pass" if line.lstrip().startswith("%") else line
            for line in cell.source.splitlines()
        )
        for node in ast.walk(ast.parse(code)):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                assert importlib.util.find_spec(name.split(".")[0]) is not None, f"{chapter} imports {name}"


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_chapter_ends_with_checks(chapter: str) -> None:
    notebook = jupytext.read(ROOT / f"{chapter}.md")
    last = [c for c in notebook.cells if c.cell_type == "code"][-1]
    # A theory chapter's asserts live in checks() of its experiment module (which the fault-injection
    # test also runs); the last cell calls it.
    assert "assert " in last.source or re.search(r"\.checks\(", last.source), (
        f"{chapter} must end with asserts of its headline claims")


MACHINE_DIRS = ("home", "root", "Users", "tmp", "private", "mnt")


def test_no_machine_paths_in_the_book() -> None:
    pattern = re.compile("/(" + "|".join(MACHINE_DIRS) + r")/|[A-Z]:\\")
    for path in list((ROOT / "book").rglob("*.md")) + [ROOT / "_config.yml", ROOT / "README.md"]:
        assert not pattern.search(path.read_text()), f"{path.name} has a machine path"
