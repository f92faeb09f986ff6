"""UTKFace loader: file-name labels, malformed names, folders and archives, and the paper's split."""

from __future__ import annotations

import io
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest

from companion.data import utkface
from utkface_fixtures import MALFORMED, OTHER_FILES, PER_RACE, labelled_names, make_folder


@pytest.mark.parametrize(
    "name, expected",
    [
        ("100_0_0_20170112213500903.jpg.chip.jpg", (100, 0, 0)),
        ("1_1_4_20161221193016140.jpg.chip.jpg", (1, 1, 4)),
        ("26_0_2_20170104023102422.jpg", (26, 0, 2)),
        ("26_0_2_20170104023102422.JPG", (26, 0, 2)),
        ("39_1_20170116174525125.jpg.chip.jpg", "does not read"),
        ("61_3_20170109150557335.jpg", "does not read"),
        ("x_0_0_20170104023102422.jpg", "does not read"),
        ("121_0_0_20170104023102422.jpg", "age 121 is above 120"),
        ("26_5_2_20170104023102422.jpg", "gender 5"),
        ("26_0_5_20170104023102422.jpg", "race 5"),
    ],
)
def test_parse_name(name: str, expected: object) -> None:
    parsed = utkface.parse_name(name)
    if isinstance(expected, tuple):
        assert parsed == expected
    else:
        assert isinstance(parsed, str) and expected in parsed


@pytest.fixture()
def folder(tmp_path: Path) -> Path:
    return make_folder(tmp_path / "UTKFace")


def test_scan_counts_and_reports_malformed_names_without_failing(folder: Path) -> None:
    scan = utkface.scan(folder)
    expected = {name: (age, gender, race) for name, age, gender, race in labelled_names()}
    assert len(scan.images) == sum(PER_RACE) == len(expected)
    assert [im.name for im in scan.images] == sorted(expected)
    for image in scan.images:
        assert (image.age, image.gender, image.race) == expected[image.name]
        assert image.size == (folder / image.path).stat().st_size > 0
    assert np.bincount(scan.races).tolist() == list(PER_RACE)
    reasons = dict(scan.malformed)
    for name, words in MALFORMED.items():
        assert words in reasons[name]
    duplicate = labelled_names()[1][0]
    assert "duplicate" in reasons[duplicate]
    assert len(scan.malformed) == len(MALFORMED) + 1
    assert scan.ignored == len(OTHER_FILES)
    assert scan.images[0].path.count("/") <= 1 and all((folder / im.path).is_file() for im in scan.images)
    summary = scan.summary()
    assert f"{sum(PER_RACE)} labelled images" in summary and "Others 15" in summary
    assert f"{len(MALFORMED) + 1} malformed file name(s) skipped" in summary


@pytest.mark.parametrize("suffix", [".tar.gz", ".zip"])
def test_archives_give_the_same_images_and_are_unpacked_once(folder: Path, tmp_path: Path, suffix: str) -> None:
    archive = tmp_path / f"UTKFace{suffix}"
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    if suffix == ".zip":
        with zipfile.ZipFile(archive, "w") as z:
            for f in files:
                z.write(f, Path("UTKFace") / f.relative_to(folder))
    else:
        with tarfile.open(archive, "w:gz") as t:
            t.add(folder, arcname="UTKFace")
    cache = tmp_path / "cache"
    scan = utkface.scan(archive, cache=cache)
    direct = utkface.scan(folder)
    assert [(im.name, im.size, im.race) for im in scan.images] == [(im.name, im.size, im.race) for im in direct.images]
    assert len(scan.malformed) == len(direct.malformed)
    unpacked = utkface.open_images(archive, cache=cache)
    marker = (unpacked / ".unpacked").stat().st_mtime_ns
    assert utkface.open_images(archive, cache=cache) == unpacked == scan.root
    assert (unpacked / ".unpacked").stat().st_mtime_ns == marker
    assert [p.name for p in cache.iterdir()] == [unpacked.name]


def test_archive_members_outside_the_target_are_refused(tmp_path: Path) -> None:
    archive = tmp_path / "evil.tar.gz"
    with tarfile.open(archive, "w:gz") as t:
        data = b"x"
        info = tarfile.TarInfo("../../escaped_0_0_0_20170104023102422.jpg")
        info.size = len(data)
        t.addfile(info, io.BytesIO(data))
    with pytest.raises(ValueError, match="cannot unpack evil.tar.gz"):
        utkface.scan(archive, cache=tmp_path / "cache")
    assert not list(tmp_path.rglob("escaped*"))


@pytest.mark.parametrize(
    "make, error, message",
    [
        (lambda d: d / "missing.tar.gz", FileNotFoundError, "susanqq.github.io/UTKFace"),
        (lambda d: d, ValueError, "found no UTKFace image"),
        (lambda d: (d / "notes.txt").write_text("x") and d / "notes.txt", ValueError, "neither a folder nor an archive"),
        (lambda d: (d / "broken.tar.gz").write_bytes(b"not gzip") and d / "broken.tar.gz", ValueError, "download the archive again"),
    ],
)
def test_bad_sources_raise_clear_errors(tmp_path: Path, make, error: type, message: str) -> None:
    source = tmp_path / "src"
    source.mkdir()
    with pytest.raises(error, match=message):
        utkface.scan(make(source), cache=tmp_path / "cache")


def test_split_counts_follow_the_protocol(folder: Path) -> None:
    races = utkface.scan(folder).races
    parts = utkface.split(races, train_fraction=0.8, seed=0)
    n_id = sum(PER_RACE[:4])
    assert parts.counts() == {"train": round(0.8 * n_id), "ID validation": n_id - round(0.8 * n_id), "OOD": PER_RACE[4]}
    assert set(races[parts.train]) <= {0, 1, 2, 3} and set(races[parts.id_val]) <= {0, 1, 2, 3}
    assert set(races[parts.ood]) == {4}
    everything = np.concatenate([parts.train, parts.id_val, parts.ood])
    assert sorted(everything) == list(range(len(races)))
    again = utkface.split(races, train_fraction=0.8, seed=0)
    np.testing.assert_array_equal(parts.train, again.train)
    other = utkface.split(races, train_fraction=0.8, seed=1)
    assert not np.array_equal(parts.train, other.train)


def test_split_on_the_release_sizes() -> None:
    races = np.repeat(np.arange(5), [10078, 4528, 3434, 3976, 1692])
    parts = utkface.split(races)
    assert parts.counts() == {"train": 17613, "ID validation": 4403, "OOD": 1692}


@pytest.mark.parametrize(
    "races, kwargs, message",
    [
        ([0, 1, 2, 3, 4, 4], {"train_fraction": 1.0}, "strictly between 0 and 1"),
        ([0, 1, 4, 4], {}, "too few images"),
        ([0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3], {}, "too few images"),
        ([0, 1, 9], {}, "race codes 0-4"),
    ],
)
def test_split_rejects_what_it_cannot_split(races: list[int], kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        utkface.split(np.asarray(races), **kwargs)
