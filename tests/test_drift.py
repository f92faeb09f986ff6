"""The drift check (tools/drift.py, tools/open-drift-issue.sh) and, marked `drift`, the real thing.

The last test installs the book into a fresh virtual environment from the package registries,
exactly as the chapters' Colab cell does, on the newest jax, flax and optax that pyproject.toml
admits, and executes the first chapter: the weekly drift workflow's install path, checked here.
It needs PyPI and takes a few minutes (it is skipped, saying so, when no package index answers);
deselect it with ``-m "not drift"``. ``make drift`` runs every chapter the same way.
"""

from __future__ import annotations

import ast
import importlib.metadata
import importlib.util
import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import nbformat
import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from conftest import ROOT

spec = importlib.util.spec_from_file_location("drift", ROOT / "tools" / "drift.py")
drift = importlib.util.module_from_spec(spec)
spec.loader.exec_module(drift)

FIRST_CHAPTER = ROOT / "book" / "introduction" / "first-look.ipynb"


def test_the_colab_cell_is_run_as_written_with_the_package_from_this_checkout() -> None:
    lines = drift.colab_install_lines(FIRST_CHAPTER)
    commands = [drift.pip_arguments(line, "file:///src/copy") for line in lines]
    assert commands == [
        ["install", "-q", "layernorm-companion[chapters] @ file:///src/copy"],
        ["install", "-q", "--no-deps", "neural-tangents==0.6.5"],
    ]
    # Every chapter's cell installs the same way (the drift check refuses otherwise).
    assert {tuple(drift.colab_install_lines(chapter)) for chapter in drift.all_chapters()} == {tuple(lines)}


def test_the_preinstalled_stack_takes_pyprojects_ranges() -> None:
    dependencies = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    ranges = {Requirement(spec).name: spec for spec in dependencies}
    assert drift.preinstalled_requirements() == [ranges["jax"], ranges["flax"], ranges["optax"]]


#: Modules the package or a chapter imports that the install cell's requirement
#: (``layernorm-companion[chapters]``) does not bring, with where they come from instead.
#: ``None``: nothing to declare (Colab, the kernel); ``(extra, package)``: that extra of pyproject.toml
#: declares the package, or requires a package that requires it.
PROVIDED_ELSEWHERE = {
    "neural_tangents": None,  # the Colab cell installs it itself, with --no-deps (no TensorFlow)
    "google": None,  # google.colab: only inside Colab, behind `if "google.colab" in sys.modules`
    "IPython": None, "matplotlib_inline": None,  # part of every Jupyter kernel (ipykernel)
    # companion.site and the glue of companion.notebook: the book build only
    "sphinx": ("book", "sphinx"), "docutils": ("book", "docutils"), "myst_nb": ("book", "myst-nb"),
    # the UTKFace feature extractor only
    "torch": ("faces", "torch"), "torchvision": ("faces", "torchvision"), "PIL": ("faces", "pillow"),
}
#: The lock's small CPU build provides the same module as the declared package.
SAME_MODULE = {"xgboost-cpu": "xgboost"}


def _imported_modules(source: str) -> set[str]:
    # IPython magics and shell lines are not Python: keep the indentation, drop the command.
    code = "\n".join(
        line[: len(line) - len(line.lstrip())] + "pass" if line.lstrip().startswith(("%", "!")) else line
        for line in source.splitlines()
    )
    found = set()
    for node in ast.walk(ast.parse(code)):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found


def _requirements_of(names: set[str]) -> set[str]:
    """The (non-optional) requirements of the installed packages ``names``."""
    found = set()
    for name in names:
        try:
            requirements = importlib.metadata.requires(name) or []
        except importlib.metadata.PackageNotFoundError:
            continue
        found |= {canonicalize_name(Requirement(r).name) for r in requirements if "extra ==" not in r}
    return found


def test_every_package_a_chapter_imports_is_declared() -> None:
    """What the package and the chapters import is in pyproject's dependencies or the `chapters`
    extra, so the Colab cell (and the drift check) install it: no chapter fails on a missing package."""
    sources = [path.read_text() for path in (ROOT / "src" / "companion").rglob("*.py")]
    for chapter in drift.all_chapters():
        sources += [cell.source for cell in nbformat.read(chapter, as_version=4).cells if cell.cell_type == "code"]
    modules = set().union(*map(_imported_modules, sources)) - set(sys.stdlib_module_names) - {"companion", "__future__"}
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    declared = {canonicalize_name(Requirement(spec).name) for spec in project["dependencies"] + extras["chapters"]}
    distributions = importlib.metadata.packages_distributions()
    missing = []
    for module in sorted(modules):
        if module in PROVIDED_ELSEWHERE:
            if PROVIDED_ELSEWHERE[module] is not None:
                extra, package = PROVIDED_ELSEWHERE[module]
                direct = {canonicalize_name(Requirement(spec).name) for spec in extras[extra]}
                assert package in direct | _requirements_of(direct), f"{package} is not in the {extra!r} extra"
            continue
        names = {canonicalize_name(SAME_MODULE.get(d.lower(), d)) for d in distributions.get(module, [module])}
        if not names & declared:
            missing.append(f"{module} (from {', '.join(sorted(names))})")
    assert not missing, f"imported but not declared in pyproject.toml: {missing}"


def test_a_bad_install_line_is_refused_clearly() -> None:
    with pytest.raises(ValueError, match="not a %pip install line"):
        drift.pip_arguments("!pip install jax", "file:///x")


def test_a_failing_cell_and_stderr_are_reported(tmp_path: Path) -> None:
    notebook = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("import sys\nprint('careful', file=sys.stderr)"),
        nbformat.v4.new_code_cell("value = 1 + 1"),
        nbformat.v4.new_code_cell("assert value == 3, 'the headline claim'"),
        nbformat.v4.new_code_cell("print('never reached')"),
    ])
    path = tmp_path / "chapter.ipynb"
    nbformat.write(notebook, path)
    out = tmp_path / "chapters.json"
    drift._execute_chapters([str(path)], out)
    (result,) = json.loads(out.read_text())
    assert not result["ok"]
    assert result["failed_cell"]["cell"] == 2
    assert result["failed_cell"]["error"] == "AssertionError: the headline claim"
    assert result["stderr"] == [{"cell": 0, "text": "careful\n"}]
    report = drift.render({"commands": ["pip install x"], "chapters": [result], "versions": {"jax": "9.9"}})
    assert "1 of 1 chapter(s) failed" in report
    assert "assert value == 3, 'the headline claim'" in report and "jax 9.9" in report
    assert "careful" in report


STAND_IN_GH = r"""#!/usr/bin/env bash
echo "gh $*" >> "$GH_LOG"
if [ "$1 $2" = "issue list" ]; then echo "${OPEN_ISSUE:-}"; fi
for ((i = 1; i <= $#; i++)); do
  if [ "${!i}" = --body-file ]; then j=$((i + 1)); cp "${!j}" "$GH_LOG.body"; fi
done
"""


@pytest.mark.parametrize("open_issue", ["", "12"])
def test_a_failure_opens_one_issue_then_comments_on_it(tmp_path: Path, open_issue: str) -> None:
    gh = tmp_path / "bin" / "gh"
    gh.parent.mkdir()
    gh.write_text(STAND_IN_GH)
    gh.chmod(0o755)
    report = tmp_path / "report.md"
    report.write_text("## Drift check: 1 of 3 chapter(s) failed\n")
    log = tmp_path / "gh.log"
    env = os.environ | {
        "PATH": f"{gh.parent}{os.pathsep}{os.environ['PATH']}", "GH_LOG": str(log),
        "OPEN_ISSUE": open_issue, "RUN_URL": "https://example.org/run/1",
    }
    subprocess.run(["bash", str(ROOT / "tools" / "open-drift-issue.sh"), str(report)], env=env, check=True)
    calls = log.read_text().splitlines()
    assert calls[0].startswith("gh label create drift --force")
    assert calls[1].startswith("gh issue list --label drift --state open")
    if open_issue:
        assert calls[2].startswith("gh issue comment 12 --body-file")
    else:
        assert calls[2].startswith("gh issue create --title Drift check: chapters fail on the newest JAX, flax or optax --label drift")
    body = Path(f"{log}.body").read_text()
    assert "## Drift check: 1 of 3 chapter(s) failed" in body and "https://example.org/run/1" in body


def _package_index_unreachable() -> str | None:
    """Why pip cannot reach a package index from here, or None when it can."""
    try:
        result = subprocess.run(
            [sys.executable, "-m", "pip", "index", "versions", "jax", "--retries", "0", "--timeout", "15"],
            capture_output=True, text=True, timeout=120,
        )
    except subprocess.TimeoutExpired:
        return "`pip index versions jax` timed out"
    if result.returncode != 0 or not re.search(r"^jax \(", result.stdout, flags=re.MULTILINE):
        return "`pip index versions jax` failed: " + (result.stderr.strip().splitlines() or ["no output"])[-1]
    return None


@pytest.mark.drift
def test_colab_install_on_the_newest_stack_runs_the_first_chapter(tmp_path: Path) -> None:
    reason = _package_index_unreachable()
    if reason:
        pytest.skip(f"the drift test installs from the package index, which is unreachable ({reason}); "
                    "run it online, or deselect it with -m 'not drift'")
    report = tmp_path / "report.md"
    result = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "drift.py"), "--venv", str(tmp_path / "venv"),
         "--report", str(report), str(FIRST_CHAPTER)],
        capture_output=True, text=True,
    )
    assert result.returncode == 0, (report.read_text() if report.exists() else "") + result.stderr[-4000:]
    facts = json.loads(report.with_suffix(".json").read_text())
    assert [c["chapter"] for c in facts["chapters"]] == ["book/introduction/first-look.ipynb"]
    assert facts["chapters"][0]["ok"]
    assert facts["doctor"]["ok"], facts["doctor"]["output"]  # neural-tangents imports and computes a kernel
    versions, newest = facts["versions"], facts["newest"]
    assert versions["neural-tangents"] == "0.6.5" and versions["layernorm-companion"] != "not installed"
    # pip took the newest jax, flax and optax that pyproject.toml admits for this Python.
    for requirement in map(Requirement, drift.preinstalled_requirements()):
        if newest[requirement.name] != "unknown" and requirement.specifier.contains(newest[requirement.name]):
            assert versions[requirement.name] == newest[requirement.name], requirement.name
    lock = dict(line.split(";")[0].strip().split("==")  # a pin may carry a platform marker after ";"
                for line in (ROOT / "requirements.lock").read_text().splitlines() if "==" in line)
    assert Version(versions["jax"]) >= Version(lock["jax"]), "the drift check should run at least the locked JAX"
    print(f"\ndrift check: {facts['seconds']} s (install {facts['install_seconds']} s); " +
          ", ".join(f"{k} {v}" for k, v in versions.items()))
