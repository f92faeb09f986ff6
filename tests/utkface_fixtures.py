"""A small folder of tiny JPEGs named like UTKFace's aligned and cropped faces, with a few bad names."""

from __future__ import annotations

from pathlib import Path

import numpy as np

#: Labelled images per race code (White, Black, Asian, Indian, Others).
PER_RACE = (12, 6, 5, 5, 15)
#: Image files whose names must be reported as malformed, with the reason's key words.
MALFORMED = {
    "39_1_20170116174525125.jpg.chip.jpg": "does not read",  # a field missing, as in the real release
    "130_0_0_20170116174525126.jpg.chip.jpg": "age 130",
    "25_2_0_20170116174525127.jpg.chip.jpg": "gender 2",
    "25_0_7_20170116174525128.jpg.chip.jpg": "race 7",
    "portrait.jpg": "does not read",
}
#: Files that are not images (or hidden) and must be ignored.
OTHER_FILES = ("README.txt", "._25_0_1_20170116174525129.jpg.chip.jpg")


def labelled_names(seed: int = 0) -> list[tuple[str, int, int, int]]:
    """``(file name, age, gender, race)`` of the well-named images."""
    rng = np.random.default_rng(seed)
    names = []
    for race, count in enumerate(PER_RACE):
        for i in range(count):
            age, gender = int(rng.integers(1, 90)), int(rng.integers(0, 2))
            names.append((f"{age}_{gender}_{race}_2017011{race}1745{i:05d}.jpg.chip.jpg", age, gender, race))
    return names


def write_jpeg(path: Path, seed: int, size: int = 16) -> None:
    from PIL import Image

    pixels = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, format="JPEG", quality=85)


def make_folder(root: Path) -> Path:
    """Write the images (one in a sub-folder, one duplicated there), the bad names and other files."""
    names = labelled_names()
    for i, (name, *_labels) in enumerate(names):
        write_jpeg(root / ("part2" if i == 0 else "") / name, seed=i)
    write_jpeg(root / "part3" / names[1][0], seed=1)  # the same file name twice
    for j, name in enumerate(MALFORMED):
        write_jpeg(root / name, seed=100 + j)
    for name in OTHER_FILES:
        (root / name).write_text("not an image")
    return root
