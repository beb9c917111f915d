"""Handlers of the Explain tab and the teaching example: Gradio types in, Gradio types out.

Each public function is one event listener; its parameters are the listener's inputs in order,
its return value the outputs in order (see ``app.py``). They call the library and raise
``gr.Error`` for every user mistake (:func:`~clustercamapp.common.user_errors`).

The session state (``gr.State``) is a small dict ``{"key", "target", "beta"}``: the cache key of
the explanation on screen (:mod:`clustercamapp.engine`), the class shown (None: the top-1) and β.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import gradio as gr

from clustercam.methods import DEFAULT_BETA
from clustercam.methods.cluster import preset_options
from clustercam.zoo import DEFAULT_MODEL, ModelSpec

from . import views
from .common import (
    PROGRESS,
    check_preset,
    checked_beta,
    cluster_options,
    gpu,
    read_image,
    target_index,
    user_errors,
)
from .engine import (
    RESULTS,
    CachedExplanation,
    explain_cached,
    forward_images,
    get_model,
    resolve_layer_name,
    torch_threads,
)

ASSETS = Path(__file__).resolve().parents[1] / "assets"
Session = dict[str, Any] | None

#: The two-object teaching example (cat left, espresso right) and its settings.
TEACH_IMAGE = ASSETS / "cat_and_coffee.jpg"
TEACH_TARGETS = ("Egyptian cat", "espresso")
TEACH_Q = 3


def _render(entry: CachedExplanation, target: int | None, beta: float, **flags: Any) -> dict[str, Any]:
    """Everything a response may show for ``entry`` explained for ``target`` with ``beta``
    (``flags``: those of :func:`_render_views`).

    Pure re-rendering on small tensors: one torch thread (see :mod:`clustercamapp.engine`).
    """
    with torch_threads(1):
        return _render_views(entry, target, beta, **flags)


def _render_views(
    entry: CachedExplanation,
    target: int | None,
    beta: float,
    *,
    galleries: bool,
    cached: bool,
    passes: int,
    started: float,
) -> dict[str, Any]:
    result = views.view_result(entry, target, beta)
    one = result[0]
    folder = views.output_dir()
    overlay, raw, array = views.render_maps(entry, result, folder)
    shown: dict[str, Any] = {"overlay": overlay, "heatmap": raw, "downloads": [overlay, array], "one": one}
    if galleries:
        shown["clusters"] = views.cluster_gallery(entry, one, folder)
        shown["masked"] = views.masked_gallery(entry, one, folder)
        shown["scores"] = views.scores_plot(one)
        shown["top5"] = gr.Radio(choices=views.top5_choices(entry.spec, one), value=str(one.target))
    seconds = time.perf_counter() - started
    data = views.summary_data(entry, result, cached=cached, passes=passes, seconds=seconds)
    shown["summary"], shown["markdown"] = data, views.summary_markdown(data)
    return shown


def _entry(session: Session) -> CachedExplanation | None:
    if not session or "key" not in session:
        return None
    entry = RESULTS.get(session["key"])
    if entry is None:
        raise gr.Error(
            "This explanation is no longer in the server's cache (it keeps the most recent ones "
            "for a limited time); press Explain again."
        )
    return entry


@gpu
@user_errors
def explain(
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
    preset: str | None = None,
    similarity: str | None = None,
    normalize_rows: bool | None = None,
    progress: gr.Progress = PROGRESS,
) -> tuple[Any, ...]:
    """/explain → (overlay, heatmap, clusters, masked, scores plot, summary, downloads, summary
    markdown, top-5 choices, session)."""
    started, passes_before = time.perf_counter(), forward_images()
    beta = checked_beta(beta)
    data, name = read_image(image)
    options = cluster_options(q, clustering, n_eigenvectors, sigma, theta, seed, preset, similarity, normalize_rows)
    progress(0.05, desc=f"Loading {model}")
    spec = get_model(model)
    layer = resolve_layer_name(spec, layer)
    wanted = target_index(spec, target)
    progress(0.2, desc="Feature maps, clustering and the Q masked passes")
    entry, cached = explain_cached(data, name, spec, layer, options)
    progress(0.85, desc="Drawing")
    shown = _render(
        entry, wanted, beta, galleries=True, cached=cached,
        passes=forward_images() - passes_before, started=started,
    )
    session = {"key": entry.key, "target": wanted, "beta": beta}
    return (
        shown["overlay"], shown["heatmap"], shown["clusters"], shown["masked"], shown["scores"],
        shown["summary"], shown["downloads"], shown["markdown"], shown["top5"], session,
    )


@user_errors
def reweight(beta: float, session: Session) -> tuple[Any, ...]:
    """/reweight → (overlay, heatmap, summary, downloads, summary markdown, session).

    Eq. 22 again from the cached base and scissors maps: no forward pass. Before any
    explanation there is nothing to redraw (outputs unchanged; β applies to the next Explain).
    """
    started, passes_before = time.perf_counter(), forward_images()
    beta = checked_beta(beta)
    entry = _entry(session)
    if entry is None:
        return (gr.skip(),) * 6
    shown = _render(
        entry, session["target"], beta, galleries=False, cached=True,
        passes=forward_images() - passes_before, started=started,
    )
    session = {**session, "beta": beta}
    return shown["overlay"], shown["heatmap"], shown["summary"], shown["downloads"], shown["markdown"], session


@user_errors
def retarget(target: str | None, session: Session) -> tuple[Any, ...]:
    """/retarget → (overlay, heatmap, clusters, masked, scores plot, summary, downloads, summary
    markdown, top-5 choices, class dropdown, session).

    Another class from the cached masked passes (they hold every class's probability) and the
    same clusters: new scores, base and scissors, no forward pass. ``target`` is a class index
    (as text) or name; empty means the top-1 prediction.
    """
    started, passes_before = time.perf_counter(), forward_images()
    entry = _entry(session)
    if entry is None:
        return (gr.skip(),) * 11
    wanted = target_index(entry.spec, target)
    shown = _render(
        entry, wanted, session["beta"], galleries=True, cached=True,
        passes=forward_images() - passes_before, started=started,
    )
    session = {**session, "target": wanted}
    dropdown = gr.update(value="" if wanted is None else str(wanted))
    return (
        shown["overlay"], shown["heatmap"], shown["clusters"], shown["masked"], shown["scores"],
        shown["summary"], shown["downloads"], shown["markdown"], shown["top5"], dropdown, session,
    )


@user_errors
def apply_preset(preset: str | None) -> tuple[Any, ...]:
    """Choosing a preset sets Q, β, the clustering and the spectral similarity to the preset's
    (its normalisation and combination apply to the next Explain)."""
    options = preset_options(check_preset(preset))
    clustering = options.get("clustering", "kmeans")
    return (
        gr.update(value=options["q"]), gr.update(value=options["beta"]), gr.update(value=clustering),
        gr.update(value=options.get("similarity", "euclidean")), gr.update(value=bool(options.get("normalize_rows", False))),
    )


def layer_table(spec: ModelSpec) -> list[dict[str, Any]]:
    return [
        {"name": info.name, "kind": info.kind, "channels": info.channels, "height": info.height, "width": info.width}
        for info in spec.layers()
    ]


@user_errors
def layers(model: str) -> tuple[Any, list[dict[str, Any]]]:
    """/layers → (layer dropdown with the model's layers, default selected; list of the layers)."""
    spec = get_model(model)
    choices = [(info.label, info.name) for info in spec.layers()]
    return gr.Dropdown(choices=choices, value=spec.default_layer), layer_table(spec)


def reset_target() -> tuple[str, Any, None]:
    """A new image: back to its top-1 class, no top-5 yet, nothing to redraw (UI only)."""
    return "", gr.Radio(choices=[], value=None), None


@gpu
@user_errors
def teach(target: str) -> tuple[str, list[tuple[str, str]], list[tuple[str, str]], str]:
    """The two-object example for ``target`` → (overlay, clusters, masked, explanation markdown).

    One Cluster-CAM run (cached) with Q = :data:`TEACH_Q` on the embedded model, explained for
    both classes by ``retarget``: the text says which cluster is base and scissors for each.
    """
    if target not in TEACH_TARGETS:
        raise gr.Error(f"The teaching example explains {' or '.join(TEACH_TARGETS)}; got {target!r}.")
    started = time.perf_counter()
    spec = get_model(DEFAULT_MODEL)
    data = TEACH_IMAGE.read_bytes()
    entry, _ = explain_cached(data, TEACH_IMAGE.stem, spec, spec.default_layer, {"q": TEACH_Q, "clustering": "kmeans", "seed": 0})
    roles = {}
    for name in TEACH_TARGETS:
        one = views.view_result(entry, spec.class_index(name), DEFAULT_BETA)[0]
        roles[name] = (one.base_index, one.scissors_index, float(one.scores[one.base_index]))
    shown = _render(entry, spec.class_index(target), DEFAULT_BETA, galleries=True, cached=True, passes=0, started=started)
    (cat_base, cat_scissors, _), (cup_base, cup_scissors, _) = roles[TEACH_TARGETS[0]], roles[TEACH_TARGETS[1]]
    if (cat_base, cat_scissors) == (cup_scissors, cup_base):
        verdict = "**Base and scissors swap places** when the target changes: the cluster that best keeps one object is the one that best removes the other."
    elif cat_base == cup_scissors or cup_base == cat_scissors:
        verdict = "One cluster changes role between base and scissors when the target changes."
    else:
        verdict = "Different clusters serve as base and scissors for the two targets."
    base, scissors = roles[target][0], roles[target][1]
    text = (
        f"### Target: {target}\n"
        f"Base (green frame) = cluster {base}, scissors (red frame) = cluster {scissors}.\n\n"
        f"| target | base | scissors |\n|---|---|---|\n"
        + "".join(f"| {name} | cluster {b} | cluster {s} |\n" for name, (b, s, _) in roles.items())
        + f"\n{verdict} The clusters are computed once (Q = {TEACH_Q}); switching the target only "
        "re-reads the scores of the masked images, with no new forward pass."
    )
    return shown["overlay"], shown["clusters"], shown["masked"], text

