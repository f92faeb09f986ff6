"""Small result files of long runs, with provenance, that the chapters show beside their live runs.

A ``full``-profile experiment (the paper's protocol) can take hours without a GPU. Its command,
``python -m companion run <experiment> --profile full``, therefore writes one small JSON file per
(method, seed) as soon as that run finishes, skips the files that already exist when it is started
again, and keeps a ``summary.json`` with the aggregated numbers and their provenance (configuration,
package versions, devices, dates, wall time, git commit). The files are committed, so the book shows
the paper-scale numbers while building in minutes.

Layout::

    artefacts/<experiment>/<profile>/summary.json
    artefacts/<experiment>/<profile>/runs/<method>/seed-<k>.json

The root is ``$COMPANION_ARTEFACTS`` when set, else the ``artefacts/`` folder of the source checkout
this package was installed from (``None`` for an installation without a checkout, e.g. Colab).

Guarantees (``tests/test_faults.py``):

* the output folder is checked before any computation (:func:`output_folder`): a file, a folder that
  cannot be written, a folder in use by another run, or a summary of another experiment or profile
  is one clear error at once;
* every file is written atomically (:func:`write_json`): readers never see a half-written file;
* one run at a time writes into a folder (a lock held until the process exits);
* before anything is trained, every saved run of the folder is checked against the configuration
  and against how many seeds were trained at a time (:func:`resume`), so a resumed folder never
  mixes results of different settings.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import importlib.metadata
import json
import numbers
import os
import platform
import re
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from companion import safe_files

__all__ = [
    "ENV_VAR", "VERSIONED", "root", "directory", "output_folder", "read_summary", "command_line", "fingerprint",
    "provenance", "write_summary", "write_json", "read_json", "slug", "run_path", "load_run", "save_run", "resume", "Saved", "catalogue",
]

ENV_VAR = "COMPANION_ARTEFACTS"
#: Distributions whose versions every artefact records.
VERSIONED = ("jax", "jaxlib", "flax", "optax", "numpy", "scipy", "pandas", "statsmodels", "xgboost-cpu", "xgboost", "layernorm-companion")
_CHECKOUT = Path(__file__).resolve().parents[2]


def root() -> Path | None:
    """``$COMPANION_ARTEFACTS``, else ``artefacts/`` of the source checkout, else ``None``."""
    value = os.environ.get(ENV_VAR, "").strip()
    if value:
        return Path(value).expanduser().resolve()
    if (_CHECKOUT / "pyproject.toml").is_file() and (_CHECKOUT / "src" / "companion").is_dir():
        return _CHECKOUT / "artefacts"
    return None


def directory(experiment: str, profile: str) -> Path | None:
    """Where the artefacts of ``experiment`` in ``profile`` live (``None`` without a checkout)."""
    base = root()
    return None if base is None else base / experiment / profile


def output_folder(experiment: str, profile: str, out: Path | str | None = None, *,
                  summary_of: tuple[str, str] | None = None) -> Path:
    """Where a run of ``experiment`` in ``profile`` writes: ``out``, else :func:`directory`.

    Checked before anything is computed: the folder is created, must be writable and must not hold
    a summary of another experiment or profile (``summary_of``: the ``(experiment, profile)`` that
    this run's ``summary.json`` states, when it differs from the folder's names); it is then locked for this process, so that a
    second run into it fails at once instead of duplicating (and overwriting) the work.
    """
    folder = Path(out) if out is not None else directory(experiment, profile)
    if folder is None:
        raise ValueError("this installation has no source checkout to keep artefacts in; pass an output folder (--out)")
    if folder.exists() and not folder.is_dir():
        raise NotADirectoryError(f"the output folder {folder} is a file; pass a folder (--out) that is not a file")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with safe_files.temporary_path(folder / "write-test"):
            pass
    except OSError as error:
        raise PermissionError(
            f"cannot write into the output folder {folder} ({error.strerror or type(error).__name__}); "
            f"choose a writable folder (--out)"
        ) from None
    safe_files.claim(folder, f"the {experiment} output folder")
    summary = folder / "summary.json"
    if summary.is_file():
        content = read_json(summary)
        found = (content.get("experiment"), content.get("profile")) if isinstance(content, dict) else (None, None)
        expected = summary_of or (experiment, profile)
        if found != expected:
            raise ValueError(
                f"{summary} is the summary of {found[0] or 'something else'} ({found[1] or '?'} profile), not of "
                f"{expected[0]} ({expected[1]} profile); choose another output folder (--out) or move it away"
            )
    return folder


def read_summary(experiment: str, profile: str, folder: Path | None = None) -> dict[str, Any] | None:
    """The ``summary.json`` of ``experiment`` in ``profile`` (from ``folder`` if given; ``None`` when absent)."""
    folder = folder or directory(experiment, profile)
    if folder is None or not (folder / "summary.json").is_file():
        return None
    return _object(folder / "summary.json")


def command_line(experiment: str, description: str, argv: Sequence[str] | None,
                 seeds_at_once: str | None = None) -> Any:
    """Parse ``python -m companion run <experiment>``'s ``--profile`` and ``--out`` (and, given its
    help text, ``--seeds-at-once``); a ``--profile`` is also exported to ``$COMPANION_PROFILE``, so
    that it wins for what reads the profile itself (progress bars)."""
    import argparse

    from companion import profile as profiles

    def positive(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = 0
        if value < 1:
            raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
        return value

    parser = argparse.ArgumentParser(prog=f"python -m companion run {experiment}", description=description)
    parser.add_argument("--profile", choices=profiles.PROFILES, type=profiles.normalise,
                        help="default: $COMPANION_PROFILE, else full on a GPU, else ci")
    parser.add_argument("--out", type=Path,
                        help=f"output folder (default: artefacts/{experiment}/<profile>/ of the checkout)")
    if seeds_at_once is not None:
        parser.add_argument("--seeds-at-once", type=positive, metavar="N", help=seeds_at_once)
    args = parser.parse_args(argv)
    if args.profile:
        os.environ[profiles.ENV_VAR] = args.profile
    return args


def slug(label: str) -> str:
    """File-name form of a method label: ``"LN every"`` -> ``"ln-every"``."""
    return re.sub(r"[^a-z0-9]+", "-", label.lower()).strip("-")


def fingerprint(config: Any) -> str:
    """Short hash of a (dataclass) configuration: runs with different settings never mix."""
    fields = dataclasses.asdict(config) if dataclasses.is_dataclass(config) else dict(config)
    text = json.dumps(fields, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _git(*args: str) -> str | None:
    try:
        done = subprocess.run(["git", *args], cwd=_CHECKOUT, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def _version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def provenance() -> dict[str, Any]:
    """Date, device, platform, package versions and git commit of the run being recorded."""
    import jax

    devices = sorted({f"{d.platform}:{d.device_kind}" for d in jax.devices()})
    commit = _git("rev-parse", "HEAD")
    modified = _git("status", "--porcelain", "--", "src", "requirements.lock")
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "devices": devices,
        "machine": f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPU threads",
        "python": platform.python_version(),
        "versions": {name: _version(name) for name in VERSIONED if _version(name)},
        "commit": commit,
        "source_modified": bool(modified) if modified is not None else None,
    }


def write_summary(folder: Path, experiment: str, profile: str, config: Any, results: Any,
                  started: float) -> dict[str, Any]:
    """Write ``folder/summary.json`` of a run begun at ``time.perf_counter()`` = ``started``: experiment,
    profile, configuration (a dataclass), results, wall time and :func:`provenance`; return it."""
    summary = {"experiment": experiment, "profile": profile, "config": dataclasses.asdict(config),
               "results": results, "wall_seconds": time.perf_counter() - started, "provenance": provenance()}
    write_json(Path(folder) / "summary.json", summary)
    print(f"wrote {Path(folder) / 'summary.json'} ({summary['wall_seconds']:.0f} s)")
    return summary


def write_json(path: Path, content: dict[str, Any]) -> None:
    """Write ``content`` atomically, indented, with lists of numbers kept on one line."""
    text = json.dumps(content, indent=2, sort_keys=False)
    text = re.sub(r"\[\s+([-+0-9.eE,\s]+?)\s+\]", lambda m: "[" + re.sub(r"\s+", " ", m.group(1)) + "]", text)
    path.parent.mkdir(parents=True, exist_ok=True)
    safe_files.atomic_write(path, text + "\n")


def read_json(path: Path) -> dict[str, Any]:
    """Read an artefact file, with a clear error when it is damaged."""
    try:
        return json.loads(Path(path).read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"artefact {path} is not valid JSON ({error.msg}); delete it and rerun") from None


def _object(path: Path) -> dict[str, Any]:
    content = read_json(path)
    if not isinstance(content, dict):
        raise ValueError(f"artefact {path} holds a JSON {type(content).__name__}, not an object; delete it and rerun")
    return content


def run_path(folder: Path, method: str, seed: int) -> Path:
    """File of one (method, seed) run: ``<folder>/runs/<method slug>/seed-<seed>.json``."""
    return Path(folder) / "runs" / slug(method) / f"seed-{seed}.json"


def load_run(folder: Path, method: str, seed: int, config_fingerprint: str) -> dict[str, Any] | None:
    """The saved run, ``None`` if there is none; an error if it was made with another configuration."""
    path = run_path(folder, method, seed)
    if not path.is_file():
        return None
    content = _object(path)
    if content.get("config_fingerprint") != config_fingerprint:
        raise ValueError(
            f"{path} comes from another configuration (fingerprint {content.get('config_fingerprint')}, "
            f"this one is {config_fingerprint}); move the old results away or choose another output folder"
        )
    return content


def save_run(folder: Path, method: str, seed: int, content: dict[str, Any], config_fingerprint: str) -> None:
    """Save one run with the configuration's fingerprint."""
    write_json(run_path(folder, method, seed), content | {"config_fingerprint": config_fingerprint})


def _saved_batching(saved: dict[tuple[str, int], dict[str, Any]]) -> int | None:
    """How many seeds at a time the saved runs were trained with (``None`` for an empty folder).

    Runs record it (``seeds_at_once`` in their provenance); for runs saved before that, it is the
    largest group of seeds trained together."""
    origins = [c.get("provenance") or {} for c in saved.values()]
    recorded = {o["seeds_at_once"] for o in origins if "seeds_at_once" in o}
    legacy = [len(o.get("trained_with_seeds") or ()) for o in origins if "seeds_at_once" not in o]
    values = recorded | ({max(legacy)} if legacy and max(legacy) > 0 else set())
    return max(values) if values else None


def resume(
    folder: Path,
    methods: Sequence[str],
    seeds: Sequence[int],
    config_fingerprint: str,
    train: Callable[[str, list[int]], list[dict[str, Any]]],
    seeds_at_once: int | None,
    default_seeds_at_once: int = 1,
    on_saved: Callable[[], None] | None = None,
) -> None:
    """Train every (method, seed) without a saved run, ``seeds_at_once`` seeds per call of ``train``.

    ``train(method, seeds)`` returns one JSON-ready dict per seed; each is saved as soon as its
    call returns, with the :func:`provenance` of that call, the seeds trained together and
    ``seeds_at_once``. Before anything is trained, every saved run of ``methods`` is checked:
    another configuration is an error at once, and so is another ``seeds_at_once`` (vmapping
    another number of seeds changes results by rounding, see :mod:`companion.train`; one folder
    must not mix them). ``seeds_at_once=None`` continues with the folder's value, or
    ``default_seeds_at_once`` for a new folder. ``on_saved()`` is called after each call's runs are
    saved (e.g. to refresh a summary, so that an interrupted run leaves one).
    """
    if seeds_at_once is not None and (isinstance(seeds_at_once, bool) or not (
            isinstance(seeds_at_once, numbers.Integral) and seeds_at_once >= 1)):
        raise ValueError(f"seeds_at_once must be a positive integer, got {seeds_at_once!r}")
    Path(folder).mkdir(parents=True, exist_ok=True)
    safe_files.claim(Path(folder), "the output folder")
    saved = {(m, s): c for m in methods for s in seeds if (c := load_run(folder, m, s, config_fingerprint)) is not None}
    before = _saved_batching(saved)
    batch_size = int(seeds_at_once or before or default_seeds_at_once)
    if before is not None and batch_size != before and len(saved) < len(methods) * len(seeds):
        raise ValueError(
            f"the runs saved in {folder} were trained {before} seed(s) at a time, this run would train "
            f"{batch_size}; the number of seeds trained together changes results by rounding, so one folder "
            f"must not mix them: rerun with --seeds-at-once {before} (or without it) or choose another output folder"
        )
    for method in methods:
        todo = [s for s in seeds if (method, s) not in saved]
        if not todo:
            print(f"{method}: all {len(seeds)} seeds already in {folder}", flush=True)
        for start in range(0, len(todo), batch_size):
            batch = todo[start:start + batch_size]
            origin = provenance() | {"trained_with_seeds": batch, "seeds_at_once": batch_size}
            contents = train(method, batch)
            for seed, content in zip(batch, contents, strict=True):
                save_run(folder, method, seed, content | {"provenance": origin}, config_fingerprint)
            print(f"{method}: seed(s) {batch} saved", flush=True)
            if on_saved is not None:
                on_saved()


# ---- what the book's status page lists: every saved result with its provenance -----------------

@dataclasses.dataclass(frozen=True)
class Saved:
    """One saved result of an experiment and where it came from (a row of the status page).

    Read by :func:`catalogue` from either layout the experiments use: a ``summary.json`` of
    per-run files (the protein chapter) or one JSON file with a ``provenance`` record (the
    face-age chapter).
    """

    experiment: str
    profile: str
    path: Path
    dates: tuple[str, ...]
    devices: tuple[str, ...]
    wall_seconds: float | None
    versions: dict[str, str]
    commits: tuple[str, ...]
    complete: bool | None


def _first(*values: Any) -> Any:
    return next((v for v in values if v not in (None, "", [], {})), None)


def _strings(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    return tuple(str(v) for v in ([value] if isinstance(value, (str, int, float)) else value))


def _saved(path: Path, content: dict[str, Any]) -> Saved:
    origin = content.get("provenance") or {}
    profile = _first(content.get("profile"), path.parent.name if path.name == "summary.json" else None,
                     path.stem.rsplit("-", 1)[-1] if "-" in path.stem else None) or "?"
    wall = _first(content.get("wall_seconds"), origin.get("total seconds"),
                  origin.get("training seconds (incl. compilation)"))
    return Saved(
        experiment=str(content["experiment"]),
        profile=str(profile),
        path=path,
        dates=_strings(_first(content.get("run_dates"), origin.get("date"), origin.get("created"))),
        devices=_strings(_first(content.get("run_devices"), origin.get("devices"), origin.get("jax devices"))),
        wall_seconds=None if wall is None else float(wall),
        versions={str(k): str(v) for k, v in (origin.get("versions") or {}).items()},
        commits=_strings(_first(content.get("run_commits"), origin.get("commit"), origin.get("git commit"))),
        complete=content.get("complete"),
    )


def catalogue(checkout: Path | None = None) -> list[Saved]:
    """Every saved experiment result in a source checkout, with its provenance, sorted by path.

    Looks at ``artefacts/<experiment>/<profile>/summary.json`` (under :func:`root` for the default
    checkout) and at JSON files in ``book/<part>/results/``; a file counts when it names its
    ``experiment`` and carries a ``provenance`` record. Returns an empty list without a checkout.
    """
    if checkout is None:
        base = root()
        checkout = _CHECKOUT if (_CHECKOUT / "pyproject.toml").is_file() else None
    else:
        base = Path(checkout) / "artefacts"
    paths = sorted(base.glob("*/*/summary.json")) if base is not None and base.is_dir() else []
    if checkout is not None:
        paths += sorted(Path(checkout).glob("book/*/results/*.json"))
    found = []
    for path in paths:
        content = read_json(path)
        if isinstance(content, dict) and "experiment" in content and "provenance" in content:
            found.append(_saved(path, content))
    return found
