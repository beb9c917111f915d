"""The benchmark's data: labelled folders, the tuning/reporting split, images and pairs.

**Folders.** A folder holds images and a ``labels.csv`` with the columns ``file,class_index``
(more columns are ignored; ``class_index`` is the ILSVRC-2012 index, the sorted-synset order of
torchvision and timm). Several folders can be read as one collection.

**The split.** Every image belongs, once and for all, to the *tuning* or the *reporting* part:

    tuning  ⇔  the first byte of SHA-256("clustercam-split-v1:" + file name) < 128

The file name (without its folder) alone decides, so the split needs no state, is the same on
every machine and in every copy of a data set, and puts about half of any folder in each part.
Settings (Cluster-CAM's defaults and presets) are chosen on the tuning part only; tables are
reported on the reporting part only (``docs/benchmarks.md``).

**Pairs** for the pair share (class-discriminativeness) are drawn *within* one part: the part's
images are shuffled with a fixed seed and taken two by two, skipping a partner of the same label,
so that every image is in at most one pair.
"""

from __future__ import annotations

import csv
import hashlib
import os
import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..imaging import ImageError, load_image, resize_for_network

TUNING, REPORTING, ALL = "tuning", "reporting", "all"
SPLITS = (TUNING, REPORTING, ALL)
SPLIT_SALT = "clustercam-split-v1"
PAIR_SEED = 0


def split_of(file_name: str) -> str:
    """``"tuning"`` or ``"reporting"``: the part an image belongs to (see the module docstring)."""
    digest = hashlib.sha256(f"{SPLIT_SALT}:{Path(file_name).name}".encode()).digest()
    return TUNING if digest[0] < 128 else REPORTING


@dataclass(frozen=True)
class Sample:
    """One row of a ``labels.csv``.

    Attributes:
        file: the file name as written in ``labels.csv``.
        path: the image's path.
        label: its class index.
        line: the row's line number in ``labels.csv`` (for messages).
        split: ``"tuning"`` or ``"reporting"`` (:func:`split_of`).
    """

    file: str
    path: Path
    label: int
    line: int
    split: str


def read_labels(
    data_dirs: str | os.PathLike | Sequence[str | os.PathLike],
    *,
    split: str = ALL,
    limit: int | None = None,
    classes: int | None = None,
) -> list[Sample]:
    """The checked rows of each folder's ``labels.csv``, in folder and file order.

    Args:
        data_dirs: one folder or several (read one after the other).
        split: keep only the ``"tuning"`` or ``"reporting"`` part, or ``"all"``.
        limit: keep only the first ``limit`` images (after the split).
        classes: the number of classes; a larger ``class_index`` is an error.

    Raises:
        ValueError: no folder or no ``labels.csv``; a missing ``file``/``class_index`` column; a
            row with an empty or escaping file name, a file that does not exist, or a class index
            that is not a whole number in ``[0, classes)``; a file listed twice; no image left. The
            message names the file and line.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}; got '{split}'.")
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be at least 1; got {limit}.")
    folders = [data_dirs] if isinstance(data_dirs, (str, os.PathLike)) else list(data_dirs)
    if not folders:
        raise ValueError("Name at least one data folder.")
    samples: list[Sample] = []
    seen: dict[str, Path] = {}
    for folder in folders:
        for sample in _folder_rows(Path(folder), classes):
            name = Path(sample.file).name
            if name in seen:
                raise ValueError(f"'{name}' is listed twice ({seen[name]} and {sample.path}): file names decide the split, so they must be unique.")
            seen[name] = sample.path
            if split == ALL or sample.split == split:
                samples.append(sample)
    if not samples:
        raise ValueError(f"No images in the {split} part of {', '.join(str(f) for f in folders)}.")
    return samples[:limit] if limit is not None else samples


def _folder_rows(folder: Path, classes: int | None) -> Iterable[Sample]:
    if not folder.is_dir():
        raise ValueError(f"No data folder at {folder}.")
    labels = folder / "labels.csv"
    if not labels.is_file():
        raise ValueError(f"{folder} has no labels.csv (columns: file,class_index).")
    rows = []
    with labels.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        missing = {"file", "class_index"} - set(reader.fieldnames or ())
        if missing:
            raise ValueError(f"{labels} lacks the column(s) {', '.join(sorted(missing))}; it needs file,class_index.")
        for row in reader:
            rows.append(_check_row(row, folder, labels, reader.line_num, classes))
    if not rows:
        raise ValueError(f"{labels} lists no images.")
    return rows


def _check_row(row: Mapping[str, str | None], folder: Path, labels: Path, line: int, classes: int | None) -> Sample:
    where = f"{labels}, line {line}"
    name = (row.get("file") or "").strip()
    if not name:
        raise ValueError(f"{where}: the file name is empty.")
    path = folder / name
    if Path(name).is_absolute() or not path.resolve().is_relative_to(folder.resolve()):
        raise ValueError(f"{where}: '{name}' is not inside {folder}.")
    if not path.is_file():
        raise ValueError(f"{where}: no image file '{name}' in {folder}.")
    raw = (row.get("class_index") or "").strip()
    try:
        label = int(raw)
    except ValueError:
        raise ValueError(f"{where}: class_index '{raw}' is not a whole number.") from None
    if label < 0 or (classes is not None and label >= classes):
        bound = f"[0, {classes})" if classes is not None else "≥ 0"
        raise ValueError(f"{where}: class_index {label} is out of range (must be {bound}).")
    return Sample(name, path, label, line, split_of(name))


def load_square(path: str | os.PathLike, size: int) -> Image.Image:
    """An image as the network sees an upload (shorter side ``size``), centre-cropped to ``size²``."""
    try:
        image = resize_for_network(load_image(path), size)
    except ImageError as error:
        raise ImageError(f"{path}: {error}") from error
    left, top = (image.width - size) // 2, (image.height - size) // 2
    return image.crop((left, top, left + size, top + size))


class SquareImages(torch.utils.data.Dataset):
    """The samples' images as ``size × size × 3`` uint8 tensors (:func:`load_square`), for a
    ``torch.utils.data.DataLoader`` that decodes JPEGs in worker processes while the network runs."""

    def __init__(self, samples: Sequence[Sample], size: int):
        self.paths = [str(sample.path) for sample in samples]
        self.size = int(size)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> torch.Tensor:
        return torch.from_numpy(np.asarray(load_square(self.paths[index], self.size), dtype=np.uint8).copy())


def draw_pairs(labels: Sequence[int], count: int | None = None, *, seed: int = PAIR_SEED) -> list[tuple[int, int]]:
    """Up to ``count`` disjoint pairs ``(i, j)`` of indices whose labels differ, drawn with ``seed``.

    The indices are shuffled with ``random.Random(seed)``; each image in turn, if still free, is
    paired with the next free image of another label. ``count=None`` takes as many as there are.
    The same labels and seed give the same pairs, whatever else runs.
    """
    if count is not None and count < 0:
        raise ValueError(f"The number of pairs must not be negative; got {count}.")
    order = list(range(len(labels)))
    random.Random(seed).shuffle(order)
    free = set(order)
    pairs: list[tuple[int, int]] = []
    for position, first in enumerate(order):
        if count is not None and len(pairs) >= count:
            break
        if first not in free:
            continue
        partner = next((j for j in order[position + 1 :] if j in free and labels[j] != labels[first]), None)
        if partner is None:
            continue
        free -= {first, partner}
        pairs.append((first, partner))
    return pairs
