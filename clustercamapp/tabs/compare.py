"""The Compare tab (the paper's Fig. 1): every ticked method on the same image, layer and class.

``/compare`` takes the settings block then ``methods``. It is a study (:mod:`clustercamapp.lanes`):
its cost in network passes is stated before it runs and refused above the server's budget; it
runs in the study lane on the study copy of the model, one method at a time under that copy's
lock, and stops between batches when the session sends a newer study or leaves. ``gr.Progress``
follows the methods. A method's title, whether it is too slow for a CPU, which options it takes
and how many passes it needs come from its class (:class:`clustercam.methods.BaseCAM`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gradio as gr
import pandas as pd
import torch
from PIL import Image

from clustercam import render
from clustercam.imaging import load_image
from clustercam.methods import METHODS
from clustercam.metrics import average_drop, explanation_scores, increase_in_confidence
from clustercam.pipeline import explain_image
from clustercam.zoo import ModelSpec

from .. import files, lanes, style, text
from ..checks import named, refused
from ..common import UserError, user_errors
from ..controls import Controls
from ..engine import DISPLAY_SIDE
from ..gpu import duration_for, gpu_task
from ..i18n import DEFAULT_LANGUAGE, T, request_language, say
from ..settings import Settings, listener_arguments, takes_settings

#: Columns of the comparison table (keys of the page's strings; ``Y`` = p(class | X) and ``O`` =
#: p(class | X∘H) are notation, the same in every language; see the tab's note).
COLUMN_KEYS = ["method", "time", "forward", "backward", "Y", "O", "drop", "increase", "tail"]


def columns(language: str | None = None) -> list[str]:
    """The comparison table's column names in ``language`` (default: the request's)."""
    return [key if key in ("Y", "O") else say(f"compare.column.{key}", language) for key in COLUMN_KEYS]



def method_choices() -> list[tuple[str, str]]:
    return [(cls.title, name) for name, cls in METHODS.items()]


def default_methods(device: torch.device, spec: ModelSpec | None = None) -> list[str]:
    """Every registered method, less the slow ones on a CPU and, given the model, less those
    that would take the comparison at its default layer over the server's study budget (so the
    page's default Compare is never refused)."""
    chosen = [name for name, cls in METHODS.items() if device.type == "cuda" or not cls.slow_on_cpu]
    if spec is None:
        return chosen
    fitting: list[str] = []
    for name in chosen:
        cost = lanes.compare_cost(spec, spec.default_layer, [*fitting, name], {}, budget=lanes.GATE.request_budget)
        if cost.total <= lanes.GATE.request_budget:
            fitting.append(name)
    return fitting


def check_methods(methods: Any) -> list[str]:
    """The ticked method names: a list of names of :data:`~clustercam.methods.METHODS` (a single
    name is read as a list of one)."""
    if isinstance(methods, str):
        methods = [methods]
    if methods is not None and not isinstance(methods, (list, tuple)):
        raise refused("methods", methods)
    if any(not isinstance(method, str) for method in methods or []):
        raise refused("methods", methods)
    chosen = [method for method in (methods or []) if method]
    if not chosen:
        raise UserError(say("compare.tick_one"))
    unknown = [method for method in chosen if method not in METHODS]
    if unknown:
        raise refused("methods", methods, say("checks.unknown_methods", names=", ".join(unknown), choices=", ".join(METHODS)))
    return chosen


def compare(
    settings: Settings, methods: Sequence[str] | None = None, progress: Any = None
) -> tuple[list[tuple[str, str]], pd.DataFrame]:
    """/compare → (gallery: the input then one overlay per method, table of costs and metrics).

    Every method explains the same image, layer and class; Cluster-CAM with the page's options
    (each method gets the options its class takes). The caption gives the method and its average
    drop; the table its seconds, forward/backward passes, ``Y`` (class probability), ``O`` (on the
    image masked by the heatmap), the average drop ``100·max(0, Y − O)/Y`` and whether the
    confidence increased (``O > Y``), measured with :mod:`clustercam.metrics`.
    """
    chosen = check_methods(methods)
    data, _ = settings.image_bytes()
    shared = settings.spec()
    layer, wanted = settings.layer_name(shared), settings.target_index(shared)
    options = {**settings.options, "beta": settings.beta}
    picture, language = load_image(data), request_language()
    cost = lanes.compare_cost(shared, layer, chosen, options, budget=lanes.GATE.request_budget,
                              shape=network_shape(picture, shared))
    return lanes.run_study(cost, lambda: _compare(
        lanes.study_model(shared.name), picture, layer, wanted, chosen, options, settings.colormap, progress, language
    ))


def _compare(
    spec: ModelSpec, picture: Image.Image, layer: str, wanted: int | None, chosen: list[str],
    options: dict[str, Any], colormap: str, progress: Any, language: str = DEFAULT_LANGUAGE,
) -> tuple[list[tuple[str, str]], pd.DataFrame]:
    """The comparison itself, on the study lane's copy of the model (see :func:`compare`)."""
    display = picture.copy()
    display.thumbnail((DISPLAY_SIDE, DISPLAY_SIDE))
    folder = files.output_dir()
    gallery: list[tuple[str, str]] = []
    rows = []
    steps = progress.tqdm(chosen, desc=say("compare.progress", language)) if progress is not None else chosen
    for method in steps:
        cls = METHODS[method]
        accepted = set(cls.option_names())
        with lanes.study_lock(spec.name):
            explained = explain_image(
                spec, picture, method=method, layer=layer, target=wanted, batch_size=lanes.STUDY_BATCH,
                **{key: value for key, value in options.items() if key in accepted},
            )
            result = explained.result
            y, o = explanation_scores(
                spec.model, explained.inputs, result.heatmaps, result.targets,
                probabilities=result.target_probabilities(), batch_size=lanes.STUDY_BATCH,
            )
        one = result[0]
        drop, increased = average_drop(y, o), increase_in_confidence(y, o) > 0
        if not gallery:
            caption = say("compare.input", language, name=spec.categories[one.target])
            gallery.append((files.save_png(display, folder / "input.png"), caption))
        overlay = render.overlay(display, result.heatmaps[0], cmap=colormap)
        gallery.append((files.save_png(overlay, folder / f"{files.slug(method)}.png"),
                        say("compare.caption", language, method=cls.title, drop=drop)))
        rows.append([
            cls.title, round(one.seconds, 3), one.forward_passes, one.backward_passes,
            round(float(y[0]), 4), round(float(o[0]), 4), round(drop, 2), say("compare.yes" if increased else "compare.no", language),
            int(result.extras.get("tail_rows", 0)),  # of the forward passes, rows through the layers after the target only
        ])
    return gallery, pd.DataFrame(rows, columns=columns(language))


def compare_passes(settings: Settings, methods: Any) -> int:
    """The comparison's stated cost in network passes (:func:`clustercamapp.lanes.compare_cost`)."""
    spec = settings.spec()
    layer = settings.layer_name(spec)
    data, _ = settings.image_bytes()
    return lanes.compare_cost(spec, layer, check_methods(methods), {**settings.options, "beta": settings.beta},
                              shape=network_shape(load_image(data), spec)).total


def network_shape(picture: Image.Image, spec: ModelSpec) -> tuple[int, int]:
    """``(height, width)`` of the network's input for ``picture`` (what a layer's grid follows)."""
    return spec.network_shape(picture.width, picture.height)


_checked_compare = user_errors(takes_settings("methods")(compare))


def _compare_seconds(*args: Any, **kwargs: Any) -> int:
    try:
        settings, own = listener_arguments(_checked_compare, args, kwargs)
        return duration_for(compare_passes(settings, own["methods"]))
    except Exception:  # a request the listener will refuse at once
        return duration_for(0)


#: The listener exactly as Gradio calls it: the settings block, then the methods (on a ZeroGPU
#: Space, one GPU task declaring the comparison's stated cost).
compare_listener = gpu_task(duration=_compare_seconds)(_checked_compare)


class CompareTab:
    def __init__(self, controls: Controls):
        self.controls = controls
        gr.Markdown(T("compare.note"), latex_delimiters=text.LATEX, elem_classes=["note"])
        self.methods = named(gr.CheckboxGroup(
            choices=method_choices(), value=default_methods(controls.spec.device, controls.spec), label=T("compare.methods"),
            elem_id="compare-methods",
        ), "methods")
        with gr.Row():
            self.run = gr.Button(T("compare.run"), variant="primary", elem_id="compare-btn", scale=3)
            self.stop = gr.Button(T("compare.stop"), variant="stop", elem_id="compare-stop", scale=1)
        self.gallery = gr.Gallery(label=T("compare.gallery"), columns=4, elem_id="compare-gallery", **style.GALLERY)
        # headers come with the answer, in the request's language (Gradio translates no header)
        self.table = gr.Dataframe(label=T("compare.table"), interactive=False, wrap=False, elem_id="compare-table")
        running = self.run.click(
            compare_listener, [*controls.settings(), self.methods],
            [self.gallery, self.table], api_name="compare", **lanes.STUDY_LANE,
        )
        # Gradio drops the event; the study notices between two batches and stops (lanes.py)
        self.stop.click(None, None, None, cancels=[running], api_visibility="private", queue=False)
