"""Nothing lost, nothing silent: the package under faults and bad input.

Each test reproduces one fault a careful user can meet and checks the guarantee that replaces it:

* results: the output folder is checked before any computation; files are written atomically;
  one run at a time writes into a folder; a folder never mixes configurations or batchings;
* the data cache: an interrupted download or extraction leaves no damaged ``CASP.csv``, concurrent
  first loads are safe, a damaged cached file is downloaded again, a trickling download stops;
* training: a diverged network is an error, bad arguments are one clear error;
* the command line and ``doctor``: one line per expected error, a report whatever is broken.

Run them with ``python -m pytest tests/test_faults.py``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from companion import artefacts, cli, doctor, safe_files
from companion.arch import MLPSpec
from companion.data import ENV_VAR, casp
from companion.train import fit
from conftest import ROOT
from test_casp import _Server, _synthetic_frame, _zip

ENV = os.environ | {"PYTHONPATH": str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}


def _python(code: str, **env: str | None) -> subprocess.Popen:
    environment = ENV | {k: v for k, v in env.items() if v is not None}
    for name in [k for k, v in env.items() if v is None]:
        environment.pop(name, None)
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], env=environment, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _finish(process: subprocess.Popen, timeout: float = 120) -> tuple[int, str, str]:
    out, err = process.communicate(timeout=timeout)
    return process.returncode, out, err


# ---- result folders: checked first, written atomically, one run at a time ------------------------

def _computing(*args: object, **kwargs: object) -> None:
    raise AssertionError("computation started before the output folder was checked")


EXPERIMENTS = {"protein": "load_split", "toy": "study", "bridge": "run", "bridge-seeds": "run"}


@pytest.mark.parametrize("experiment", sorted(EXPERIMENTS))
@pytest.mark.parametrize("case", ["file", "below a file"])
def test_a_bad_output_folder_is_one_line_before_any_compute(
        experiment: str, case: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    module = __import__(cli.EXPERIMENTS[experiment], fromlist=["_"])
    monkeypatch.setattr(module, EXPERIMENTS[experiment], _computing)
    blocker = tmp_path / "results.txt"
    blocker.write_text("not a folder")
    out = blocker if case == "file" else blocker / "run"
    assert cli.main(["run", experiment, "--profile", "ci", "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert ("is a file" if case == "file" else "cannot write into the output folder") in err


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root can write into read-only folders")
def test_a_read_only_output_folder_is_an_error_at_once(tmp_path: Path) -> None:
    locked_folder = tmp_path / "read-only"
    locked_folder.mkdir()
    locked_folder.chmod(0o500)
    try:
        with pytest.raises(PermissionError, match="cannot write into the output folder"):
            artefacts.output_folder("toy", "ci", locked_folder)
    finally:
        locked_folder.chmod(0o700)


def test_a_summary_of_another_profile_is_never_overwritten(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    from companion.experiments import toy

    monkeypatch.setattr(toy, "study", _computing)
    artefacts.write_json(tmp_path / "summary.json", {"experiment": "toy", "profile": "full", "results": {}})
    before = (tmp_path / "summary.json").read_text()
    assert cli.main(["run", "toy", "--profile", "ci", "--out", str(tmp_path)]) == 1
    assert "summary of toy (full profile), not of toy (ci profile)" in capsys.readouterr().err
    assert (tmp_path / "summary.json").read_text() == before


def test_concurrent_writers_never_show_a_half_written_file(tmp_path: Path) -> None:
    target = tmp_path / "runs" / "seed-0.json"
    writer = """
        from pathlib import Path
        from companion import artefacts
        for i in range(300):
            artefacts.write_json(Path({path!r}), {{"writer": {k}, "i": i, "values": list(range(2000))}})
    """
    writers = [_python(writer.format(path=str(target), k=k)) for k in range(2)]
    seen = 0
    while any(w.poll() is None for w in writers):
        if target.is_file():
            json.loads(target.read_text())  # never half-written
            seen += 1
    results = [_finish(w) for w in writers]
    assert all(code == 0 for code, _, _ in results), results
    assert seen > 0 and [p.name for p in target.parent.iterdir()] == ["seed-0.json"], "no temporary file left"


def test_a_second_run_into_the_same_folder_stops_at_once(tmp_path: Path) -> None:
    first = _python(f"""
        import time
        from companion import artefacts
        artefacts.output_folder("toy", "ci", {str(tmp_path)!r})
        print("claimed", flush=True)
        time.sleep(60)
    """)
    try:
        assert first.stdout.readline().strip() == "claimed", first.stderr.read()
        with pytest.raises(safe_files.FolderBusyError, match="another process is writing into the toy output folder"):
            artefacts.output_folder("toy", "ci", tmp_path)
    finally:
        first.kill()
        first.communicate()
    assert artefacts.output_folder("toy", "ci", tmp_path) == tmp_path  # free again once it exited


def test_a_study_whose_summary_names_itself_resumes_into_its_folder(tmp_path: Path) -> None:
    # The NTK column and the transformer ablation keep their folders under another experiment's
    # name: a rerun must accept the summary it wrote itself, and still refuse anyone else's.
    artefacts.write_json(tmp_path / "summary.json", {"experiment": "transformer-ablation", "profile": "ci"})
    folder = artefacts.output_folder("transformer", "ablation-ci", tmp_path, summary_of=("transformer-ablation", "ci"))
    assert folder == tmp_path
    with pytest.raises(ValueError, match="is the summary of transformer-ablation"):
        artefacts.output_folder("transformer", "ablation-ci", tmp_path)


# ---- resumable runs: the whole folder is checked first, seeds train in fixed groups --------------

def _trainer(calls: list) -> object:
    def train(method: str, seeds: list[int]) -> list[dict]:
        calls.append((method, list(seeds)))
        return [{"method": method, "seed": s} for s in seeds]
    return train


def test_another_configuration_anywhere_in_the_folder_stops_before_training(tmp_path: Path) -> None:
    artefacts.save_run(tmp_path, "second", 1, {"seed": 1}, config_fingerprint="old")
    calls: list = []
    with pytest.raises(ValueError, match="comes from another configuration"):
        artefacts.resume(tmp_path, ["first", "second"], range(2), "new", _trainer(calls), 1)
    assert calls == [], "nothing may be trained before the whole folder is checked"


def test_a_folder_never_mixes_numbers_of_seeds_trained_together(tmp_path: Path) -> None:
    calls: list = []
    artefacts.resume(tmp_path, ["net"], [0], "fp", _trainer(calls), 1)
    with pytest.raises(ValueError, match="trained 1 seed\\(s\\) at a time, this run would train 3.*--seeds-at-once 1"):
        artefacts.resume(tmp_path, ["net"], range(3), "fp", _trainer(calls), 3)
    assert calls == [("net", [0])]
    artefacts.resume(tmp_path, ["net"], range(3), "fp", _trainer(calls), None, default_seeds_at_once=3)
    assert calls == [("net", [0]), ("net", [1]), ("net", [2])], "without a choice, the folder's batching continues"
    assert artefacts.load_run(tmp_path, "net", 2, "fp")["provenance"]["seeds_at_once"] == 1


def test_a_run_file_holding_a_list_is_a_clear_error(tmp_path: Path) -> None:
    path = artefacts.run_path(tmp_path, "net", 0)
    path.parent.mkdir(parents=True)
    path.write_text("[1, 2]")
    with pytest.raises(ValueError, match="holds a JSON list, not an object; delete it and rerun"):
        artefacts.load_run(tmp_path, "net", 0, "fp")


# ---- the CASP cache: atomic, safe to share, repaired, with a deadline ---------------------------

@pytest.fixture(scope="module")
def server() -> object:
    s = _Server()
    yield s
    s.httpd.shutdown()
    s.httpd.server_close()


@pytest.fixture(scope="module")
def published(tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, str]:
    """The real CASP.csv when $COMPANION_DATA_DIR has it, else a synthetic one, and its SHA-256."""
    real = Path(os.environ.get(ENV_VAR, "") or "missing") / casp.FILENAME
    if real.is_file():
        return real.read_bytes(), casp.SHA256
    path = tmp_path_factory.mktemp("synthetic") / casp.FILENAME
    _synthetic_frame().to_csv(path, index=False)
    import hashlib

    return path.read_bytes(), hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, server: _Server, published: tuple[bytes, str]) -> Path:
    """A user cache served by the loopback server (no $COMPANION_DATA_DIR)."""
    server.payloads["/casp.zip"] = _zip({casp.FILENAME: published[0]})
    monkeypatch.delenv(ENV_VAR, raising=False)
    monkeypatch.setattr(casp, "data_dir", lambda: tmp_path / "cache")
    monkeypatch.setattr(casp, "URL", f"{server.url}/casp.zip")
    monkeypatch.setattr(casp, "SHA256", published[1])
    return tmp_path / "cache"


def test_an_interrupted_extraction_leaves_no_damaged_file(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def interrupted(source: object, sink: object) -> None:
        sink.write(source.read(100_000))
        raise KeyboardInterrupt  # Ctrl-C (or a full disk) halfway through

    monkeypatch.setattr(casp.shutil, "copyfileobj", interrupted)
    with pytest.raises(KeyboardInterrupt):
        casp.load()
    assert list(cache.iterdir()) == [], "neither a truncated CASP.csv nor a temporary file may be left"
    monkeypatch.undo()


def test_a_damaged_cached_file_is_downloaded_again(
        cache: Path, published: tuple[bytes, str], capsys: pytest.CaptureFixture) -> None:
    cache.mkdir()
    (cache / casp.FILENAME).write_bytes(published[0][: len(published[0]) // 3])  # a truncated earlier download
    assert casp.load().shape == (casp.N_ROWS, 10)
    assert (cache / casp.FILENAME).read_bytes() == published[0]
    assert "damaged" in capsys.readouterr().out


def test_a_damaged_file_in_the_data_folder_says_how_to_fix_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                               published: tuple[bytes, str]) -> None:
    (tmp_path / casp.FILENAME).write_bytes(published[0][: len(published[0]) // 3])
    monkeypatch.setenv(ENV_VAR, str(tmp_path))
    with pytest.raises(ValueError, match="truncated or edited; delete it and download it again"):
        casp.load()


def test_three_first_loads_at_once_all_succeed(
        tmp_path: Path, server: _Server, published: tuple[bytes, str]) -> None:
    server.payloads["/slow.zip"] = archive = _zip({casp.FILENAME: published[0]})
    server.trickle["/slow.zip"] = (len(archive) // 20 + 1, 0.1)  # about 2 s per download
    script = f"""
        from pathlib import Path
        from companion.data import casp
        casp.data_dir = lambda: Path({str(tmp_path / 'cache')!r})
        casp.URL, casp.SHA256 = {server.url + '/slow.zip'!r}, {published[1]!r}
        print(len(casp.load()))
    """
    loads = [_python(script, **{ENV_VAR: None}) for _ in range(3)]
    results = [_finish(p) for p in loads]
    assert [(code, out.strip()) for code, out, _ in results] == [(0, str(casp.N_ROWS))] * 3, results
    assert [p.name for p in (tmp_path / "cache").iterdir()] == [casp.FILENAME]


def test_a_trickling_download_stops_at_its_deadline(server: _Server, published: tuple[bytes, str], tmp_path: Path) -> None:
    server.payloads["/trickle.zip"] = _zip({casp.FILENAME: published[0]})
    server.trickle["/trickle.zip"] = (64, 0.05)  # never stalls long enough for a read timeout
    start = time.monotonic()
    with pytest.raises(TimeoutError, match="did not finish within 1 s"):
        casp.download(f"{server.url}/trickle.zip", tmp_path, timeout=5, deadline=1)
    assert time.monotonic() - start < 10
    assert list(tmp_path.iterdir()) == []


# ---- training: divergence and bad arguments -----------------------------------------------------

@pytest.fixture(scope="module")
def points() -> np.ndarray:
    return np.random.default_rng(0).normal(size=(32, 3))


def test_a_network_that_diverges_in_the_last_update_is_an_error(points: np.ndarray) -> None:
    with pytest.raises(FloatingPointError, match="training diverged .* seed 1; lower the learning rate"):
        fit(MLPSpec(depth=2, width=16), points, np.sin(points[:, 0]), seeds=[1], epochs=4,
            learning_rate=1.0, optimizer="sgd")


@pytest.mark.parametrize("x, seeds, message", [
    (np.zeros((5, 0)), [0], "no features"),
    (np.ones((5, 1)), [-1], "seeds must be integers from 0 to 2\\*\\*32 - 1, got -1"),
    (np.full((5, 1), 1e39), [0], "inputs reach 1e\\+39, too large for float32"),
])
def test_bad_training_input_is_one_clear_error(x: np.ndarray, seeds: list[int], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        fit(MLPSpec(depth=1, width=4), x, np.zeros(len(x)), seeds=seeds, epochs=1)


def test_numpy_scalars_are_accepted_as_epochs_and_learning_rate(points: np.ndarray) -> None:
    result = fit(MLPSpec(depth=1, width=4), points, points[:, 0], seeds=np.arange(2), epochs=np.int64(3),
                 learning_rate=np.float32(1e-3), batch_size=np.int32(16))
    assert result.losses.shape == (2, 3)



def test_a_numpy_integer_is_accepted_as_the_kernels_block_size(points: np.ndarray) -> None:
    from companion.kernels import kernel

    spec = MLPSpec(depth=1, width=4)
    assert np.array_equal(kernel(points, None, spec, block_size=np.int64(8)).ntk, kernel(points, None, spec).ntk)

# ---- command line and doctor --------------------------------------------------------------------

def test_profile_names_are_case_insensitive_on_the_command_line() -> None:
    assert artefacts.command_line("toy", "toy", ["--profile", "CI"]).profile == "ci"


def test_doctor_reports_a_broken_jax_instead_of_crashing(tmp_path: Path) -> None:
    (tmp_path / "jax").mkdir()
    (tmp_path / "jax" / "__init__.py").write_text("raise ImportError('jaxlib is broken')\n")
    broken = ENV | {"PYTHONPATH": str(tmp_path) + os.pathsep + ENV["PYTHONPATH"]}
    broken.pop("COMPANION_PROFILE", None)  # the default profile asks JAX for its devices
    done = subprocess.run([sys.executable, "-m", "companion", "doctor"], env=broken, capture_output=True, text=True)
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    assert "[FAIL] jax              ImportError: jaxlib is broken" in done.stdout
    assert "problem(s)" in done.stdout


def test_doctor_names_jax_platforms_when_its_backend_is_missing() -> None:
    import jax

    if any(d.platform != "cpu" for d in jax.devices()):
        pytest.skip("this machine has an accelerator")
    env = ENV | {"JAX_PLATFORMS": "cuda"}
    env.pop("COMPANION_PROFILE", None)
    done = subprocess.run([sys.executable, "-m", "companion", "doctor"], env=env, capture_output=True, text=True)
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    assert "fix: $JAX_PLATFORMS=cuda asks for a backend JAX cannot start here" in done.stdout


@pytest.mark.parametrize("case", ["missing", "a file", "edited"])
def test_doctor_checks_the_data_folder(case: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "data"
    if case == "a file":
        folder.write_text("")
    elif case == "edited":
        folder.mkdir()
        _synthetic_frame().to_csv(folder / casp.FILENAME, index=False)
    monkeypatch.setenv(ENV_VAR, str(folder))
    check = doctor._data()
    assert not check.ok and check.fix, check


def test_doctor_names_the_progress_variable_in_its_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COMPANION_PROGRESS", "maybe")
    check = doctor._profile()
    assert not check.ok and "COMPANION_PROGRESS" in check.fix
