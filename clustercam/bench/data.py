"""The benchmark's data: labelled folders, the tuning/reporting split, images and pairs.

**Folders.** A folder holds images and a ``labels.csv`` with the columns ``file,class_index``
(more columns are ignored; ``class_index`` is the ILSVRC-2012 index, the sorted-synset order of
torchvision and timm), or the ILSVRC-2012 validation layout: ``ILSVRC2012_val_*.JPEG`` files with
``LOC_val_solution.csv`` or the devkit (``ILSVRC2012_devkit_t12``) in the folder or next to it
(:func:`ilsvrc_rows`). Several folders can be read as one collection.

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
        if any(folder.glob(ILSVRC_PATTERN)):
            return ilsvrc_rows(folder, classes)
        raise ValueError(
            f"{folder} has no labels.csv (columns: file,class_index) and no ILSVRC2012_val_*.JPEG files."
        )
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


# ---- the ILSVRC-2012 validation layout ----------------------------------------------------------

ILSVRC_PATTERN = "ILSVRC2012_val_*.JPEG"
LOC_SOLUTION = "LOC_val_solution.csv"
DEVKIT = "ILSVRC2012_devkit_t12"


def synset_indices() -> dict[str, int]:
    """WordNet id → class index: the sorted-synset order of torchvision and timm (timm's table)."""
    from timm.data import ImageNetInfo

    info = ImageNetInfo()
    return {info.index_to_label_name(index): index for index in range(info.num_classes())}


def _find(folder: Path, name: str) -> Path | None:
    for place in (folder / name, folder.parent / name):
        if place.exists():
            return place
    return None


def ilsvrc_rows(folder: Path, classes: int | None = None) -> list[Sample]:
    """Samples of a folder in the ILSVRC-2012 validation layout: ``ILSVRC2012_val_*.JPEG`` files
    labelled by ``LOC_val_solution.csv`` (the first synset of each row) or by the devkit's
    ``data/ILSVRC2012_validation_ground_truth.txt`` with ``data/meta.mat`` (devkit ids → synsets),
    found in the folder or next to it. Every image needs a label; messages name the file and line."""
    images = sorted(folder.glob(ILSVRC_PATTERN))
    wnid_index = synset_indices()
    solution, devkit = _find(folder, LOC_SOLUTION), _find(folder, DEVKIT)
    if solution is not None:
        labels, source = _loc_labels(solution, wnid_index), solution
    elif devkit is not None:
        labels, source = _devkit_labels(devkit, wnid_index), devkit / "data" / "ILSVRC2012_validation_ground_truth.txt"
    else:
        raise ValueError(
            f"{folder} holds ILSVRC2012_val_*.JPEG files but no labels: put {LOC_SOLUTION} or the devkit folder "
            f"{DEVKIT} (with data/meta.mat and data/ILSVRC2012_validation_ground_truth.txt) in it or next to it, "
            "or write a labels.csv (file,class_index)."
        )
    rows = []
    for path in images:
        if path.stem not in labels:
            raise ValueError(f"{source} has no label for {path.name}.")
        label, line = labels[path.stem]
        if classes is not None and label >= classes:
            raise ValueError(f"{source}, line {line}: class {label} is out of range for a model of {classes} classes.")
        rows.append(Sample(path.name, path, label, line, split_of(path.name)))
    return rows


def _loc_labels(solution: Path, wnid_index: Mapping[str, int]) -> dict[str, tuple[int, int]]:
    """``{image id: (class index, line)}`` from ``LOC_val_solution.csv``."""
    labels = {}
    with solution.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        if not {"ImageId", "PredictionString"} <= set(reader.fieldnames or ()):
            raise ValueError(f"{solution} needs the columns ImageId,PredictionString.")
        for row in reader:
            where = f"{solution}, line {reader.line_num}"
            image, words = (row.get("ImageId") or "").strip(), (row.get("PredictionString") or "").split()
            if not image or not words:
                raise ValueError(f"{where}: an empty ImageId or PredictionString.")
            if words[0] not in wnid_index:
                raise ValueError(f"{where}: '{words[0]}' is not one of the 1000 ILSVRC-2012 synsets.")
            labels[image] = (wnid_index[words[0]], reader.line_num)
    return labels


def _devkit_labels(devkit: Path, wnid_index: Mapping[str, int]) -> dict[str, tuple[int, int]]:
    """``{image id: (class index, line)}`` from the devkit's ground truth and ``meta.mat``."""
    import scipy.io

    meta, truth = devkit / "data" / "meta.mat", devkit / "data" / "ILSVRC2012_validation_ground_truth.txt"
    for needed in (meta, truth):
        if not needed.is_file():
            raise ValueError(f"The devkit at {devkit} lacks {needed.relative_to(devkit)}.")
    synsets = scipy.io.loadmat(meta, squeeze_me=True)["synsets"]
    id_wnid = {int(row["ILSVRC2012_ID"]): str(row["WNID"]) for row in synsets if int(row["num_children"]) == 0}
    labels = {}
    for line, text in enumerate(truth.read_text(encoding="utf-8").splitlines(), start=1):
        try:
            devkit_id = int(text.strip())
        except ValueError:
            raise ValueError(f"{truth}, line {line}: '{text.strip()}' is not a devkit class id.") from None
        if devkit_id not in id_wnid or id_wnid[devkit_id] not in wnid_index:
            raise ValueError(f"{truth}, line {line}: devkit class id {devkit_id} is not an ILSVRC-2012 class.")
        labels[f"ILSVRC2012_val_{line:08d}"] = (wnid_index[id_wnid[devkit_id]], line)
    return labels
