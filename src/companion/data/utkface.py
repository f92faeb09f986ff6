"""UTKFace: reading the face images' labels from their file names, and the paper's split.

UTKFace (Zhang, Song and Qi, 2017; https://susanqq.github.io/UTKFace/) has more than 20,000
faces aged 0 to 116. The book uses its *Aligned & Cropped Faces* release, distributed by its
authors as ``UTKFace.tar.gz`` (links on the project page; non-commercial research use only). The
book cannot download it for you: fetch the archive yourself and pass its path (or the folder it
unpacks to) to :func:`scan`.

Labels live in the file names, ``age_gender_race_datetime.jpg`` (the aligned and cropped files
end in ``.jpg.chip.jpg``): age in years, gender 0/1, race 0-4 = White, Black, Asian, Indian,
Others (:data:`RACES`). A handful of files in the public release lack a field; :func:`scan`
counts and reports such names instead of failing.

The split of the paper's face-age study (Sec. 4.3; notes §6.4) is :func:`split`: networks train on
White, Black, Asian and Indian faces, a fixed random 80% of them (our choice: the paper does not
give the ratio); the other 20% are the in-distribution (ID) validation set, and *every* "Others"
face is out of distribution (OOD). Chapter: ``book/experiments/faces``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
import shutil
import tarfile
import zipfile
from pathlib import Path

import numpy as np

from companion.data import data_dir

__all__ = [
    "RACES", "ID_RACES", "OOD_RACE", "MAX_AGE", "FaceImage", "Scan", "Split",
    "parse_name", "open_images", "scan", "split",
]

#: Race codes of UTKFace's file names.
RACES = ("White", "Black", "Asian", "Indian", "Others")
#: Races the networks are trained on, and the held-out one.
ID_RACES = (0, 1, 2, 3)
OOD_RACE = 4
#: Oldest age a file name may carry (UTKFace's oldest face is 116).
MAX_AGE = 120
#: File endings taken for images; other files (licences, READMEs) are ignored and counted.
IMAGE_SUFFIXES = (".jpg", ".jpeg")
ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar", ".zip")

_NAME = re.compile(r"^(\d+)_(\d+)_(\d+)_(\d+)\.jpe?g(\.chip\.jpe?g)?$", re.IGNORECASE)


@dataclasses.dataclass(frozen=True)
class FaceImage:
    """One labelled image: its path relative to the image folder, its size in bytes and labels."""

    path: str
    size: int
    age: int
    gender: int
    race: int

    @property
    def name(self) -> str:
        """The image's file name, which holds its labels."""
        return Path(self.path).name


def parse_name(name: str) -> tuple[int, int, int] | str:
    """``(age, gender, race)`` from a UTKFace file name, or a string saying why the name is malformed."""
    match = _NAME.match(name)
    if match is None:
        return "does not read age_gender_race_datetime.jpg"
    age, gender, race = (int(match.group(i)) for i in (1, 2, 3))
    if age > MAX_AGE:
        return f"age {age} is above {MAX_AGE}"
    if gender not in (0, 1):
        return f"gender {gender} is not 0 or 1"
    if race >= len(RACES):
        return f"race {race} is not one of 0-4"
    return age, gender, race


@dataclasses.dataclass(frozen=True)
class Scan:
    """The labelled images of a folder, sorted by name, and what could not be used."""

    root: Path
    images: tuple[FaceImage, ...]
    malformed: tuple[tuple[str, str], ...]
    ignored: int

    @property
    def ages(self) -> np.ndarray:
        """Age in years of every image, in the order of :attr:`images`."""
        return np.array([im.age for im in self.images], dtype=float)

    @property
    def races(self) -> np.ndarray:
        """Ethnicity code (0-4: White, Black, Asian, Indian, Others) of every image, as in :attr:`images`."""
        return np.array([im.race for im in self.images], dtype=int)

    def paths(self) -> list[Path]:
        """Absolute paths of the images, in order."""
        return [self.root / im.path for im in self.images]

    def summary(self, examples: int = 5) -> str:
        """A few lines for the log: counts per race and the malformed names."""
        counts = np.bincount(self.races, minlength=len(RACES))
        lines = [
            f"{len(self.images)} labelled images ("
            + ", ".join(f"{race} {count}" for race, count in zip(RACES, counts)) + ")",
            f"{len(self.malformed)} malformed file name(s) skipped, {self.ignored} other file(s) ignored",
        ]
        lines += [f"  skipped {name}: {reason}" for name, reason in self.malformed[:examples]]
        if len(self.malformed) > examples:
            lines.append(f"  ... and {len(self.malformed) - examples} more")
        return "\n".join(lines)


def _archive_key(archive: Path) -> str:
    digest = hashlib.sha256()
    with archive.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _safe_extract(archive: tarfile.TarFile, target: Path) -> None:
    """Unpack regular files and folders only, never outside ``target`` (tarfile's "data" filter)."""
    if hasattr(tarfile, "data_filter"):  # Python >= 3.11.4
        archive.extractall(target, filter="data")
        return
    for member in archive.getmembers():  # pragma: no cover (older Pythons)
        path = (target / member.name).resolve()
        if not (member.isfile() or member.isdir()) or target.resolve() not in path.parents:
            raise tarfile.TarError(f"refusing to unpack {member.name!r}")
        archive.extract(member, target)


def open_images(source: str | Path, cache: Path | None = None) -> Path:
    """The folder of images named by ``source``: a folder, or an archive (``.tar.gz``, ``.tgz``,
    ``.tar``, ``.zip``) unpacked once into ``cache`` (default ``data_dir()/utkface-images``),
    in a folder named after the archive's SHA-256, and reused afterwards."""
    source = Path(source).expanduser()
    if source.is_dir():
        return source
    if not source.is_file():
        raise FileNotFoundError(
            f"{source} does not exist; download UTKFace.tar.gz (Aligned & Cropped Faces) from "
            "https://susanqq.github.io/UTKFace/ and pass the archive or the folder it unpacks to"
        )
    if not source.name.lower().endswith(ARCHIVE_SUFFIXES):
        raise ValueError(f"{source.name} is neither a folder nor an archive ({', '.join(ARCHIVE_SUFFIXES)})")
    target = (cache or data_dir() / "utkface-images") / f"{source.name}-{_archive_key(source)[:16]}"
    done = target / ".unpacked"
    if not done.exists():
        partial = target.with_name(target.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        try:
            if source.name.lower().endswith(".zip"):
                with zipfile.ZipFile(source) as archive:
                    archive.extractall(partial)  # zipfile drops absolute paths and '..' itself
            else:
                with tarfile.open(source) as archive:
                    _safe_extract(archive, partial)
        except (tarfile.TarError, zipfile.BadZipFile, EOFError) as error:
            shutil.rmtree(partial, ignore_errors=True)
            raise ValueError(f"cannot unpack {source.name}: {error}; download the archive again") from None
        shutil.rmtree(target, ignore_errors=True)
        partial.rename(target)
        done.touch()
    return target


def scan(source: str | Path, cache: Path | None = None) -> Scan:
    """Read the labels of every image under ``source`` (a folder or an archive, see :func:`open_images`).

    Image files (``.jpg``/``.jpeg``) whose names do not parse are skipped and listed in
    :attr:`Scan.malformed` with the reason; a name seen twice (in two sub-folders) is kept once;
    hidden files and non-images are ignored. Raises ``ValueError`` when no image is left.
    """
    root = open_images(source, cache)
    images: dict[str, FaceImage] = {}
    malformed: list[tuple[str, str]] = []
    ignored = 0
    for path in sorted(root.rglob("*")):
        if not path.is_file() or path.name == ".unpacked":
            continue
        if path.name.startswith(".") or not path.name.lower().endswith(IMAGE_SUFFIXES):
            ignored += 1
            continue
        parsed = parse_name(path.name)
        if isinstance(parsed, str):
            malformed.append((path.name, parsed))
            continue
        if path.name in images:
            malformed.append((path.name, "duplicate file name (kept the first)"))
            continue
        age, gender, race = parsed
        rel = path.relative_to(root).as_posix()
        images[path.name] = FaceImage(rel, path.stat().st_size, age, gender, race)
    if not images:
        raise ValueError(
            f"found no UTKFace image under {root} ({len(malformed)} malformed name(s), {ignored} other "
            "file(s)); point it at the Aligned & Cropped Faces folder or UTKFace.tar.gz"
        )
    ordered = tuple(sorted(images.values(), key=lambda im: im.name))
    return Scan(root=root, images=ordered, malformed=tuple(malformed), ignored=ignored)


@dataclasses.dataclass(frozen=True)
class Split:
    """Indices (into the scanned images) of the training, ID validation and OOD sets."""

    train: np.ndarray
    id_val: np.ndarray
    ood: np.ndarray
    train_fraction: float
    seed: int

    def counts(self) -> dict[str, int]:
        """Number of images in each set: train, ID validation and OOD."""
        return {"train": len(self.train), "ID validation": len(self.id_val), "OOD": len(self.ood)}


def split(races: np.typing.ArrayLike, train_fraction: float = 0.8, seed: int = 0) -> Split:
    """The paper's split: a random ``train_fraction`` of the White, Black, Asian and Indian images
    (``round(train_fraction * n_id)`` of them, drawn with ``numpy.random.default_rng(seed)``) for
    training, the rest of them for ID validation, and all "Others" images as the OOD set."""
    races = np.asarray(races)
    if races.ndim != 1 or not np.all(np.isin(races, range(len(RACES)))):
        raise ValueError("races must be a 1-D array of UTKFace race codes 0-4")
    if not 0 < train_fraction < 1:
        raise ValueError(f"train_fraction must lie strictly between 0 and 1, got {train_fraction}")
    in_dist = np.flatnonzero(np.isin(races, ID_RACES))
    ood = np.flatnonzero(races == OOD_RACE)
    n_train = int(round(train_fraction * len(in_dist)))
    if n_train < 2 or len(in_dist) - n_train < 2 or len(ood) < 2:
        raise ValueError(
            f"too few images to split: {len(in_dist)} White/Black/Asian/Indian and {len(ood)} Others; "
            "each of training, ID validation and OOD needs at least 2"
        )
    order = np.random.default_rng(seed).permutation(in_dist)
    return Split(
        train=np.sort(order[:n_train]), id_val=np.sort(order[n_train:]), ood=ood,
        train_fraction=float(train_fraction), seed=int(seed),
    )
