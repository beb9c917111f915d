"""The "How it works" tab: the method in plain words and equations, and the two-object example.

The example explains ``cat_and_coffee.jpg`` (cat left, espresso right) for both classes from one
clustering and says which cluster is base and scissors for each.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gradio as gr

from clustercam import render
from clustercam.methods import DEFAULT_BETA
from clustercam.zoo import DEFAULT_MODEL

from .. import drawing, files, lanes, style, text
from ..common import user_errors
from ..controls import Controls
from ..engine import explain_cached, get_model, torch_threads
from ..i18n import T, request_language, say

ASSETS = Path(__file__).resolve().parents[2] / "assets"
#: The two-object teaching example (cat left, espresso right) and its settings.
TEACH_IMAGE = ASSETS / "cat_and_coffee.jpg"
TEACH_TARGETS = ("Egyptian cat", "espresso")
TEACH_Q = 3


def teach(target: str) -> tuple[str, list[tuple[str, str]], list[tuple[str, str]], str]:
    """The two-object example for ``target`` → (overlay, clusters, masked, explanation markdown).

    One Cluster-CAM run (cached) with Q = :data:`TEACH_Q` on the embedded model, explained for
    both classes by ``retarget``: the text says which cluster is base and scissors for each.
    """
    language = request_language()
    if target not in TEACH_TARGETS:
        raise ValueError(say("learn.wrong_target", language, choices=say("learn.or", language).join(TEACH_TARGETS),
                             target=repr(target)))
    spec = get_model(DEFAULT_MODEL)
    options = {"q": TEACH_Q, "clustering": "kmeans", "seed": 0}
    entry, _ = explain_cached(TEACH_IMAGE.read_bytes(), TEACH_IMAGE.stem, spec, spec.default_layer, options)
    roles = {}
    with torch_threads(1):
        for name in TEACH_TARGETS:
            one = drawing.view_result(entry.explained.result, spec.class_index(name), DEFAULT_BETA)[0]
            roles[name] = (one.base_index, one.scissors_index)
        shown = drawing.view_result(entry.explained.result, spec.class_index(target), DEFAULT_BETA)[0]
        folder = files.output_dir()
        overlay = files.save_png(render.overlay(entry.display, shown.heatmap), folder / "overlay.png")
        clusters = files.save_gallery(drawing.cluster_tiles(shown, entry.thumbnail.size, language), folder, "cluster")
        masked = files.save_gallery(
            drawing.masked_tiles(shown, entry.thumbnail, entry.explained.baseline_color, language), folder, "masked"
        )
    (cat_base, cat_scissors), (cup_base, cup_scissors) = roles[TEACH_TARGETS[0]], roles[TEACH_TARGETS[1]]
    if (cat_base, cat_scissors) == (cup_scissors, cup_base):
        verdict = "learn.swap"
    elif cat_base == cup_scissors or cup_base == cat_scissors:
        verdict = "learn.one_changes"
    else:
        verdict = "learn.different"
    base, scissors = roles[target]
    rows = "\n".join(say("learn.row", language, name=name, base=b, scissors=s) for name, (b, s) in roles.items())
    markdown = say("learn.answer", language, target=target, base=base, scissors=scissors, rows=rows,
                   verdict=say(verdict, language), q=TEACH_Q)
    return overlay, clusters, masked, markdown


#: The listener as Gradio calls it (``ValueError`` → a readable ``gr.Error``).
teach_listener = user_errors(teach)


class LearnTab:
    def __init__(self, controls: Controls):
        gr.Markdown(T("learn.how_it_works"), latex_delimiters=text.LATEX, elem_id="how-it-works")
        gr.Markdown(T("learn.teach"))
        with gr.Row():
            cat = gr.Button(T("learn.explain_cat"), elem_id="teach-cat")
            cup = gr.Button(T("learn.explain_espresso"), elem_id="teach-espresso")
        self.markdown = gr.Markdown(elem_id="teach-md")
        self.overlay = gr.Image(label=T("learn.heatmap"), format="png", interactive=False, height=320, elem_id="teach-overlay")
        self.clusters = gr.Gallery(label=T("learn.clusters"), columns=3, elem_id="teach-clusters", **style.GALLERY)
        self.masked = gr.Gallery(label=T("learn.masked"), columns=3, elem_id="teach-masked", **style.GALLERY)
        outputs = [self.overlay, self.clusters, self.masked, self.markdown]
        network = lanes.EXPLAIN_LANE
        cat.click(self._for("Egyptian cat"), None, outputs, api_visibility="private", **network)
        cup.click(self._for("espresso"), None, outputs, api_visibility="private", **network)

    @staticmethod
    def _for(target: str) -> Any:
        def handler() -> tuple[str, list[tuple[str, str]], list[tuple[str, str]], str]:
            return teach_listener(target)

        return handler
