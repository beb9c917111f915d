"""The Sweeps tab: one setting varied, every other as on the page (the paper's Figs. 5, 6, 7).

``/sweep_q`` (Q = 2…8, with each clustering's silhouette), ``/sweep_layers`` (then
``max_layers``) and ``/sweep_eigenvectors`` (spectral, K = 1…8) all take the settings block;
the swept setting's own value in it is ignored. Each setting is explained through the app's cache
(:func:`~clustercamapp.engine.explain_cached`), so coming back to one is free. A sweep is a study
(:mod:`clustercamapp.lanes`): its cost (Cluster-CAM's ``1 + Q`` passes for each setting not
cached yet) is stated before it runs and refused above the budget; it runs in the study lane on
the study copy of the model and stops between batches when replaced or abandoned.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gradio as gr

from clustercam import render
from clustercam.clustering import cluster_quality
from clustercam.imaging import ImageError
from clustercam.methods import ClusterCAM
from clustercam.zoo import LayerInfo, ModelSpec

from .. import drawing, files, lanes, style
from ..checks import expect_whole, named
from ..common import user_errors
from ..controls import Controls
from ..engine import RESULTS, cache_key, explain_cached, image_digest
from ..gpu import duration_for, gpu_task
from ..i18n import DEFAULT_LANGUAGE, T, request_language, say
from ..settings import Settings, listener_arguments, takes_settings

#: Q values of the cluster sweep (Fig. 6) and K values of the eigenvector sweep (Fig. 7).
SWEEP_Q_VALUES: Sequence[int] = tuple(range(2, 9))
SWEEP_K_VALUES: Sequence[int] = tuple(range(1, 9))


def sweep_cost(
    data: bytes, model: str, variants: Sequence[tuple[str, str, Settings]], what: str, advice: str
) -> lanes.StudyCost:
    """The sweep's cost: Cluster-CAM's ``1 + Q`` passes (the same at any layer) for each variant
    not in the app's cache yet."""
    digest = image_digest(data)
    return lanes.StudyCost(what, tuple(
        (caption, sum(ClusterCAM.planned_passes(0, **variant.options)))
        for caption, layer, variant in variants
        if RESULTS.get(cache_key(digest, model, layer, variant.options)) is None
    ), advice)


def run_sweep(
    settings: Settings, variants: Sequence[tuple[str, str, Settings]], progress: Any, kind: str,
    quality: bool = False,
) -> list[tuple[str, str]]:
    """Explain the image once per ``(caption, layer, settings)``, cached; overlays with captions.

    ``kind`` (``q``, ``layers``, ``k``) names the sweep in the progress bar and in a refusal. Runs as a
    study of :func:`sweep_cost` (refused with advice for a cheaper sweep). A setting the library refuses (e.g. Q above a layer's channels) is left out with a
    warning. With ``quality`` each caption also gives the silhouette of that clustering, ★ on the
    highest.
    """
    data, name = settings.image_bytes()
    language = request_language()
    advice = say("sweeps.advice.layers" if kind == "layers" else "sweeps.advice.q", language)
    cost = sweep_cost(data, settings.spec().name, variants, say(f"sweeps.what.{kind}", language), advice)
    return lanes.run_study(cost, lambda: _sweep(settings, data, name, variants, progress, kind, quality, language))


def _sweep(
    settings: Settings, data: bytes, name: str, variants: Sequence[tuple[str, str, Settings]], progress: Any,
    kind: str, quality: bool, language: str = DEFAULT_LANGUAGE,
) -> list[tuple[str, str]]:
    shared = settings.spec()
    spec = lanes.study_model(shared.name)
    lock = lanes.study_lock(shared.name)
    wanted = settings.target_index(shared)
    folder = files.output_dir()
    gallery, problems, silhouettes = [], [], []
    steps = progress.tqdm(variants, desc=say(f"sweeps.progress.{kind}", language)) if progress is not None else variants
    for index, (caption, layer, variant) in enumerate(steps):
        try:
            entry, _ = explain_cached(data, name, spec, layer, variant.options, lock=lock, threads=None)
        except ImageError:
            raise  # the image itself is unusable: no setting can work
        except ValueError as error:
            problems.append(f"{caption}: {error}")
            continue
        one = drawing.view_result(entry.explained.result, wanted, settings.beta)[0]
        shown = render.overlay(entry.display, one.heatmap, cmap=settings.colormap)
        label = say("sweeps.caption", language, setting=caption, base=one.base_index, scissors=one.scissors_index)
        if quality:
            result = entry.explained.result
            silhouette = cluster_quality(result.activations[0], result.labels[0])["silhouette"]
            silhouettes.append(silhouette)
            label = say("sweeps.silhouette", language, caption=label, value=silhouette)
        gallery.append((files.save_png(shown, folder / f"sweep_{index}.png"), label))
    if silhouettes:
        best = max(range(len(silhouettes)), key=lambda i: silhouettes[i])
        gallery[best] = (gallery[best][0], gallery[best][1] + " ★")
    if not gallery:
        raise ValueError(say("sweeps.none", language, problems="; ".join(problems)))
    for problem in problems:
        gr.Warning(problem)
    return gallery


def sweep_q(settings: Settings, progress: Any = None) -> list[tuple[str, str]]:
    """/sweep_q → heatmaps for Q = 2…8 (the paper's Fig. 6), other settings fixed.

    With spectral clustering and K = 0 (automatic), K follows Q (K = Q − 1). Each caption gives
    the silhouette score of that clustering (scikit-learn; ★ marks the highest).
    """
    layer = settings.layer_name(settings.spec())
    variants = [(f"Q = {q}", layer, settings.with_options(q=q)) for q in SWEEP_Q_VALUES]
    return run_sweep(settings, variants, progress, "q", quality=True)


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
        raise ValueError(say("sweeps.min_layers", count=max_layers))
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


def sweep_layers(settings: Settings, max_layers: float = 6, progress: Any = None) -> list[tuple[str, str]]:
    """/sweep_layers → heatmaps over the model's depth (the paper's Fig. 5).

    The layers are :func:`sweep_layer_selection` (at most ``max_layers``); each caption gives the
    layer as ``name · kind · channels×height×width``.
    """
    spec = settings.spec()
    settings.layer_name(spec)  # the sweep picks its own layers, but a layer that does not exist is still refused
    chosen = sweep_layer_selection(spec, expect_whole(max_layers, "max_layers", minimum=2))
    variants = [(info.label, info.name, settings) for info in chosen]
    return run_sweep(settings, variants, progress, "layers")


def sweep_eigenvectors(settings: Settings, progress: Any = None) -> list[tuple[str, str]]:
    """/sweep_eigenvectors → spectral Cluster-CAM heatmaps for K = 1…8 (Fig. 7)."""
    layer = settings.layer_name(settings.spec())
    variants = [(f"K = {k}", layer, settings.as_spectral(n_eigenvectors=k)) for k in SWEEP_K_VALUES]
    return run_sweep(settings, variants, progress, "k")


def sweep_passes(kind: str, settings: Settings, max_layers: Any = 6) -> int:
    """A sweep's cost in network passes at most (every setting not cached yet): 1 + Q per setting."""
    q = int(settings.options["q"])
    if kind == "q":
        return sum(1 + value for value in SWEEP_Q_VALUES)
    if kind == "layers":
        return expect_whole(max_layers, "max_layers", minimum=2) * (1 + q)
    return len(SWEEP_K_VALUES) * (1 + q)


def _sweep_task(kind: str, listener: Any) -> Any:
    """``listener`` as one GPU task on a ZeroGPU Space, declaring the sweep's cost."""

    def seconds(*args: Any, **kwargs: Any) -> int:
        try:
            settings, own = listener_arguments(listener, args, kwargs)
            return duration_for(sweep_passes(kind, settings, *own.values()))
        except Exception:  # a request the listener will refuse at once
            return duration_for(0)

    return gpu_task(duration=seconds)(listener)


#: The listeners exactly as Gradio calls them: the settings block (then ``max_layers``).
sweep_q_listener = _sweep_task("q", user_errors(takes_settings()(sweep_q)))
sweep_layers_listener = _sweep_task("layers", user_errors(takes_settings("max_layers")(sweep_layers)))
sweep_eigenvectors_listener = _sweep_task("k", user_errors(takes_settings()(sweep_eigenvectors)))


class SweepsTab:
    def __init__(self, controls: Controls):
        study = lanes.STUDY_LANE
        gallery = {"columns": 4, **style.GALLERY}
        gr.Markdown(T("sweeps.q_note"), elem_classes=["note"])
        self.q_run = gr.Button(T("sweeps.q_run"), elem_id="sweep-q-btn")
        self.q_gallery = gr.Gallery(label=T("sweeps.q_gallery"), elem_id="sweep-q-gallery", **gallery)
        gr.Markdown(T("sweeps.layers_note"), elem_classes=["note"])
        with gr.Row():
            self.max_layers = named(gr.Slider(2, 12, value=6, step=1, label=T("sweeps.max_layers"), elem_id="max-layers"),
                                    "max_layers")
            self.layers_run = gr.Button(T("sweeps.layers_run"), elem_id="sweep-layers-btn")
        self.layers_gallery = gr.Gallery(label=T("sweeps.layers_gallery"), elem_id="sweep-layers-gallery", **gallery)
        gr.Markdown(T("sweeps.k_note"), elem_classes=["note"])
        self.k_run = gr.Button(T("sweeps.k_run"), elem_id="sweep-k-btn")
        self.k_gallery = gr.Gallery(label=T("sweeps.k_gallery"), elem_id="sweep-k-gallery", **gallery)
        self.stop = gr.Button(T("sweeps.stop"), variant="stop", elem_id="sweep-stop")
        settings = controls.settings()
        running = [
            self.q_run.click(sweep_q_listener, settings, [self.q_gallery], api_name="sweep_q", **study),
            self.layers_run.click(
                sweep_layers_listener, [*settings, self.max_layers], [self.layers_gallery],
                api_name="sweep_layers", **study,
            ),
            self.k_run.click(
                sweep_eigenvectors_listener, settings, [self.k_gallery],
                api_name="sweep_eigenvectors", **study,
            ),
        ]
        # Gradio drops the events; a running sweep notices between two batches and stops
        self.stop.click(None, None, None, cancels=running, api_visibility="private", queue=False)
