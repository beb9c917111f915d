"""Serving pictures: response folders, PNG and ``.npy`` files, the one-zip download.

Every picture is written by us as a PNG file with a unique name inside Gradio's own cache folder
(``gradio.utils.get_upload_folder()``), and handed to Gradio as a path. Gradio serves such files
as they are (no copy) and its ``delete_cache`` removes them when they are old; because no two
requests share a file, concurrent identical requests (a classroom clicking one example) never
overwrite a file another response is still serving.
"""

from __future__ import annotations

import contextlib
import json
import re
import threading
import time
import uuid
import zipfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from gradio.utils import get_upload_folder
from PIL import Image

#: Empty response folders (their files removed by ``delete_cache``) are pruned this often.
PRUNE_EVERY = 600.0
_last_prune = [time.monotonic()]
_prune_lock = threading.Lock()


def output_dir() -> Path:
    """A new folder for one response's files, inside Gradio's cache (cleaned by ``delete_cache``)."""
    root = Path(get_upload_folder()) / "clustercam"
    folder = root / uuid.uuid4().hex
    folder.mkdir(parents=True, exist_ok=True)
    _prune_empty(root)
    return folder


def _prune_empty(root: Path) -> None:
    """Remove the empty response folders left once ``delete_cache`` deleted their files."""
    with _prune_lock:
        if time.monotonic() - _last_prune[0] < PRUNE_EVERY:
            return
        _last_prune[0] = time.monotonic()
    for folder in root.iterdir():
        with contextlib.suppress(OSError):  # not empty, or just removed by another request
            if folder.is_dir() and time.time() - folder.stat().st_mtime > PRUNE_EVERY:
                folder.rmdir()


def slug(text: str) -> str:
    """A file-name-safe version of ``text``."""
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower() or "image"


def save_png(image: Image.Image, path: Path) -> str:
    """Write ``image`` as PNG (fast compression: these files are re-made on every β move)."""
    image.save(path, format="PNG", compress_level=1)
    return str(path)


def save_npy(heatmap: torch.Tensor, path: Path) -> str:
    """The heatmap exactly as computed (float32, the network's input resolution)."""
    np.save(path, heatmap.detach().float().cpu().numpy())
    return str(path)


def save_jpeg(image: Image.Image, path: Path) -> str:
    """Write ``image`` as JPEG, quality 90: for photographs (the galleries' tiles, the heatmap over
    the image), 14× faster to encode than PNG and a sixth of its size for a tile
    (``benchmarks/drawing_cost.py``), 0.3 against 11 ms and 25 against 189 kB for a 451×300
    overlay; what must stay exact is the ``.npy`` heatmap."""
    image.convert("RGB").save(path, format="JPEG", quality=90)
    return str(path)


def save_gallery(items: Iterable[tuple[Image.Image, str]], folder: Path, prefix: str) -> list[tuple[str, str]]:
    """``(picture, caption)`` pairs written as ``prefix_<i>.jpg``: a Gradio gallery value."""
    return [(save_jpeg(picture, folder / f"{prefix}_{i}.jpg"), caption) for i, (picture, caption) in enumerate(items)]


def write_bundle(path: Path, files: Iterable[str], summary: dict[str, Any]) -> str:
    """One zip with every output of a response (pictures, the ``.npy`` heatmap) and
    ``summary.json``: what ``clustercam explain`` writes to its output folder. PNGs are stored
    (already compressed), so writing it costs little more than copying."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as bundle:
        for file in files:
            name = Path(file).name
            bundle.write(file, name, compress_type=zipfile.ZIP_DEFLATED if name.endswith(".npy") else zipfile.ZIP_STORED)
        bundle.writestr("summary.json", json.dumps(summary, indent=2, default=str))
    return str(path)
