"""What the page shows, computed from an explanation: pictures, captions, tables, texts.

Pure: tensors, PIL images and plain data in, PIL images, strings, dicts and DataFrames out. No
components and no files here (writing and serving them is :mod:`clustercamapp.files`), so every
function can be tested on its own and reused by the CLI or a notebook. Words come from the page's
table of strings (:mod:`clustercamapp.i18n`) in the language the caller passes (a
:class:`View`'s), English by default; the menus' entries are translation keys the browser resolves.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import torch
from PIL import Image

from clustercam import render
from clustercam.methods import PRESETS, ClusterCAMResult, ClusterExplanation
from clustercam.methods.cluster import INERT_BETA
from clustercam.pipeline import summary as library_summary
from clustercam.zoo import ModelSpec

from .i18n import DEFAULT_LANGUAGE, T, say


def view_result(result: ClusterCAMResult, target: int | None, beta: float) -> ClusterCAMResult:
    """``result`` explained for ``target`` (None: as computed, the top-1) with ``beta``.

    Pure tensor work (eq. 22 and a gather of the cached scores): no forward pass.
    """
    if target is not None and int(result.targets[0]) != target:
        result = result.retarget(target)
    return result.reweight(beta)


def class_label(spec: ModelSpec, index: int) -> str:
    return f"{spec.categories[index]} · #{index}"


def preset_choices() -> list[tuple[Any, str]]:
    """Choices of the preset dropdown: each preset with what it computes and its measured figures
    (translated in the browser: :func:`clustercamapp.i18n.preset_label`)."""
    return [(T(f"preset_choice.{name}"), name) for name in PRESETS]


def target_choices(spec: ModelSpec) -> list[tuple[Any, str]]:
    """Choices of the class dropdown: top-1 (empty value) and every class by index."""
    return [(T("controls.top1"), "")] + [
        (class_label(spec, index), str(index)) for index in range(len(spec.categories))
    ]


def top5_choices(spec: ModelSpec, one: ClusterExplanation) -> list[tuple[str, str]]:
    """The predicted top-5 as quick target choices: ``"Egyptian cat · 42.1 %"`` → ``"285"``."""
    return [
        (f"{spec.categories[index]} · {100 * p:.1f} %", str(index))
        for index, p in zip(one.top_classes, one.top_probabilities, strict=True)
    ]


def role_key(one: ClusterExplanation, q: int) -> str:
    """``"base"`` / ``"scissors"`` for the clusters of eqs. 20–21, else ``""``."""
    return "base" if q == one.base_index else "scissors" if q == one.scissors_index else ""


def role(one: ClusterExplanation, q: int, language: str = DEFAULT_LANGUAGE) -> str:
    """``"BASE"`` / ``"SCISSORS"`` (in ``language``) for the clusters of eqs. 20–21, else ``""``."""
    key = role_key(one, q)
    return say(f"drawing.role.{key}", language) if key else ""


def tile_caption(one: ClusterExplanation, q: int, language: str = DEFAULT_LANGUAGE) -> str:
    """A short caption under a tile: cluster, role, score (``cluster 2 · BASE · p 0.912``)."""
    label, score = role(one, q, language), float(one.scores[q])
    if label:
        return say("drawing.tile_role", language, q=q, role=label, score=score)
    return say("drawing.tile", language, q=q, score=score)


def cluster_tiles(one: ClusterExplanation, size: tuple[int, int], language: str = DEFAULT_LANGUAGE,
                  resized: list[np.ndarray] | None = None) -> list[tuple[Image.Image, str]]:
    """The Q cluster mean maps (eq. 18) with short captions; base solid-framed, scissors dashed
    (``resized``: :func:`clustercam.render.resized_masks` at ``size``, when already made)."""
    tiles = render.cluster_tiles(one, size, resized=resized)
    return [(tile, tile_caption(one, q, language)) for q, tile in enumerate(tiles)]


def feature_tiles(activations: Any, labels: Any, size: tuple[int, int], count: int,
                  language: str = DEFAULT_LANGUAGE) -> list[tuple[Image.Image, str]]:
    """The ``count`` most active of a layer's feature maps ``(N, h, w)``, each scaled to ``[0, 1]``
    on its own and coloured, captioned with its channel and the cluster it joined."""
    means = activations.float().mean(dim=(-2, -1))
    chosen = means.argsort(descending=True)[:count].tolist()
    tiles = []
    for channel in chosen:
        values = activations[channel].float()
        low, high = float(values.min()), float(values.max())
        scaled = (values - low) / (high - low) if high > low else values * 0
        caption = say("drawing.feature_tile", language, channel=channel, cluster=int(labels[channel]))
        tiles.append((render.colorize(render.resize_heatmap(scaled, size)), caption))
    return tiles


def masked_tiles(one: ClusterExplanation, thumbnail: Image.Image, baseline: Any, language: str = DEFAULT_LANGUAGE,
                 resized: list[np.ndarray] | None = None) -> list[tuple[Image.Image, str]]:
    """The Q masked inputs X∘H_q (eq. 19), as the network saw them, with short captions."""
    tiles = render.masked_tiles(one, thumbnail, baseline, resized=resized)
    return [(tile, tile_caption(one, q, language)) for q, tile in enumerate(tiles)]


def role_maps(one: ClusterExplanation, size: tuple[int, int], cmap: str) -> tuple[Image.Image, Image.Image]:
    """The two maps eq. 22 mixes, coloured as the heatmap: ``(base F̃_base, scissors F̃_scissors)``."""
    base = render.frame(render.colorize(render.resize_heatmap(one.masks[one.base_index], size), cmap), render.BASE_COLOR, 4)
    scissors = render.frame(
        render.colorize(render.resize_heatmap(one.masks[one.scissors_index], size), cmap), render.SCISSORS_COLOR, 4, dashed=True
    )
    return base, scissors


def scores_table(spec: ModelSpec, one: ClusterExplanation, language: str = DEFAULT_LANGUAGE) -> pd.DataFrame:
    """The details of the tiles: cluster, role, number of maps, and the score ``y_q`` (eq. 19)."""
    name = spec.categories[one.target]
    clusters = range(len(one.cluster_sizes))

    return pd.DataFrame(
        {
            say("drawing.column.cluster", language): list(clusters),
            say("drawing.column.role", language): [role(one, q, language).lower() or "—" for q in clusters],
            say("drawing.column.maps", language): list(one.cluster_sizes),
            f"p({name})": [round(float(score), 6) for score in one.scores.tolist()],
        }
    )


def scores_chart(spec: ModelSpec, one: ClusterExplanation) -> Image.Image:
    return render.scores_plot(one, class_name=spec.categories[one.target])


_THIRDS = (("top", "middle", "bottom"), ("left", "centre", "right"))


def where(heatmap: torch.Tensor | np.ndarray, language: str = DEFAULT_LANGUAGE) -> str:
    """Where a heatmap's mass lies, in words ("top left", "centre", "right", …), for alt text."""
    values = np.clip(np.nan_to_num(render.to_numpy(heatmap)), 0, None).astype(np.float64)
    total = values.sum()
    if total <= 0:
        return say("drawing.where.nowhere", language)
    rows, columns = np.indices(values.shape)
    y = float((rows * values).sum() / total) / max(1, values.shape[0] - 1)
    x = float((columns * values).sum() / total) / max(1, values.shape[1] - 1)
    vertical, horizontal = _THIRDS[0][min(2, int(y * 3))], _THIRDS[1][min(2, int(x * 3))]
    words = {name: say(f"drawing.where.{name}", language) for name in (vertical, horizontal)}
    if vertical == "middle":
        return words[horizontal]
    if horizontal == "centre":
        return words[vertical]
    return say("drawing.where.pair", language, vertical=words[vertical], horizontal=words[horizontal])


def overlay_alt(spec: ModelSpec, one: ClusterExplanation, language: str = DEFAULT_LANGUAGE) -> str:
    """Alt text of the overlay: what it shows and where the heat is."""
    return say("drawing.overlay_alt", language, name=spec.categories[one.target], beta=one.beta,
               where=where(one.heatmap, language))


def beta_note(result: ClusterCAMResult, language: str = DEFAULT_LANGUAGE,
              effect: Callable[[], float] | None = None) -> str:
    """A sentence under the β slider when β's effect needs explaining, else ``""``.

    β = 0 keeps only "minus the scissors", which the output scaling clips to nothing: the map is
    blank. Under a combination where β barely acts on this explanation (the heatmap at β = 0.5
    within :data:`~clustercam.methods.cluster.INERT_BETA` of β = 1's, e.g. the gated variant),
    say so and name the formula, so that a still picture is not mistaken for a broken slider.
    ``effect``: gives β's effect for this explanation (e.g. memoised); by default it is computed.
    """
    one = result[0]
    if float(one.heatmap.max()) <= 0:
        return say("drawing.beta_zero" if one.beta == 0 else "drawing.empty", language)
    acts = effect() if effect is not None else float(result.beta_effect()[0])
    if acts < INERT_BETA:
        return say("drawing.beta_barely", language, effect=100 * acts, formula=result.cognition.formula)
    return ""


def heatmap_label(result: ClusterCAMResult, language: str = DEFAULT_LANGUAGE) -> str:
    """The heading of the heatmap: the formula the explanation computed (eq. 22 or a variant)."""
    return say("drawing.heatmap_label", language, formula=result.cognition.formula)


#: Kept confidences closer than this at β and at β = 1 are said to be the same.
SAME_CONFIDENCE = 0.02


def heat_area(heatmap: torch.Tensor) -> float:
    """Percentage of the image where a heatmap (scaled to ``[0, 1]``) is at least half its peak."""
    peak = float(heatmap.max())
    return 100.0 * float((heatmap >= 0.5 * peak).double().mean()) if peak > 0 else 0.0


def heat_areas(result: ClusterCAMResult) -> tuple[float, float]:
    """:func:`heat_area` of the first heatmap of ``result`` at its β and at β = 1 (eq. 22 again
    on the cached maps: no network work)."""
    return heat_area(result[0].heatmap), heat_area(result.reweight(1.0)[0].heatmap)


def tradeoff_markdown(class_name: str, beta: float, kept: dict[float, float], full: float,
                      areas: tuple[float, float], language: str = DEFAULT_LANGUAGE) -> str:
    """The number beside the heatmap: what the network keeps of ``class_name`` on the image masked
    by the heatmap at this β and at β = 1, and what β does here, as measured: more, as much or
    less of the class kept than at β = 1 (within :data:`SAME_CONFIDENCE`), and the share of the
    image the heat covers at both (``areas``, :func:`heat_areas`); β ≥ 0.95 is the faithful end."""
    here, top = kept[round(beta, 4)], kept[1.0]
    if beta >= 0.95:
        end = "faithful"
    else:
        end = "more" if here > top + SAME_CONFIDENCE else "less" if here < top - SAME_CONFIDENCE else "same"
    area, area_top = areas
    return say("drawing.tradeoff", language, beta=beta, here=here, top=top, full=full, name=class_name,
               end=say(f"drawing.end.{end}", language, beta=beta, area=area, area_top=area_top))


def tradeoff_chart(class_name: str, beta: float, kept: dict[float, float], full: float) -> Image.Image:
    """The curve over β (:func:`clustercam.render.tradeoff_plot`) with the current β marked."""
    grid = sorted(kept)
    return render.tradeoff_plot(grid, [kept[b] for b in grid], full, beta, kept[round(beta, 4)], class_name=class_name)


def summary_data(
    entry: Any, result: ClusterCAMResult, *, cached: bool, passes: int, seconds: float
) -> dict[str, Any]:
    """The library's summary of the shown explanation plus names and this request's cost.

    ``entry`` is a :class:`~clustercamapp.engine.CachedExplanation`. ``forward_passes`` /
    ``seconds`` are the explanation's own cost (when it was computed); ``request`` says what
    *this* request did: its network passes (0 when served from the cache or re-rendered for
    another β or target) and its server time.
    """
    data = library_summary(dataclasses.replace(entry.explained, result=result))
    one = result[0]
    data["image_size"] = list(entry.original_size)
    for name, index in (("base", one.base_index), ("scissors", one.scissors_index)):
        data[name] = {"cluster": index, "maps": one.cluster_sizes[index], "score": round(float(one.scores[index]), 6)}
    data["target_name"] = entry.spec.categories[one.target]
    data["request"] = {"forward_passes": passes, "cached": cached, "server_seconds": round(seconds, 4)}
    return data


def summary_markdown(data: dict[str, Any], language: str = DEFAULT_LANGUAGE) -> str:
    """A short, projector-friendly account of :func:`summary_data` (equations as secondary text)."""
    target, base, scissors, request = data["target"], data["base"], data["scissors"], data["request"]
    return say(
        "drawing.summary", language, name=target["name"], probability=target["probability"],
        base=base["cluster"], base_maps=base["maps"], base_score=base["score"],
        scissors=scissors["cluster"], scissors_maps=scissors["maps"], scissors_score=scissors["score"],
        formula=data["formula"], beta=data["beta"], q=data["q"], preset=data["preset"], layer=data["layer"],
        model=data["model"], forward=data["forward_passes"], backward=data["backward_passes"],
        seconds=data["seconds"], device=data["device"], request_forward=request["forward_passes"],
        request_ms=1000 * request["server_seconds"],
        now=say("drawing.cached" if request["cached"] else "drawing.computed", language),
    )


# ---- one view of an explanation, drawn ---------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class View:
    """What the page shows of one explanation: the class (None: the top-1), β, the colormap and
    the language of its words."""

    target: int | None
    beta: float
    colormap: str
    language: str = DEFAULT_LANGUAGE


#: The parts a view can draw: ``maps`` (the heatmap over the image, and alone), ``roles`` (the base
#: and scissors maps), ``note`` (the sentence under β), ``top5`` (the top-5 as class choices),
#: ``details`` (tiles, masked images, score chart and table) and ``curve`` (the β trade-off, chart
#: and words; needs the kept confidences).
PARTS = frozenset({"maps", "roles", "note", "top5", "details", "curve"})


@dataclasses.dataclass
class Pictures:
    """A view drawn: pictures (PIL) and texts, None for the parts not asked for."""

    result: ClusterCAMResult
    beta_note: str | None = None
    overlay: Image.Image | None = None
    heatmap: Image.Image | None = None
    base_map: Image.Image | None = None
    scissors_map: Image.Image | None = None
    clusters: list[tuple[Image.Image, str]] | None = None
    masked: list[tuple[Image.Image, str]] | None = None
    scores_chart: Image.Image | None = None
    scores_table: pd.DataFrame | None = None
    top5: list[tuple[str, str]] | None = None
    tradeoff_chart: Image.Image | None = None
    tradeoff_markdown: str | None = None


def render_view(entry: Any, view: View, parts: frozenset[str] | set[str] = PARTS,
                kept: dict[float, float] | None = None) -> Pictures:
    """Draw ``parts`` of ``view`` of a cached explanation (``clustercamapp.engine.CachedExplanation``):
    a pure function of the explanation, the view and the kept confidences (no file, no Gradio, no
    network; β's effect for the note is memoised on the explanation, :meth:`~clustercamapp.engine.CachedExplanation.beta_effect`).
    The heatmaps are the library's (``result.retarget(c).reweight(β)``)."""
    unknown = set(parts) - PARTS
    if unknown:
        raise ValueError(f"Unknown parts {sorted(unknown)}; choose from {sorted(PARTS)}.")
    result = view_result(entry.explained.result, view.target, view.beta)
    one, spec, cmap, language = result[0], entry.spec, view.colormap, view.language
    pictures = Pictures(result=result)
    if "note" in parts:
        pictures.beta_note = beta_note(result, language, lambda: entry.beta_effect(int(one.target)))
    if "maps" in parts:
        shown = render.resize_heatmap(one.heatmap, entry.display.size)
        pictures.overlay = render.overlay(entry.display, shown, cmap=cmap)
        pictures.heatmap = render.colorize(render.resize_heatmap(one.heatmap, entry.thumbnail.size), cmap)
    if "roles" in parts:
        pictures.base_map, pictures.scissors_map = role_maps(one, entry.thumbnail.size, cmap)
    if "details" in parts:
        resized = render.resized_masks(one, entry.thumbnail.size)  # once for both galleries
        pictures.clusters = cluster_tiles(one, entry.thumbnail.size, language, resized)
        pictures.masked = masked_tiles(one, entry.thumbnail, entry.explained.baseline_color, language, resized)
        pictures.scores_chart = scores_chart(spec, one)
        pictures.scores_table = scores_table(spec, one, language)
    if "top5" in parts:
        pictures.top5 = top5_choices(spec, one)
    if "curve" in parts:
        if kept is None:
            raise ValueError("The β curve needs the kept confidences (CachedExplanation.kept_confidence).")
        name, full = spec.categories[one.target], float(one.target_probability)
        pictures.tradeoff_chart = tradeoff_chart(name, one.beta, kept, full)
        pictures.tradeoff_markdown = tradeoff_markdown(name, one.beta, kept, full, heat_areas(result), language)
    return pictures
