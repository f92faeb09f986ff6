"""requirements.lock and environment.yml name the same verified stack (conda cannot run here)."""

from __future__ import annotations

import re

import yaml

from conftest import ROOT

# An exact pin, optionally for some platforms only (``name==version ; marker``).
PIN = re.compile(r"^([A-Za-z0-9_.\-]+)==([^\s;#]+)(?:\s*;\s*(.+))?$")


def _lock() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        match = PIN.match(line)
        assert match, f"requirements.lock line is not an exact pin: {line!r}"
        pins[match.group(1).lower().replace("_", "-")] = match.group(2)
    return pins


def test_lock_pins_the_verified_stack() -> None:
    pins = _lock()
    verified = {
        "jax": "0.9.2", "jaxlib": "0.9.2", "flax": "0.12.6", "optax": "0.2.8",
        "neural-tangents": "0.6.5", "jupyter-book": "1.0.4.post1",
    }
    assert {name: pins.get(name) for name in verified} == verified
    assert "tensorflow" not in pins, "neural-tangents must be installed without TensorFlow"


def test_every_platform_gets_exactly_one_xgboost() -> None:
    """xgboost-cpu has no macOS wheels: a Mac installs the same version of the regular package."""
    from packaging.markers import Marker

    lines = [line for line in (ROOT / "requirements.lock").read_text().splitlines() if line.startswith("xgboost")]
    pins = [PIN.match(line) for line in lines]
    assert all(pins) and {m.group(1) for m in pins} == {"xgboost", "xgboost-cpu"}, lines
    assert len({m.group(2) for m in pins}) == 1, "both builds must be the same version"
    for platform in ("linux", "darwin", "win32"):
        chosen = [m.group(1) for m in pins if Marker(m.group(3)).evaluate({"sys_platform": platform})]
        assert chosen == (["xgboost"] if platform == "darwin" else ["xgboost-cpu"]), (platform, chosen)
    other = [line for line in (ROOT / "requirements.lock").read_text().splitlines()
             if ";" in line and not line.startswith(("#", "xgboost"))]
    assert not other, f"only the xgboost pins are platform-specific: {other}"


def test_environment_yml_names_exactly_the_lock() -> None:
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    deps = env["dependencies"]
    assert "python=3.11" in deps
    pip_section = next(d["pip"] for d in deps if isinstance(d, dict) and "pip" in d)
    pins = {}
    for line in pip_section:
        match = PIN.match(line)
        assert match, f"environment.yml pip entry is not an exact pin: {line!r}"
        pins[match.group(1).lower().replace("_", "-")] = match.group(2)
    lock = _lock()
    # neural-tangents needs `pip install --no-deps`, which conda's pip section cannot express;
    # the file's header gives that command.
    assert lock.pop("neural-tangents") == "0.6.5"
    assert pins == lock, "environment.yml is out of date; regenerate it with tools/update-lock.sh"
    assert "pip install --no-deps neural-tangents==0.6.5" in (ROOT / "environment.yml").read_text()


def test_pyproject_ranges_admit_the_lock() -> None:
    import tomllib

    from packaging.requirements import Requirement

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    lock = _lock()
    for spec in project["dependencies"]:
        req = Requirement(spec)
        name = req.name.lower().replace("_", "-")
        assert name in lock, f"{name} is a dependency but not in requirements.lock"
        assert req.specifier.contains(lock[name]), f"{name}=={lock[name]} is outside pyproject's {req.specifier}"
    jax_floor = Requirement(next(d for d in project["dependencies"] if d.startswith("jax")))
    assert jax_floor.specifier.contains("0.5.3"), "the package must install next to older preinstalled JAX"
