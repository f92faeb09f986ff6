"""The protein data loader: download (against a loopback server), checks, errors, and the paper's split."""

from __future__ import annotations

import hashlib
import http.server
import io
import os
import threading
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from companion.data import ENV_VAR, casp


def _synthetic_frame(seed: int = 0) -> pd.DataFrame:
    """A frame with the schema of CASP.csv: 45,730 rows, 1,139 of them with F1 > 20,000."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(rng.uniform(0, 1, size=(casp.N_ROWS, len(casp.COLUMNS))).round(4), columns=casp.COLUMNS)
    frame["RMSD"] = (frame["RMSD"] * 20).round(3)
    area = rng.uniform(2_400, 19_999, casp.N_ROWS)
    area[rng.choice(casp.N_ROWS, 1_139, replace=False)] = rng.uniform(20_001, 40_000, 1_139)
    frame["F1"] = area.round(2)
    return frame


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    path = tmp_path_factory.mktemp("synthetic") / casp.FILENAME
    _synthetic_frame().to_csv(path, index=False)
    return path, hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def real_file() -> Path:
    directory = os.environ.get(ENV_VAR, "")
    path = Path(directory) / casp.FILENAME
    if not directory or not path.is_file():
        pytest.skip(f"the real {casp.FILENAME} is not available (set ${ENV_VAR} to its folder)")
    return path


# ---- schema and checksum ------------------------------------------------------------------------

def test_validate_accepts_the_schema_and_rejects_others() -> None:
    frame = _synthetic_frame()
    assert casp.validate(frame) is frame
    with pytest.raises(ValueError, match="has columns"):
        casp.validate(frame.rename(columns={"F9": "G9"}))
    with pytest.raises(ValueError, match="45,729 rows, expected 45,730"):
        casp.validate(frame.iloc[:-1])
    broken = frame.copy()
    broken.loc[3, "F4"] = np.nan
    with pytest.raises(ValueError, match=r"missing or non-numeric values in column\(s\) \['F4'\]"):
        casp.validate(broken)


def test_read_checks_the_checksum(synthetic: tuple[Path, str]) -> None:
    path, digest = synthetic
    assert casp.read(path, sha256=digest).shape == (casp.N_ROWS, 10)
    assert casp.read(path, sha256=None).shape == (casp.N_ROWS, 10)
    with pytest.raises(ValueError, match="not the published CASP.csv"):
        casp.read(path)  # the published checksum


def test_read_rejects_garbage_and_missing_files(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.csv"
    garbage.write_bytes(bytes(range(256)) * 10)
    with pytest.raises(ValueError, match="cannot be read as CSV|has columns"):
        casp.read(garbage)
    with pytest.raises(FileNotFoundError, match="no protein data file"):
        casp.read(tmp_path / "absent.csv")


def test_the_real_file_passes_every_check(real_file: Path) -> None:
    frame = casp.read(real_file)
    assert list(frame.columns) == list(casp.COLUMNS)
    assert casp.locate() == real_file.resolve() and casp.load().shape == (casp.N_ROWS, 10)


def test_data_dir_without_the_file_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_VAR, str(tmp_path))
    with pytest.raises(FileNotFoundError, match=f"\\${ENV_VAR} points at .* which has no CASP.csv"):
        casp.locate()


# ---- download from a local HTTP server ----------------------------------------------------------

class _Server:
    """Serves ``payloads[path] = bytes`` on 127.0.0.1; anything else is a 404. A path listed in
    ``trickle`` as ``(chunk, pause)`` is sent ``chunk`` bytes at a time with ``pause`` seconds between."""

    def __init__(self) -> None:
        payloads: dict[str, bytes] = {}
        trickle: dict[str, tuple[int, float]] = {}
        self.payloads, self.trickle = payloads, trickle

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                body = payloads.get(self.path)
                self.send_response(200 if body is not None else 404)
                self.send_header("Content-Length", str(len(body or b"")))
                self.end_headers()
                chunk, pause = trickle.get(self.path, (len(body or b"") or 1, 0.0))
                try:
                    for start in range(0, len(body or b""), chunk):
                        self.wfile.write((body or b"")[start:start + chunk])
                        self.wfile.flush()
                        time.sleep(pause)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (a deadline test)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()


@pytest.fixture(scope="module")
def server() -> Iterator[_Server]:
    s = _Server()
    yield s
    s.httpd.shutdown()
    s.httpd.server_close()


def _zip(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as bundle:
        for name, data in members.items():
            bundle.writestr(name, data)
    return buffer.getvalue()


def test_download_extracts_and_verifies(server: _Server, synthetic: tuple[Path, str], tmp_path: Path) -> None:
    path, digest = synthetic
    server.payloads["/good.zip"] = _zip({casp.FILENAME: path.read_bytes(), "readme.txt": b"x"})
    got = casp.download(f"{server.url}/good.zip", tmp_path, sha256=digest)
    assert got == tmp_path / casp.FILENAME and got.read_bytes() == path.read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == [casp.FILENAME], "the archive must not be left behind"


def test_download_of_the_real_archive_layout(server: _Server, real_file: Path, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    # Without $COMPANION_DATA_DIR, locate() downloads into the user cache with the published checksum.
    server.payloads["/uci.zip"] = _zip({casp.FILENAME: real_file.read_bytes()})
    monkeypatch.delenv(ENV_VAR, raising=False)
    monkeypatch.setattr(casp, "data_dir", lambda: tmp_path / "cache")
    monkeypatch.setattr(casp, "URL", f"{server.url}/uci.zip")
    assert casp.locate() == tmp_path / "cache" / casp.FILENAME
    assert casp.load().shape == (casp.N_ROWS, 10)


@pytest.mark.parametrize(
    "payload, message",
    [
        ("html", "not a valid zip archive"),
        ("truncated", "not a valid zip archive"),
        ("edited", "not the published CASP.csv"),
        ("renamed", "has no CASP.csv"),
    ],
)
def test_download_rejects_corrupt_payloads(server: _Server, synthetic: tuple[Path, str], tmp_path: Path,
                                           payload: str, message: str) -> None:
    path, digest = synthetic
    raw = path.read_bytes()
    good = _zip({casp.FILENAME: raw})
    last_digit = raw.rstrip()[-1:]
    edited = raw.rstrip()[:-1] + (b"1" if last_digit != b"1" else b"2") + b"\n"  # one value changed
    server.payloads[f"/{payload}.zip"] = {
        "html": b"<html>Service unavailable</html>",
        "truncated": good[: len(good) // 2],
        "edited": _zip({casp.FILENAME: edited}),
        "renamed": _zip({"other.csv": raw}),
    }[payload]
    with pytest.raises(ValueError, match=message):
        casp.download(f"{server.url}/{payload}.zip", tmp_path, sha256=digest)
    assert list(tmp_path.iterdir()) == [], "a failed download must leave nothing behind"


def test_download_without_network_or_file_is_a_connection_error(server: _Server, tmp_path: Path) -> None:
    with pytest.raises(ConnectionError, match="could not download CASP.csv .*HTTPError"):
        casp.download(f"{server.url}/missing.zip", tmp_path)
    closed = http.server.HTTPServer(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler)
    port = closed.server_address[1]
    closed.server_close()  # nothing listens on this port any more: "no network"
    with pytest.raises(ConnectionError, match="ConnectionError.*set \\$COMPANION_DATA_DIR"):
        casp.download(f"http://127.0.0.1:{port}/casp.zip", tmp_path, timeout=5)
    assert list(tmp_path.iterdir()) == []


# ---- the split ----------------------------------------------------------------------------------

def test_split_sizes_and_domains_on_synthetic_data() -> None:
    frame = _synthetic_frame()
    s = casp.split(frame, seed=0)
    n_in = casp.N_ROWS - 1_139
    assert (len(s.y_train), len(s.y_id), len(s.y_ood)) == (round(0.9 * n_in), n_in - round(0.9 * n_in), 1_139)
    assert s.area("train").max() < 20_000 and s.area("id").max() < 20_000 and s.area("ood").min() > 20_000
    rows = lambda x: {tuple(r) for r in x}  # noqa: E731
    assert not rows(s.x_train) & rows(s.x_id)
    np.testing.assert_array_equal(casp.split(frame, seed=0).x_train, s.x_train)
    assert not np.array_equal(casp.split(frame, seed=1).x_train, s.x_train)
    np.testing.assert_array_equal(casp.split(frame, seed=1).x_ood, s.x_ood)


def test_standardisation_is_fitted_on_the_training_rows_only() -> None:
    s = casp.split(_synthetic_frame(), seed=3)
    np.testing.assert_allclose(s.inputs("train").mean(axis=0), 0, atol=1e-10)
    np.testing.assert_allclose(s.inputs("train").std(axis=0), 1, rtol=1e-10)
    np.testing.assert_allclose(s.targets("train").mean(), 0, atol=1e-10)
    assert s.inputs("ood")[:, 0].min() > 1, "OOD surface areas lie far outside the standardised training range"
    np.testing.assert_allclose(s.to_rmsd(s.targets("ood")), s.y_ood)
    with pytest.raises(ValueError, match="unknown part"):
        s.inputs("test")
    with pytest.raises(ValueError, match="train_fraction"):
        casp.split(_synthetic_frame(), seed=0, train_fraction=1.5)


def test_the_papers_split_of_the_real_file(real_file: Path) -> None:
    s = casp.split(casp.read(real_file), seed=0)
    assert (len(s.y_train), len(s.y_id), len(s.y_ood)) == (40_132, 4_459, 1_139)
    # Larger proteins do not have larger RMSD in this data set (notes §6.3).
    in_domain = np.concatenate([s.y_train, s.y_id])
    assert round(in_domain.mean(), 2) == 7.77 and round(s.y_ood.mean(), 2) == 6.94
