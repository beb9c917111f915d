"""Handlers of the Compare tab (the paper's Fig. 1) and the Sweeps tab (Figs. 5, 6, 7).

They take the same inputs as /explain (image, model, layer, Q, β, clustering options, target) and
return galleries of heatmap overlays captioned with what changed. Each method or setting runs
under its model's lock (:func:`~clustercamapp.engine.model_lock`), one at a time, so other users'
requests interleave between them; ``gr.Progress`` follows the steps.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gradio as gr
import pandas as pd
import torch

from clustercam import render
from clustercam.clustering import cluster_quality
from clustercam.imaging import ImageError, load_image
from clustercam.methods import METHODS
from clustercam.metrics import average_drop, explanation_scores, increase_in_confidence
from clustercam.pipeline import explain_image
from clustercam.zoo import LayerInfo, ModelSpec

from . import views
from .common import (
    PROGRESS,
    checked_beta,
    cluster_options,
    gpu,
    read_image,
    target_index,
    user_errors,
    whole,
)
from .engine import (
    DISPLAY_SIDE,
    NETWORK_THREADS,
    explain_cached,
    get_model,
    model_lock,
    resolve_layer_name,
    torch_threads,
)

#: Display names of the registered methods (others show their registry name).
METHOD_TITLES = {
    "clustercam": "Cluster-CAM",
    "gradcam": "Grad-CAM",
    "gradcam++": "Grad-CAM++",
    "smoothgradcam++": "Smooth Grad-CAM++",
    "xgradcam": "XGrad-CAM",
    "ablationcam": "Ablation-CAM",
    "scorecam": "Score-CAM",
    "groupcam": "Group-CAM",
}
#: Methods left unticked by default on a CPU (one forward pass per channel: a minute per image).
SLOW_ON_CPU = ("scorecam",)
#: Q values of the cluster sweep (Fig. 6) and K values of the eigenvector sweep (Fig. 7).
SWEEP_Q_VALUES: Sequence[int] = tuple(range(2, 9))
SWEEP_K_VALUES: Sequence[int] = tuple(range(1, 9))
#: Columns of the comparison table; Y = p(target | X), O = p(target | X∘H) (see the tab's note).
COMPARE_COLUMNS = ["method", "seconds", "forward", "backward", "Y", "O", "average drop %", "increase"]


def method_choices() -> list[tuple[str, str]]:
    return [(METHOD_TITLES.get(name, name), name) for name in METHODS]


def default_methods(device: torch.device) -> list[str]:
    """Every registered method, less the slow ones on a CPU."""
    return [name for name in METHODS if device.type == "cuda" or name not in SLOW_ON_CPU]


@gpu
@user_errors
def compare(
    image: str | None,
    model: str,
    layer: str | None,
    q: float,
    beta: float,
    clustering: str,
    n_eigenvectors: float | None,
    sigma: float | None,
    theta: float | None,
    seed: float | None,
    target: str | None,
    methods: Sequence[str] | None,
    preset: str | None = None,
    similarity: str | None = None,
    normalize_rows: bool | None = None,
    progress: gr.Progress = PROGRESS,
) -> tuple[list[tuple[str, str]], pd.DataFrame]:
    """/compare → (gallery: the input then one overlay per method, table of costs and metrics).

    Every method explains the same image, layer and class; the caption and table give its
    seconds, forward/backward passes, and for this image ``Y`` (target probability), ``O`` (on the
    image masked by the heatmap), the average drop ``100·max(0, Y − O)/Y`` and whether the
    confidence increased (``O > Y``), measured with :mod:`clustercam.metrics`.
    """
    beta = checked_beta(beta)
    data, _ = read_image(image)
    chosen = [method for method in (methods or []) if method]
    if not chosen:
        raise gr.Error("Tick at least one method to compare.")
    unknown = [method for method in chosen if method not in METHODS]
    if unknown:
        raise gr.Error(f"Unknown method(s) {', '.join(unknown)}; choose from {', '.join(METHODS)}.")
    options = {**cluster_options(q, clustering, n_eigenvectors, sigma, theta, seed, preset, similarity, normalize_rows), "beta": beta}
    spec = get_model(model)
    layer = resolve_layer_name(spec, layer)
    wanted = target_index(spec, target)
    picture = load_image(data)
    display = picture.copy()
    display.thumbnail((DISPLAY_SIDE, DISPLAY_SIDE))
    folder = views.output_dir()
    gallery: list[tuple[str, str]] = []
    rows = []
    for method in progress.tqdm(chosen, desc="Methods"):
        title = METHOD_TITLES.get(method, method)
        with model_lock(spec.name), torch_threads(NETWORK_THREADS):
            explained = explain_image(
                spec, picture, method=method, layer=layer, target=wanted,
                **(options if method == "clustercam" else {}),
            )
            result = explained.result
            y, o = explanation_scores(
                spec.model, explained.inputs, result.heatmaps, result.targets,
                probabilities=result.target_probabilities(),
            )
        one = result[0]
        drop, increased = average_drop(y, o), increase_in_confidence(y, o) > 0
        if not gallery:
            caption = f"Input · target: {spec.categories[one.target]} (#{one.target}, p = {float(y[0]):.3f})"
            gallery.append((views.save_png(display, folder / "input.png"), caption))
        overlay = render.overlay(display, result.heatmaps[0])
        caption = (
            f"{title} · {one.seconds:.2f} s · {one.forward_passes} fwd / {one.backward_passes} bwd · "
            f"avg drop {drop:.1f} % · increase {'yes' if increased else 'no'}"
        )
        gallery.append((views.save_png(overlay, folder / f"{views.slug(method)}.png"), caption))
        rows.append([
            title, round(one.seconds, 3), one.forward_passes, one.backward_passes,
            round(float(y[0]), 4), round(float(o[0]), 4), round(drop, 2), "yes" if increased else "no",
        ])
    return gallery, pd.DataFrame(rows, columns=COMPARE_COLUMNS)


def _sweep(
    image: str | None,
    model: str,
    settings: Sequence[tuple[str, str, dict[str, Any]]],
    beta: float,
    target: str | None,
    progress: gr.Progress,
    desc: str,
    quality: bool = False,
) -> list[tuple[str, str]]:
    """Explain the image once per ``(caption, layer, options)``, cached; overlays with captions.

    A setting the library refuses (e.g. Q above a layer's channels) is left out with a warning.
    With ``quality`` each caption also gives the silhouette of that clustering, ★ on the highest.
    """
    beta = checked_beta(beta)
    data, name = read_image(image)
    spec = get_model(model)
    wanted = target_index(spec, target)
    folder = views.output_dir()
    gallery, problems, silhouettes = [], [], []
    for index, (caption, layer, options) in enumerate(progress.tqdm(settings, desc=desc)):
        try:
            entry, _ = explain_cached(data, name, spec, layer, options)
        except ImageError:
            raise  # the image itself is unusable: no setting can work
        except ValueError as error:
            problems.append(f"{caption}: {error}")
            continue
        one = views.view_result(entry, wanted, beta)
        shown = render.overlay(entry.display, one.heatmaps[0])
        item = one[0]
        label = f"{caption} · base {item.base_index} · scissors {item.scissors_index} · {entry.compute_seconds:.1f} s"
        if quality:
            result = entry.explained.result
            silhouette = cluster_quality(result.activations[0], result.labels[0])["silhouette"]
            silhouettes.append(silhouette)
            label += f" · silhouette {silhouette:.3f}"
        gallery.append((views.save_png(shown, folder / f"sweep_{index}.png"), label))
    if silhouettes:
        best = max(range(len(silhouettes)), key=lambda i: silhouettes[i])
        gallery[best] = (gallery[best][0], gallery[best][1] + " ★")
    if not gallery:
        raise gr.Error("No setting of this sweep could be explained: " + "; ".join(problems))
    for problem in problems:
        gr.Warning(problem)
    return gallery


@gpu
@user_errors
def sweep_q(
    image: str | None, model: str, layer: str | None, beta: float, clustering: str,
    n_eigenvectors: float | None, sigma: float | None, theta: float | None, seed: float | None,
    target: str | None, preset: str | None = None, similarity: str | None = None,
    normalize_rows: bool | None = None, progress: gr.Progress = PROGRESS,
) -> list[tuple[str, str]]:
    """/sweep_q → gallery of heatmaps for Q = 2…8 (the paper's Fig. 6), other settings fixed.

    With spectral clustering and K = 0 (automatic), K follows Q (K = Q − 1). Each caption gives
    the silhouette score of that clustering (scikit-learn; ★ marks the highest).
    """
    spec = get_model(model)
    layer = resolve_layer_name(spec, layer)
    settings = [
        (f"Q = {q}", layer, cluster_options(q, clustering, n_eigenvectors, sigma, theta, seed, preset, similarity, normalize_rows))
        for q in SWEEP_Q_VALUES
    ]
    return _sweep(image, model, settings, beta, target, progress, "Q", quality=True)


def _spread(items: list[str], count: int) -> list[str]:
    """``count`` evenly spaced items of ``items`` (first and last included), in order."""
    if count <= 0 or not items:
        return []
    if count >= len(items):
        return list(items)
    if count == 1:
        return [items[-1]]
    return [items[round(i * (len(items) - 1) / (count - 1))] for i in range(count)]


def sweep_layer_selection(spec: ModelSpec, max_layers: int) -> list[LayerInfo]:
    """The layers of the layer sweep (Fig. 5), in forward order, at most ``max_layers`` (≥ 2).

    Block-level layers only (names with at most one dot: ``blocks.3``, ``layer2``,
    ``features.12``). First the *stage ends*, the last block-level layer at each feature-map
    resolution (for VGG-16 the layers before each pooling, as in Fig. 5), and the model's
    default layer; remaining slots are filled with evenly spaced other block-level layers. With
    more stage ends than slots, an even spread of them is kept (the last one always).
    """
    if max_layers < 2:
        raise ValueError(f"The layer sweep needs at least 2 layers; got {max_layers}.")
    layers = spec.layers()
    blocks = [info for info in layers if info.name.count(".") <= 1] or layers
    ends = [
        current.name
        for current, following in zip(blocks, [*blocks[1:], None], strict=True)
        if following is None or (current.height, current.width) != (following.height, following.width)
    ]
    chosen = {spec.default_layer}
    chosen |= set(_spread([name for name in ends if name not in chosen], max_layers - len(chosen)))
    others = [info.name for info in blocks if info.name not in chosen]
    chosen |= set(_spread(others, max_layers - len(chosen)))
    return [info for info in layers if info.name in chosen]


@gpu
@user_errors
def sweep_layers(
    image: str | None, model: str, q: float, beta: float, clustering: str,
    n_eigenvectors: float | None, sigma: float | None, theta: float | None, seed: float | None,
    target: str | None, max_layers: float, preset: str | None = None, similarity: str | None = None,
    normalize_rows: bool | None = None, progress: gr.Progress = PROGRESS,
) -> list[tuple[str, str]]:
    """/sweep_layers → gallery of heatmaps over the model's depth (the paper's Fig. 5).

    The layers are :func:`sweep_layer_selection` (at most ``max_layers``); each caption gives the
    layer as ``name · kind · channels×height×width``.
    """
    spec = get_model(model)
    options = cluster_options(q, clustering, n_eigenvectors, sigma, theta, seed, preset, similarity, normalize_rows)
    chosen = sweep_layer_selection(spec, whole(max_layers, "The number of layers", 1))
    settings = [(info.label, info.name, options) for info in chosen]
    return _sweep(image, model, settings, beta, target, progress, "Layers")


@gpu
@user_errors
def sweep_eigenvectors(
    image: str | None, model: str, layer: str | None, q: float, beta: float,
    sigma: float | None, theta: float | None, seed: float | None, target: str | None,
    preset: str | None = None, similarity: str | None = None, normalize_rows: bool | None = None,
    progress: gr.Progress = PROGRESS,
) -> list[tuple[str, str]]:
    """/sweep_eigenvectors → gallery of spectral Cluster-CAM heatmaps for K = 1…8 (Fig. 7)."""
    spec = get_model(model)
    layer = resolve_layer_name(spec, layer)
    settings = [
        (f"K = {k}", layer, cluster_options(q, "spectral", k, sigma, theta, seed, preset, similarity, normalize_rows))
        for k in SWEEP_K_VALUES
    ]
    return _sweep(image, model, settings, beta, target, progress, "K")
