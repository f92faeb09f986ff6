"""``python -m companion doctor``: is this environment able to run the book?

Prints the versions of the stack, the devices JAX sees, the active profile, the data directory
(and checks the protein data file when it is there) and whether neural-tangents imports through
:mod:`companion.nt`. Exits with status 1 when something is broken, and says how to fix it. It
always prints its report: a check that crashes is reported as a failed check.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import os
import platform
import sys
from collections.abc import Callable
from pathlib import Path

from packaging.markers import Marker

__all__ = ["Check", "run_checks", "main"]

#: Distributions whose versions the doctor reports (and compares with requirements.lock when present).
PACKAGES = (
    "jax", "jaxlib", "flax", "optax", "neural-tangents", "numpy", "scipy", "matplotlib",
    "jupyter-book", "myst-nb", "jupytext",
)


@dataclasses.dataclass
class Check:
    """The outcome of one check: its name, whether it passed, what was found, and how to fix it."""

    name: str
    ok: bool
    detail: str
    fix: str = ""


def _lock_pins() -> dict[str, str]:
    lock = Path(__file__).resolve().parents[2] / "requirements.lock"
    pins: dict[str, str] = {}
    if lock.is_file():
        for line in lock.read_text().splitlines():
            if "==" in line and not line.lstrip().startswith("#"):
                name, version = line.split("==", 1)
                version, _, marker = version.partition(";")  # e.g. `; sys_platform == "darwin"`
                if marker.strip() and not Marker(marker.strip()).evaluate():
                    continue
                pins[name.strip().lower().replace("_", "-")] = version.strip()
    return pins


def _versions() -> Check:
    pins = _lock_pins()
    parts, drift = [], []
    for name in PACKAGES:
        try:
            version = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            version = "not installed"
        parts.append(f"{name} {version}")
        pinned = pins.get(name)
        if pinned and version != pinned and version != "not installed":
            drift.append(f"{name} {version} (lock: {pinned})")
    detail = ", ".join(parts)
    if drift:
        detail += "\n      differs from requirements.lock: " + ", ".join(drift)
    return Check("versions", True, detail)


def _python() -> Check:
    version = platform.python_version()
    ok = sys.version_info >= (3, 11)
    note = "" if sys.version_info[:2] == (3, 11) else " (the lock is verified on 3.11)"
    return Check("python", ok, version + note, "" if ok else "use Python 3.11 (see README)")


def _jax_platforms_fix() -> str:
    platforms = os.environ.get("JAX_PLATFORMS", "").strip()
    if platforms:
        return (f"$JAX_PLATFORMS={platforms} asks for a backend JAX cannot start here: unset it (or set it to cpu), "
                f"or install the matching jaxlib (see README)")
    return "pip install --no-deps -r requirements.lock"


def _jax() -> Check:
    try:
        import jax
        import jax.numpy as jnp

        devices = ", ".join(f"{d.platform}:{d.device_kind}" for d in jax.devices())
        value = float(jax.jit(lambda a: (a @ a).sum())(jnp.ones((4, 4))))
        if value != 64.0:
            return Check("jax", False, f"a 4x4 matrix product gave {value}, expected 64", "reinstall jaxlib")
        return Check("jax", True, f"devices: {devices}; x64 {'on' if jax.config.jax_enable_x64 else 'off'}")
    except Exception as error:  # report, do not crash: this is a diagnostic tool
        return Check("jax", False, f"{type(error).__name__}: {error}".rstrip(": "), _jax_platforms_fix())


def _profile() -> Check:
    from companion import profile, progress

    try:
        name = profile.active()
    except profile.UnknownProfileError as error:
        return Check("profile", False, str(error), f"unset ${profile.ENV_VAR} or set it to ci or full")
    except Exception as error:  # the default needs JAX's devices; a broken JAX is reported by the jax check
        return Check("profile", False, f"cannot choose the default profile: {type(error).__name__}: {error}",
                     f"fix the jax check above, or set ${profile.ENV_VAR}=ci or full")
    try:
        bars = "on" if progress.enabled() else "off"
    except ValueError as error:
        return Check("profile", False, str(error), f"unset ${progress.ENV_VAR} or set it to 1 or 0")
    return Check("profile", True, f"{name} (${profile.ENV_VAR}); progress bars {bars}")


def _data() -> Check:
    from companion import data
    from companion.data import casp

    path = data.data_dir()
    chosen = bool(os.environ.get(data.ENV_VAR, "").strip())
    where = f"{path} (${data.ENV_VAR})"
    if path.exists() and not path.is_dir():
        return Check("data", False, f"{where} is a file, not a folder", f"point ${data.ENV_VAR} at the folder that holds {casp.FILENAME}")
    if not path.is_dir():
        if chosen:
            return Check("data", False, f"{where} does not exist",
                         f"create it and put {casp.FILENAME} there, or unset ${data.ENV_VAR} to download into the user cache")
        return Check("data", True, f"{where} [not created yet (downloads will create it)]")
    csv = path / casp.FILENAME
    if not csv.exists():
        note = "no CASP.csv: the protein chapter will fail" if chosen else "CASP.csv will be downloaded on first use"
        return Check("data", True, f"{where} [exists; {note}]")
    try:
        casp.read(csv)
    except (ValueError, OSError) as error:
        fix = (f"replace {csv} with the published file (UCI data set 265)" if chosen
               else f"delete {csv}; it is downloaded again on first use")
        return Check("data", False, str(error).split(";")[0], fix)
    return Check("data", True, f"{where} [exists; {casp.FILENAME} checked]")


def _neural_tangents() -> Check:
    try:
        from companion.nt import nt, nt_self_check, patched_names

        checked = nt_self_check()  # every neural-tangents path the book uses; raises when one is wrong
        shim = f"{len(patched_names)} JAX names shimmed" if patched_names else "no shim needed"
        return Check("neural-tangents", True, f"{nt.__version__} imports via companion.nt ({shim}); {checked}")
    except Exception as error:
        return Check(
            "neural-tangents", False, f"{type(error).__name__}: {error}",
            "pip install --no-deps neural-tangents==0.6.5 frozendict (and jax<=0.9.2)",
        )


CHECKS: tuple[Callable[[], Check], ...] = (_python, _versions, _jax, _profile, _data, _neural_tangents)


def _run(check: Callable[[], Check]) -> Check:
    name = check.__name__.strip("_").replace("_", "-")
    try:
        return check()
    except Exception as error:  # a diagnostic tool reports, it does not crash
        return Check(name, False, f"the check itself failed: {type(error).__name__}: {error}",
                     "pip install --no-deps -r requirements.lock")


def run_checks() -> list[Check]:
    """Run every check; never raises."""
    return [_run(check) for check in CHECKS]


def main() -> int:
    """Print the report; return 0 when every check passed, else 1."""
    checks = run_checks()
    try:
        version = importlib.metadata.version("layernorm-companion")
    except importlib.metadata.PackageNotFoundError:
        version = "not installed, imported from source"
    print(f"companion doctor (layernorm-companion {version})")
    for check in checks:
        print(f"  [{'ok' if check.ok else 'FAIL'}] {check.name:16s} {check.detail}")
        if not check.ok:
            print(f"         fix: {check.fix}")
    failed = [c.name for c in checks if not c.ok]
    print("all good" if not failed else f"{len(failed)} problem(s): {', '.join(failed)}")
    return 1 if failed else 0
