"""From a cached explanation to what the page shows: PNG files, gallery items, summaries.

Every picture is written by us as a PNG file with a unique name inside Gradio's own cache folder
(``gradio.utils.get_upload_folder()``), and handed to Gradio as a path. Gradio serves such files
as they are (no copy) and its ``delete_cache`` removes them when they are old; because no two
requests share a file, concurrent identical requests (a classroom clicking one example) never
overwrite a file another response is still serving.
"""

from __future__ import annotations

import contextlib
import dataclasses
import re
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from gradio.utils import get_upload_folder
from PIL import Image

from clustercam import render
from clustercam.methods import PRESETS, ClusterCAMResult, ClusterExplanation
from clustercam.methods.cluster import PRESET_NOTES
from clustercam.pipeline import summary as library_summary
from clustercam.zoo import ModelSpec

from .engine import HEATMAP_SIDE, CachedExplanation

GalleryItems = list[tuple[str, str]]


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


def view_result(entry: CachedExplanation, target: int | None, beta: float) -> ClusterCAMResult:
    """The cached result explained for ``target`` (None: as computed, the top-1) with ``beta``.

    Pure tensor work (eq. 22 and a gather of the cached scores): no forward pass.
    """
    result = entry.explained.result
    if target is not None and int(result.targets[0]) != target:
        result = result.retarget(target)
    return result.reweight(beta)


def class_label(spec: ModelSpec, index: int) -> str:
    return f"{spec.categories[index]} · #{index}"


def preset_choices() -> list[tuple[str, str]]:
    """Choices of the preset dropdown: each preset with what it is for."""
    return [(f"{name} — {PRESET_NOTES.get(name, '')}".rstrip(" —"), name) for name in PRESETS]


def target_choices(spec: ModelSpec) -> list[tuple[str, str]]:
    """Choices of the class dropdown: top-1 (empty value) and every class by index."""
    return [("Top-1 prediction (default)", "")] + [
        (class_label(spec, index), str(index)) for index in range(len(spec.categories))
    ]


def top5_choices(spec: ModelSpec, one: ClusterExplanation) -> list[tuple[str, str]]:
    """The predicted top-5 as quick target choices: ``"Egyptian cat · 42.1 %"`` → ``"285"``."""
    return [
        (f"{spec.categories[index]} · {100 * p:.1f} %", str(index))
        for index, p in zip(one.top_classes, one.top_probabilities, strict=True)
    ]


def render_maps(entry: CachedExplanation, result: ClusterCAMResult, folder: Path) -> tuple[str, str, str]:
    """``(overlay PNG, coloured heatmap PNG, heatmap .npy)`` paths for ``result``.

    The overlay is at the display size, the heatmap picture at most
    :data:`~clustercamapp.engine.HEATMAP_SIDE` pixels wide (smooth, scaled by the browser); the
    ``.npy`` is the float32 ``[0, 1]`` heatmap at the
    network's input resolution (``H×W`` of the prepared image), exactly as computed.
    """
    heatmap = result.heatmaps[0]
    one = result[0]
    stem = f"{slug(entry.name)}_{slug(entry.spec.categories[one.target])}_beta{one.beta:.2f}"
    shown = render.resize_heatmap(heatmap, entry.display.size)
    overlay = save_png(render.overlay(entry.display, shown), folder / f"{stem}_overlay.png")
    width, height = entry.display.size
    scale = min(1.0, HEATMAP_SIDE / max(width, height))
    small = render.resize_heatmap(heatmap, (max(1, round(width * scale)), max(1, round(height * scale))))
    raw = save_png(render.colorize(small), folder / f"{stem}_heatmap.png")
    array = folder / f"{stem}_heatmap.npy"
    np.save(array, heatmap.detach().float().cpu().numpy())
    return overlay, raw, str(array)


def cluster_gallery(entry: CachedExplanation, one: ClusterExplanation, folder: Path) -> GalleryItems:
    """The Q cluster mean maps (eq. 18), base framed green and scissors red, with size and score."""
    tiles = render.cluster_tiles(one, entry.thumbnail.size)
    items = []
    for q, (tile, size, score) in enumerate(zip(tiles, one.cluster_sizes, one.scores.tolist(), strict=True)):
        caption = f"cluster {q} · {size} maps · p = {score:.4f}{role(one, q)}"
        items.append((save_png(tile, folder / f"cluster_{q}.png"), caption))
    return items


def role(one: ClusterExplanation, q: int) -> str:
    """`` · BASE`` / `` · SCISSORS`` for the clusters of eqs. 20–21, else nothing."""
    return " · BASE" if q == one.base_index else " · SCISSORS" if q == one.scissors_index else ""


def masked_gallery(entry: CachedExplanation, one: ClusterExplanation, folder: Path) -> GalleryItems:
    """The Q masked inputs X∘H_q (eq. 19) with the target's probability for each."""
    tiles = render.masked_tiles(one, entry.thumbnail, entry.explained.baseline_color)
    name = entry.spec.categories[one.target]
    items = []
    for q, (tile, score) in enumerate(zip(tiles, one.scores.tolist(), strict=True)):
        caption = f"X∘H{q} · p({name}) = {score:.4f}{role(one, q)}"
        items.append((save_png(tile, folder / f"masked_{q}.png"), caption))
    return items


#: Bar colours of the scores plot: base and scissors as in the paper's Fig. 3 (and render.py).
ROLE_COLORS = {"base": "#00aa46", "scissors": "#dc1e1e", "other": "#9aa5b1"}


def scores_table(one: ClusterExplanation) -> pd.DataFrame:
    """The Q scores ``y_q`` (eq. 19) as rows ``cluster, score, role, maps`` for ``gr.BarPlot``.

    Drawn by the browser (no server-side plotting: a target switch stays quick). Cluster labels
    are zero-padded so that the plot's alphabetical order is the numeric one (``07`` < ``10``).
    """
    width = len(str(len(one.cluster_sizes) - 1))
    return pd.DataFrame(
        {
            "cluster": [str(q).zfill(width) for q in range(len(one.cluster_sizes))],
            "score": [round(float(score), 6) for score in one.scores.tolist()],
            "role": [role(one, q).removeprefix(" · ").lower() or "other" for q in range(len(one.cluster_sizes))],
            "maps": one.cluster_sizes,
        }
    )


def scores_plot(one: ClusterExplanation) -> pd.DataFrame:
    """The value of the scores ``gr.BarPlot`` (base green, scissors red).

    Only the data: in Gradio 6.31 an update that sets the data *and* a property (``y_title``,
    ``sort``) redraws the axes but keeps the old bars, so the plot's labels are fixed in
    ``app.py`` and the class is named in the markdown summary.
    """
    return scores_table(one)


def summary_data(
    entry: CachedExplanation, result: ClusterCAMResult, *, cached: bool, passes: int, seconds: float
) -> dict[str, Any]:
    """The library's summary of the shown explanation plus names and this request's cost.

    ``forward_passes`` / ``seconds`` are the explanation's own cost (when it was computed);
    ``request`` says what *this* request did: its network passes (0 when served from the cache
    or re-rendered for another β or target) and its server time.
    """
    data = library_summary(dataclasses.replace(entry.explained, result=result))
    one = result[0]
    names = entry.spec.categories
    data["image_size"] = list(entry.original_size)
    data["base"] = {
        "cluster": one.base_index,
        "maps": one.cluster_sizes[one.base_index],
        "score": round(float(one.scores[one.base_index]), 6),
    }
    data["scissors"] = {
        "cluster": one.scissors_index,
        "maps": one.cluster_sizes[one.scissors_index],
        "score": round(float(one.scores[one.scissors_index]), 6),
    }
    data["target_name"] = names[one.target]
    data["request"] = {"forward_passes": passes, "cached": cached, "server_seconds": round(seconds, 4)}
    return data


def summary_markdown(data: dict[str, Any]) -> str:
    """A short, projector-friendly account of :func:`summary_data`."""
    rows = "\n".join(
        f"| {rank} | {entry['name']} | {100 * entry['probability']:.2f} % |"
        for rank, entry in enumerate(data["predicted_top5"], start=1)
    )
    target, base, scissors, request = data["target"], data["base"], data["scissors"], data["request"]
    cost = (
        f"{data['forward_passes']} forward passes (1 + Q), {data['backward_passes']} backward · "
        f"{data['seconds']:.2f} s on {data['device']} ({data['device_name']})"
    )
    now = "served from the cache" if request["cached"] else "computed now"
    return (
        f"**Explained class:** {target['name']} (#{target['index']}, p = {target['probability']:.4f})  \n"
        f"**Cognition base** (eq. 20): cluster {base['cluster']} · {base['maps']} maps · "
        f"p = {base['score']:.4f}  \n"
        f"**Cognition scissors** (eq. 21): cluster {scissors['cluster']} · {scissors['maps']} maps · "
        f"p = {scissors['score']:.4f}  \n"
        f"**Heatmap** (eq. 22): β = {data['beta']:.2f} · Q = {data['q']} · layer `{data['layer']}` of "
        f"{data['model']}  \n"
        f"**Cost:** {cost}  \n"
        f"**This request:** {request['forward_passes']} forward passes, {1000 * request['server_seconds']:.0f} ms "
        f"({now})\n\n"
        f"| # | predicted class | probability |\n|---|---|---|\n{rows}"
    )
