"""The book: execution time of each chapter in the ``ci`` profile.

Read from the execution records that the book build keeps (jupyter-cache, in
``<build>/.jupyter_cache``), so no chapter is executed twice: run ``make book`` (or the test
suite's build) first. ``--execute`` instead executes each chapter's notebook with nbclient here.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from common import ROOT, load_average


def _chapters() -> list[Path]:
    import yaml

    def files(node: object) -> list[str]:
        if isinstance(node, dict):
            return [v for k, v in node.items() if k == "file"] + [f for v in node.values() for f in files(v)]
        if isinstance(node, list):
            return [f for item in node for f in files(item)]
        return []

    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    return [ROOT / f"{f}.ipynb" for f in files(toc) if (ROOT / f"{f}.ipynb").exists()]


def from_cache(build: Path) -> list[dict]:
    """Execution seconds of every page the build executed, from its jupyter-cache records."""
    from jupyter_cache import get_cache

    folder = build / ".jupyter_cache"
    if not folder.is_dir():
        raise SystemExit(f"no execution records in {folder}: build the book first (make book) or pass --execute-chapters")
    latest = {}
    for record in get_cache(folder).list_cache_records():
        path = Path(record.uri).resolve()
        if path.is_relative_to(ROOT) and (path not in latest or record.created > latest[path].created):
            latest[path] = record
    return [{"chapter": path.relative_to(ROOT).with_suffix("").as_posix(),
             "seconds": float(record.data["execution_seconds"]), "source": "jupyter-cache"}
            for path, record in sorted(latest.items()) if "execution_seconds" in (record.data or {})]


def execute() -> list[dict]:
    import nbclient
    import nbformat

    rows = []
    env = {"COMPANION_PROFILE": "ci", "COMPANION_PROGRESS": "0"}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        for chapter in _chapters():
            nb = nbformat.read(chapter, as_version=4)
            start = time.perf_counter()
            nbclient.NotebookClient(nb, timeout=600, resources={"metadata": {"path": str(chapter.parent)}}).execute()
            rows.append({"chapter": chapter.relative_to(ROOT).with_suffix("").as_posix(),
                         "seconds": time.perf_counter() - start, "source": "nbclient"})
            print(f"  {rows[-1]['chapter']}: {rows[-1]['seconds']:.0f}s", flush=True)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return rows


def run(mode: str, build: Path | None = None, execute_chapters: bool = False) -> dict:
    before = load_average()
    rows = execute() if execute_chapters else from_cache(build or ROOT / "_build")
    return {"load_before": before, "load_after": load_average(), "profile": "ci", "chapters": rows,
            "total_seconds": sum(r["seconds"] for r in rows)}
