#!/usr/bin/env python3
"""Drift check: does the book still work for a Colab reader on the newest JAX, flax and optax?

    python3 tools/drift.py [--venv DIR] [--report FILE] [CHAPTER.ipynb ...]

Colab installs nothing of the book's stack but the helper package: JAX, flax and optax are already
there, in whatever version Colab ships this week. This script rebuilds that situation from the
package registries, with the Python that runs it:

1. a fresh virtual environment gets what a Colab runtime has before a chapter runs: the newest
   jax, flax and optax that ``pyproject.toml``'s ranges admit, plus ipykernel and nbclient;
2. the ``%pip install`` lines of the chapters' Colab cell then run as written, except that the
   package's ``git+<repository>@<branch>`` is replaced by a copy of this checkout (so a change is
   checked before it is pushed);
3. each chapter (default: every notebook under ``book/<part>/``) is executed with nbclient in the
   ``ci`` profile, as a reader would run it top to bottom (the Colab cell itself skips outside Colab),
   after ``python -m companion doctor`` checked that JAX works and that every neural-tangents path
   the book uses gives the right numbers on this JAX.

The report, in Markdown (versions, each chapter's status and time, every failing cell with its
source and error, and what the chapters wrote to stderr), goes to FILE (default
``_build/drift/report.md``), with the same facts as JSON beside it. The exit status is 1 when the
install, the doctor or a chapter failed. Only the standard library is used here; step 3 runs this same file
inside the new environment, where nbclient is installed.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHAPTER_PARTS = ("introduction", "theory", "experiments", "beyond")
#: What Colab provides besides the book's own install cell: the stack (in pyproject's ranges) and
#: the kernel machinery that runs a notebook.
PREINSTALLED = ("jax", "flax", "optax")
RUNTIME = ("ipykernel", "nbclient", "nbformat")
REPORTED = (
    "jax", "jaxlib", "flax", "optax", "numpy", "scipy", "matplotlib", "neural-tangents",
    "layernorm-companion", "ipykernel", "nbclient",
)
GIT_REQUIREMENT = re.compile(r"^(?P<name>[A-Za-z0-9_.\-\[\],]+)\s*@\s*git\+\S+@\S+$")
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
IGNORED_WHEN_COPYING = (
    ".git", ".venv", "_build", "build", "dist", "__pycache__", "*.egg-info", ".pytest_cache",
    ".ipynb_checkpoints",
)


class InstallError(RuntimeError):
    """A pip command of the install failed; the message holds the command and pip's output."""


def all_chapters() -> list[Path]:
    """Every chapter notebook, part by part in the book's order."""
    return [nb for part in CHAPTER_PARTS for nb in sorted((ROOT / "book" / part).glob("*.ipynb"))]


def preinstalled_requirements() -> list[str]:
    """jax, flax and optax with pyproject.toml's ranges (``pip --upgrade`` then takes the newest)."""
    dependencies = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    found = {}
    for spec in dependencies:
        name = re.split(r"[\s<>=!~;\[]", spec, maxsplit=1)[0].lower()
        if name in PREINSTALLED:
            found[name] = spec
    missing = [name for name in PREINSTALLED if name not in found]
    if missing:
        raise ValueError(f"pyproject.toml lists no range for {', '.join(missing)}; add them to [project].dependencies.")
    return [found[name] for name in PREINSTALLED]


def colab_install_lines(chapter: Path) -> list[str]:
    """The ``%pip install ...`` lines of a chapter's Colab cell, as written there."""
    cells = json.loads(chapter.read_text())["cells"]
    lines = []
    for cell in cells:
        source = cell["source"] if isinstance(cell["source"], str) else "".join(cell["source"])
        if cell["cell_type"] == "code" and "%pip install" in source:
            lines += [line.strip() for line in source.splitlines() if line.strip().startswith("%pip install")]
    if not lines:
        raise ValueError(f"{chapter.relative_to(ROOT)} has no Colab install cell (%pip install ...).")
    return lines


def pip_arguments(line: str, source_uri: str) -> list[str]:
    """``%pip install ARGS`` -> ``install ARGS`` with the git requirement pointing at ``source_uri``."""
    words = shlex.split(line)
    if words[:2] != ["%pip", "install"]:
        raise ValueError(f"not a %pip install line: {line!r}")
    arguments = ["install"]
    for word in words[2:]:
        match = GIT_REQUIREMENT.match(word)
        arguments.append(f"{match['name']} @ {source_uri}" if match else word)
    return arguments


def copy_checkout(destination: Path) -> str:
    """Copy this checkout (without build products) and return its ``file://`` URI for pip."""
    shutil.copytree(ROOT, destination, ignore=shutil.ignore_patterns(*IGNORED_WHEN_COPYING))
    return destination.resolve().as_uri()


def _pip(python: Path, arguments: list[str], log: list[str]) -> None:
    command = [str(python), "-m", "pip", *arguments]
    log.append(shlex.join(["pip", *arguments]))
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        output = (result.stdout + result.stderr).strip().splitlines()
        output = [line for line in output if "is ignored: it is neither a file nor a directory" not in line]
        raise InstallError(f"`{log[-1]}` failed (exit {result.returncode}):\n" + "\n".join(output[-40:]))


def install(venv: Path, chapters: list[Path], log: list[str]) -> Path:
    """Create ``venv`` afresh and install the book in it as Colab does; return its Python."""
    if venv.exists():
        shutil.rmtree(venv)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    _pip(python, ["install", "--quiet", "--upgrade", *preinstalled_requirements(), *RUNTIME], log)
    cells = {tuple(colab_install_lines(chapter)) for chapter in chapters}
    if len(cells) != 1:
        raise ValueError("the chapters' Colab install cells differ; they must install the same way:\n" + "\n".join(map(str, cells)))
    with tempfile.TemporaryDirectory(prefix="drift-") as scratch:
        source_uri = copy_checkout(Path(scratch) / "layernorm-companion")
        for line in cells.pop():
            _pip(python, pip_arguments(line, source_uri), log)
    return python


def installed_versions(python: Path) -> dict[str, str]:
    listing = subprocess.run(
        [str(python), "-m", "pip", "list", "--format=json"], capture_output=True, text=True, check=True
    ).stdout
    versions = {item["name"].lower().replace("_", "-"): item["version"] for item in json.loads(listing)}
    python_version = subprocess.run(
        [str(python), "-c", "import platform; print(platform.python_version())"], capture_output=True, text=True, check=True
    ).stdout.strip()
    return {"python": python_version} | {name: versions.get(name, "not installed") for name in REPORTED}


def doctor(python: Path) -> dict:
    """``python -m companion doctor`` in the new environment: JAX works, neural-tangents imports
    through companion.nt, and every path of it the book uses agrees with a closed form or with the
    book's own code (``companion.nt.nt_self_check``)."""
    env = os.environ | {"COMPANION_PROFILE": "ci", "COMPANION_PROGRESS": "0"}
    result = subprocess.run([str(python), "-m", "companion", "doctor"], capture_output=True, text=True, env=env)
    return {"ok": result.returncode == 0, "output": (result.stdout + result.stderr).strip()}


def newest_on_index(python: Path) -> dict[str, str]:
    """The newest release of jax, flax and optax that pip can install with this Python."""
    newest = {}
    for name in PREINSTALLED:
        result = subprocess.run(
            [str(python), "-m", "pip", "index", "versions", name], capture_output=True, text=True
        )
        match = re.search(rf"^{name} \(([^)]+)\)", result.stdout, flags=re.MULTILINE)
        newest[name] = match.group(1) if match else "unknown"
    return newest


def _shown(path: Path) -> str:
    """A chapter's path relative to the repository when it is inside it."""
    path = path.resolve()
    return path.relative_to(ROOT).as_posix() if path.is_relative_to(ROOT) else str(path)


# --- step 3, run inside the new environment --------------------------------------------------------


def _execute_chapters(chapters: list[str], out: Path) -> None:
    """Execute each chapter with nbclient and write what happened to ``out`` (JSON)."""
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    results = []
    for chapter in map(Path, chapters):
        notebook = nbformat.read(chapter, as_version=4)
        client = NotebookClient(
            notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(chapter.parent)}}
        )
        start = time.perf_counter()
        error = None
        try:
            client.execute()
        except CellExecutionError:
            pass  # the failing cell carries the error output, found below
        except Exception as exception:  # a dead kernel or a cell timeout: no error output to find
            error = f"{type(exception).__name__}: {exception}"
        seconds = time.perf_counter() - start
        failed_cell, stderr = None, []
        for index, cell in enumerate(notebook.cells):
            for output in cell.get("outputs", []):
                if output.get("output_type") == "stream" and output.get("name") == "stderr":
                    stderr.append({"cell": index, "text": output["text"]})
                if output.get("output_type") == "error" and failed_cell is None:
                    failed_cell = {
                        "cell": index,
                        "source": cell.source,
                        "error": f"{output['ename']}: {output['evalue']}",
                        "traceback": ANSI.sub("", "\n".join(output.get("traceback", []))),
                    }
        if error and failed_cell is None:
            failed_cell = {"cell": None, "source": "", "error": error, "traceback": ""}
        results.append({
            "chapter": _shown(chapter),
            "ok": failed_cell is None,
            "seconds": round(seconds, 1),
            "failed_cell": failed_cell,
            "stderr": stderr,
        })
    out.write_text(json.dumps(results, indent=1))


def execute(python: Path, chapters: list[Path], workdir: Path) -> list[dict]:
    """Run step 3 in the environment of ``python``, with the ci profile and its own kernel."""
    out = workdir / "chapters.json"
    env = os.environ | {
        "COMPANION_PROFILE": "ci",
        "COMPANION_PROGRESS": "0",
        # The kernel must be the new environment's: its ipykernel's "python3" spec (whose "python"
        # jupyter_client replaces by this interpreter) comes first, before any user's or system's.
        "JUPYTER_PATH": str(python.parent.parent / "share" / "jupyter"),
        "JUPYTER_DATA_DIR": str(workdir / "jupyter-data"),
    }
    subprocess.run(
        [str(python), str(Path(__file__).resolve()), "--execute-into", str(out), *map(str, chapters)],
        env=env, check=True,
    )
    return json.loads(out.read_text())


# --- the report -------------------------------------------------------------------------------------


def render(facts: dict) -> str:
    chapters = facts["chapters"]
    failed = [c for c in chapters if not c["ok"]]
    versions = facts.get("versions", {})
    doctor_failed = not facts.get("doctor", {"ok": True})["ok"]
    if facts.get("error"):
        title = "the Colab install of the book, or the run of its chapters, failed"
    elif doctor_failed:
        title = "`python -m companion doctor` fails on the newest JAX, flax and optax"
    elif failed:
        title = f"{len(failed)} of {len(chapters)} chapter(s) failed on the newest JAX, flax and optax"
    else:
        title = f"All {len(chapters)} chapter(s) passed on the newest JAX, flax and optax"
    lines = [f"## Drift check: {title}", ""]
    if versions:
        stack = ", ".join(f"{name} {version}" for name, version in versions.items())
        lines += [f"Installed: {stack}.", ""]
    if facts.get("newest"):
        newest = ", ".join(f"{name} {version}" for name, version in facts["newest"].items())
        lines += [f"Newest on the package index for this Python: {newest}.", ""]
    lines += ["Install commands (the Colab cell's, with the package from this checkout):", "", "```"]
    lines += facts["commands"] + ["```", ""]
    if facts.get("error"):
        lines += ["```", facts["error"], "```", ""]
    if facts.get("doctor"):
        summary = "passed" if facts["doctor"]["ok"] else "FAILED"
        lines += [f"<details><summary>python -m companion doctor {summary}</summary>", "", "```",
                  facts["doctor"]["output"], "```", "</details>", ""]
    if chapters:
        lines += ["| chapter | status | seconds |", "|---|---|---|"]
        lines += [f"| {c['chapter']} | {'ok' if c['ok'] else 'FAILED'} | {c['seconds']} |" for c in chapters]
        lines.append("")
    for chapter in failed:
        cell = chapter["failed_cell"]
        where = f"cell {cell['cell']}" if cell["cell"] is not None else "execution"
        lines += [f"### {chapter['chapter']}: {where} failed", "", f"**{cell['error']}**", ""]
        if cell["source"]:
            lines += ["```python", cell["source"], "```", ""]
        if cell["traceback"]:
            lines += ["<details><summary>traceback</summary>", "", "```", cell["traceback"][-6000:], "```", "</details>", ""]
    for chapter in chapters:
        if chapter["stderr"]:
            text = "".join(f"[cell {s['cell']}] {s['text']}" for s in chapter["stderr"])
            lines += [
                f"<details><summary>{chapter['chapter']} wrote to stderr (warnings do not fail this check)</summary>",
                "", "```", text[-4000:], "```", "</details>", "",
            ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("chapters", nargs="*", type=Path, help="chapter notebooks (default: every chapter)")
    parser.add_argument("--venv", type=Path, default=ROOT / "_build" / "drift" / "venv", help="where to create the environment (replaced)")
    parser.add_argument("--report", type=Path, default=ROOT / "_build" / "drift" / "report.md", help="the Markdown report; a .json twin is written beside it")
    parser.add_argument("--execute-into", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    chapters = [path.resolve() for path in args.chapters] or all_chapters()

    if args.execute_into:  # step 3, inside the new environment
        _execute_chapters([str(c) for c in chapters], args.execute_into)
        return 0

    for chapter in chapters:
        if not chapter.is_file() or chapter.suffix != ".ipynb":
            parser.error(f"{chapter} is not a chapter notebook (book/<part>/<name>.ipynb)")
    args.report.parent.mkdir(parents=True, exist_ok=True)
    facts: dict = {"commands": [], "chapters": []}
    start = time.perf_counter()
    try:
        python = install(args.venv, chapters, facts["commands"])
        facts["install_seconds"] = round(time.perf_counter() - start, 1)
        facts["versions"] = installed_versions(python)
        facts["newest"] = newest_on_index(python)
        facts["doctor"] = doctor(python)
        facts["chapters"] = execute(python, chapters, args.report.parent)
    except (InstallError, ValueError, subprocess.CalledProcessError) as error:
        facts["error"] = f"{type(error).__name__}: {error}"
    facts["seconds"] = round(time.perf_counter() - start, 1)
    text = render(facts)
    args.report.write_text(text + "\n")
    args.report.with_suffix(".json").write_text(json.dumps(facts, indent=1) + "\n")
    print(text)
    ok = not facts.get("error") and facts.get("doctor", {}).get("ok", False) and all(c["ok"] for c in facts["chapters"])
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
