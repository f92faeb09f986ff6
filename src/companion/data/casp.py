"""The UCI protein data set of the paper's Sec. 4.2 (chapter "Proteins larger than any seen in training").

*Physicochemical Properties of Protein Tertiary Structure* (Rana 2013, doi:10.24432/C5QW3H): the
file ``CASP.csv`` has 45,730 rows, the target ``RMSD`` (in Angstrom, 0 to about 21; UCI calls it
"size of the residue") and nine features ``F1..F9``, of which ``F1`` is the total surface area.

Where the file comes from (:func:`locate`):

* ``$COMPANION_DATA_DIR/CASP.csv`` when the variable is set (offline use, CI); nothing is
  downloaded then;
* otherwise the user cache (:func:`companion.data.data_dir`), downloading the UCI archive on first
  use with pooch and keeping only ``CASP.csv``.

Every read checks the columns, the number of rows and the SHA-256 of the published file, so a
truncated download, an edited copy or another data set fails loudly instead of changing results.

The cache is safe under faults (``tests/test_faults.py``): the file is extracted to a unique
temporary name and renamed into place only once it passed the checks, so an interrupted download
or extraction (Ctrl-C, a full disk) never leaves a damaged ``CASP.csv``; concurrent first loads
(several notebooks or processes at once) wait for one download under a lock on the cache folder;
a damaged file found in the cache is downloaded again; a download that stalls or trickles stops
after an overall deadline.

The split (:func:`split`) is the paper's: proteins with surface area ``F1 < 20,000`` are in
domain, a random 90% of them (40,132 rows) train the models and the other 10% are the in-domain
validation set; the 1,139 proteins with ``F1 > 20,000`` are the out-of-domain (OOD) set.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import logging
import os
import shutil
import time
import uuid
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd

from companion import safe_files
from companion.data import ENV_VAR, data_dir

__all__ = [
    "AREA", "COLUMNS", "FEATURES", "FILENAME", "N_ROWS", "SHA256", "TARGET", "URL",
    "CaspSplit", "DEADLINE", "download", "load", "locate", "read", "split", "validate",
]

FILENAME = "CASP.csv"
#: SHA-256 of the published ``CASP.csv`` (CRLF line endings, 3,541,765 bytes).
SHA256 = "712d2759f8113622a3ba93a47e451397147df946111f6ffdd8c655385d564aef"
#: The UCI archive (data set 265) that contains ``CASP.csv``.
URL = (
    "https://archive.ics.uci.edu/static/public/265/"
    "physicochemical+properties+of+protein+tertiary+structure.zip"
)
TARGET = "RMSD"
FEATURES = tuple(f"F{i}" for i in range(1, 10))
COLUMNS = (TARGET, *FEATURES)
#: Total surface area, the feature that defines the out-of-domain set.
AREA = "F1"
N_ROWS = 45_730
#: Longest a download may take overall (seconds), however slowly the bytes trickle in.
DEADLINE = 900.0


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def validate(frame: pd.DataFrame, source: str = "the data") -> pd.DataFrame:
    """Raise a ``ValueError`` unless ``frame`` has the columns, size and values of ``CASP.csv``."""
    columns = [str(c).strip() for c in frame.columns]
    if columns != list(COLUMNS):
        raise ValueError(
            f"{source} has columns {columns}, but the protein data set has {list(COLUMNS)}; "
            f"is this the UCI file {FILENAME}?"
        )
    if len(frame) != N_ROWS:
        raise ValueError(f"{source} has {len(frame):,} rows, expected {N_ROWS:,}; the file is truncated or edited")
    bad = [c for c in COLUMNS if not pd.api.types.is_numeric_dtype(frame[c]) or not np.isfinite(frame[c]).all()]
    if bad:
        raise ValueError(f"{source} has missing or non-numeric values in column(s) {bad}")
    return frame


def read(path: str | os.PathLike[str], sha256: str | None = SHA256) -> pd.DataFrame:
    """Read and check ``CASP.csv`` at ``path`` (``sha256=None`` skips the checksum)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no protein data file at {path}")
    try:
        frame = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise ValueError(
            f"{path} cannot be read as CSV ({type(error).__name__}); the file is corrupt: delete it "
            f"and download it again"
        ) from None
    frame.columns = [str(c).strip() for c in frame.columns]
    try:
        validate(frame, source=str(path))
    except ValueError as error:
        raise ValueError(f"{error}; delete it and download it again (or replace it with the published file)") from None
    if sha256 is not None and (actual := _sha256(path)) != sha256:
        raise ValueError(
            f"{path} is not the published {FILENAME} (SHA-256 {actual[:12]}..., expected "
            f"{sha256[:12]}...); it is corrupt or was edited: delete it and download it again"
        )
    return frame


def _user_folder() -> bool:
    return bool(os.environ.get(ENV_VAR, "").strip())


def locate(download_missing: bool = True) -> Path:
    """Path of ``CASP.csv``: ``$COMPANION_DATA_DIR`` if set, else the user cache (downloading it).

    Concurrent first calls are safe: the download runs under a lock on the cache folder, and the
    processes that waited for it find the file in place.
    """
    directory = data_dir()
    path = directory / FILENAME
    if path.is_file():
        return path
    if _user_folder():
        raise FileNotFoundError(
            f"${ENV_VAR} points at {directory}, which has no {FILENAME}; put the file there "
            f"(UCI data set 265) or unset ${ENV_VAR} to download it into the user cache"
        )
    if not download_missing:
        raise FileNotFoundError(f"{FILENAME} is not in the user cache {directory} yet")
    directory.mkdir(parents=True, exist_ok=True)
    with safe_files.locked(directory):
        if path.is_file():  # another process downloaded it while this one waited
            return path
        return download(URL, directory, sha256=SHA256)


def load() -> pd.DataFrame:
    """The checked protein data set as a ``DataFrame`` with columns ``RMSD, F1..F9``.

    A damaged file in the user cache is replaced by a fresh download (said in one printed line);
    a damaged file in ``$COMPANION_DATA_DIR`` is an error that says how to fix it.
    """
    path = locate()
    try:
        return read(path, sha256=SHA256)
    except ValueError as error:
        if _user_folder():
            raise
        print(f"the cached {FILENAME} is damaged ({str(error).split(';')[0]}); downloading it again", flush=True)
    with safe_files.locked(path.parent):
        with contextlib.suppress(ValueError, FileNotFoundError):
            return read(path, sha256=SHA256)  # another process repaired it meanwhile
        return read(download(URL, path.parent, sha256=SHA256), sha256=SHA256)


@contextlib.contextmanager
def _quiet_pooch() -> Iterator[None]:
    # pooch logs every download at INFO level to stderr; the book treats stderr as an error.
    import pooch

    logger = pooch.get_logger()
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)


class _DeadlineDownloader:
    """A pooch downloader that stops a download after ``deadline`` seconds in all (pooch's own
    ``timeout`` bounds each network read, so a server trickling bytes would never stop)."""

    def __init__(self, timeout: float, deadline: float) -> None:
        self.timeout, self.deadline = timeout, deadline

    def __call__(self, url: str, output_file: str, pooch_object: object) -> None:
        import requests

        stop = time.monotonic() + self.deadline
        with requests.get(url, stream=True, timeout=self.timeout) as response, open(output_file, "wb") as sink:
            response.raise_for_status()
            while chunk := response.raw.read1(1 << 16):
                sink.write(chunk)
                if time.monotonic() > stop:
                    raise TimeoutError(
                        f"the download from {url} did not finish within {self.deadline:.0f} s (too slow); "
                        f"try again later, or download the file by hand and set ${ENV_VAR} to its folder"
                    )


def download(
    url: str | None = None,
    directory: str | os.PathLike[str] | None = None,
    sha256: str | None = SHA256,
    timeout: float = 60.0,
    deadline: float | None = None,
) -> Path:
    """Download the UCI archive from ``url`` (default :data:`URL`), keep its ``CASP.csv`` in ``directory`` and check it.

    The archive's own checksum is not published, so the check is on the extracted ``CASP.csv``
    (``sha256``). ``timeout`` bounds each network read, ``deadline`` (default :data:`DEADLINE`)
    the whole download. The archive and the extracted file live under unique temporary names
    until the file passed its checks and is renamed into place: nothing is left behind, and no
    existing ``CASP.csv`` is touched, when the download fails, is interrupted or is corrupt.
    """
    import pooch
    import requests

    url = url or URL
    directory = Path(directory) if directory is not None else data_dir()
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / FILENAME
    downloader = _DeadlineDownloader(timeout, DEADLINE if deadline is None else deadline)
    archive = directory / f".casp-download-{os.getpid()}-{uuid.uuid4().hex[:8]}.zip"  # pooch's file name
    try:
        with _quiet_pooch():
            pooch.retrieve(url, known_hash=None, fname=archive.name, path=directory, downloader=downloader)
        with zipfile.ZipFile(archive) as bundle, safe_files.temporary_path(target) as extracted:
            members = [m for m in bundle.namelist() if Path(m).name == FILENAME]
            if not members:
                raise ValueError(f"the archive from {url} has no {FILENAME}; it holds {bundle.namelist()}")
            with bundle.open(members[0]) as source, open(extracted, "wb") as sink:
                shutil.copyfileobj(source, sink)
            try:
                read(extracted, sha256=sha256)
            except ValueError as error:
                raise ValueError(str(error).replace(str(extracted), f"the {FILENAME} downloaded from {url}")) from None
            os.replace(extracted, target)
    except requests.exceptions.RequestException as error:
        raise ConnectionError(
            f"could not download {FILENAME} from {url} ({type(error).__name__}); check the internet "
            f"connection, or download the file by hand and set ${ENV_VAR} to its folder"
        ) from None
    except zipfile.BadZipFile:
        raise ValueError(
            f"the download from {url} is not a valid zip archive (corrupt or incomplete); try again"
        ) from None
    finally:
        archive.unlink(missing_ok=True)
    return target


@dataclasses.dataclass(frozen=True)
class CaspSplit:
    """The paper's split, in the file's units, with standardisation fitted on the training rows.

    ``x_*`` are ``(n, 9)`` feature arrays (``F1..F9``), ``y_*`` the RMSD targets. Training rows are
    in a random order, so ``x_train[:n]`` is a random subsample. The OOD rows keep the file's order
    (they do not depend on the seed). :meth:`inputs`, :meth:`targets` and :meth:`to_rmsd`
    standardise with the training mean and standard deviation (our choice: the paper does not say).
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_id: np.ndarray
    y_id: np.ndarray
    x_ood: np.ndarray
    y_ood: np.ndarray
    seed: int
    threshold: float

    def _part(self, part: str) -> tuple[np.ndarray, np.ndarray]:
        if part not in ("train", "id", "ood"):
            raise ValueError(f"unknown part {part!r}; choose 'train', 'id' or 'ood'")
        return getattr(self, f"x_{part}"), getattr(self, f"y_{part}")

    def inputs(self, part: str) -> np.ndarray:
        """Standardised features of ``part`` (``train``, ``id`` or ``ood``)."""
        x = self._part(part)[0]
        return (x - self.x_train.mean(axis=0)) / self.x_train.std(axis=0)

    def targets(self, part: str) -> np.ndarray:
        """Standardised RMSD of ``part``."""
        return (self._part(part)[1] - self.y_train.mean()) / self.y_train.std()

    def to_rmsd(self, standardised: np.ndarray) -> np.ndarray:
        """Map standardised predictions back to Angstrom."""
        return np.asarray(standardised) * self.y_train.std() + self.y_train.mean()

    def area(self, part: str) -> np.ndarray:
        """Surface area ``F1`` of the proteins of ``part``."""
        return self._part(part)[0][:, FEATURES.index(AREA)]


def split(frame: pd.DataFrame, seed: int, train_fraction: float = 0.9, threshold: float = 20_000.0) -> CaspSplit:
    """The paper's split (Sec. 4.2): random ``train_fraction`` of ``F1 < threshold`` to train.

    With the defaults: 40,132 training rows, 4,459 in-domain validation rows, 1,139 OOD rows.
    Rows with ``F1 == threshold`` would belong to neither set (the file has none).
    """
    validate(frame)
    if not 0 < train_fraction < 1:
        raise ValueError(f"train_fraction must be between 0 and 1, got {train_fraction}")
    x = frame[list(FEATURES)].to_numpy(dtype=np.float64)
    y = frame[TARGET].to_numpy(dtype=np.float64)
    area = x[:, FEATURES.index(AREA)]
    inside = np.flatnonzero(area < threshold)
    outside = np.flatnonzero(area > threshold)
    if len(inside) < 2 or len(outside) == 0:
        raise ValueError(f"threshold {threshold:g} leaves {len(inside)} in-domain and {len(outside)} OOD rows")
    order = np.random.default_rng(seed).permutation(inside)
    n_train = int(round(train_fraction * len(inside)))
    train, valid = order[:n_train], order[n_train:]
    return CaspSplit(
        x_train=x[train], y_train=y[train], x_id=x[valid], y_id=y[valid],
        x_ood=x[outside], y_ood=y[outside], seed=int(seed), threshold=float(threshold),
    )
