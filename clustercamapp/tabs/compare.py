"""The Compare tab (the paper's Fig. 1): every ticked method on the same image, layer and class.

``/compare`` takes the settings block then ``methods``. Each method runs under its model's lock
(:func:`~clustercamapp.engine.model_lock`), one at a time, so other users' requests interleave
between them; ``gr.Progress`` follows the methods. A method's title, whether it is too slow for
a CPU and which options it takes come from its class (:class:`clustercam.methods.BaseCAM`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gradio as gr
import pandas as pd
import torch

from clustercam import render
from clustercam.imaging import load_image
from clustercam.methods import METHODS
from clustercam.metrics import average_drop, explanation_scores, increase_in_confidence
from clustercam.pipeline import explain_image

from .. import files, style, text
from ..common import UserError, gpu, user_errors
from ..controls import Controls
from ..engine import DISPLAY_SIDE, NETWORK_CONCURRENCY, NETWORK_THREADS, model_lock, torch_threads
from ..settings import Settings, takes_settings

#: Columns of the comparison table; Y = p(class | X), O = p(class | X∘H) (see the tab's note).
COLUMNS = ["method", "time (s)", "forward", "backward", "Y", "O", "drop (%)", "increase"]


def method_choices() -> list[tuple[str, str]]:
    return [(cls.title, name) for name, cls in METHODS.items()]


def default_methods(device: torch.device) -> list[str]:
    """Every registered method, less the slow ones on a CPU."""
    return [name for name, cls in METHODS.items() if device.type == "cuda" or not cls.slow_on_cpu]


def check_methods(methods: Sequence[str] | None) -> list[str]:
    chosen = [method for method in (methods or []) if method]
    if not chosen:
        raise UserError("Tick at least one method to compare.")
    unknown = [method for method in chosen if method not in METHODS]
    if unknown:
        raise UserError(f"Unknown method(s) {', '.join(unknown)}; choose from {', '.join(METHODS)}.")
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
    spec = settings.spec()
    layer, wanted = settings.layer_name(spec), settings.target_index(spec)
    options = {**settings.options, "beta": settings.beta}
    picture = load_image(data)
    display = picture.copy()
    display.thumbnail((DISPLAY_SIDE, DISPLAY_SIDE))
    folder = files.output_dir()
    gallery: list[tuple[str, str]] = []
    rows = []
    steps = progress.tqdm(chosen, desc="Methods") if progress is not None else chosen
    for method in steps:
        cls = METHODS[method]
        accepted = set(cls.option_names())
        with model_lock(spec.name), torch_threads(NETWORK_THREADS):
            explained = explain_image(
                spec, picture, method=method, layer=layer, target=wanted,
                **{key: value for key, value in options.items() if key in accepted},
            )
            result = explained.result
            y, o = explanation_scores(
                spec.model, explained.inputs, result.heatmaps, result.targets,
                probabilities=result.target_probabilities(),
            )
        one = result[0]
        drop, increased = average_drop(y, o), increase_in_confidence(y, o) > 0
        if not gallery:
            caption = f"Input · {spec.categories[one.target]}"
            gallery.append((files.save_png(display, folder / "input.png"), caption))
        overlay = render.overlay(display, result.heatmaps[0], cmap=settings.colormap)
        gallery.append((files.save_png(overlay, folder / f"{files.slug(method)}.png"), f"{cls.title} · drop {drop:.1f} %"))
        rows.append([
            cls.title, round(one.seconds, 3), one.forward_passes, one.backward_passes,
            round(float(y[0]), 4), round(float(o[0]), 4), round(drop, 2), "yes" if increased else "no",
        ])
    return gallery, pd.DataFrame(rows, columns=COLUMNS)


#: The listener exactly as Gradio calls it: the settings block, then the methods.
compare_listener = gpu(user_errors(takes_settings("methods")(compare)))


class CompareTab:
    def __init__(self, controls: Controls):
        self.controls = controls
        gr.Markdown(text.COMPARE_NOTE, latex_delimiters=text.LATEX, elem_classes=["note"])
        self.methods = gr.CheckboxGroup(
            choices=method_choices(), value=default_methods(controls.spec.device), label="Methods",
            elem_id="compare-methods",
        )
        self.run = gr.Button("Compare", variant="primary", elem_id="compare-btn")
        self.gallery = gr.Gallery(label="Heatmaps (the paper's Fig. 1)", columns=4, elem_id="compare-gallery", **style.GALLERY)
        self.table = gr.Dataframe(headers=COLUMNS, interactive=False, wrap=False, elem_id="compare-table")
        self.run.click(
            compare_listener, [*controls.settings(), self.methods],
            [self.gallery, self.table], api_name="compare", concurrency_id="network",
            concurrency_limit=NETWORK_CONCURRENCY,
        )
