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
    if target not in TEACH_TARGETS:
        raise ValueError(f"The teaching example explains {' or '.join(TEACH_TARGETS)}; got {target!r}.")
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
        clusters = files.save_gallery(drawing.cluster_tiles(shown, entry.thumbnail.size), folder, "cluster")
        masked = files.save_gallery(drawing.masked_tiles(shown, entry.thumbnail, entry.explained.baseline_color), folder, "masked")
    (cat_base, cat_scissors), (cup_base, cup_scissors) = roles[TEACH_TARGETS[0]], roles[TEACH_TARGETS[1]]
    if (cat_base, cat_scissors) == (cup_scissors, cup_base):
        verdict = ("**Base and scissors swap places** when the class changes: the cluster that best keeps one "
                   "object is the one that best removes the other.")
    elif cat_base == cup_scissors or cup_base == cat_scissors:
        verdict = "One cluster changes role between base and scissors when the class changes."
    else:
        verdict = "Different clusters serve as base and scissors for the two classes."
    base, scissors = roles[target]
    markdown = (
        f"### Class: {target}\n"
        f"Base (solid frame) = cluster {base}, scissors (dashed frame) = cluster {scissors}.\n\n"
        "| class | base | scissors |\n|---|---|---|\n"
        + "".join(f"| {name} | cluster {b} | cluster {s} |\n" for name, (b, s) in roles.items())
        + f"\n{verdict} The clusters are computed once (Q = {TEACH_Q}); switching the class only "
        "re-reads the scores of the masked images, with no new forward pass."
    )
    return overlay, clusters, masked, markdown


#: The listener as Gradio calls it (``ValueError`` → a readable ``gr.Error``).
teach_listener = user_errors(teach)


class LearnTab:
    def __init__(self, controls: Controls):
        gr.Markdown(text.HOW_IT_WORKS, latex_delimiters=text.LATEX, elem_id="how-it-works")
        gr.Markdown(text.TEACH)
        with gr.Row():
            cat = gr.Button("Explain “Egyptian cat”", elem_id="teach-cat")
            cup = gr.Button("Explain “espresso”", elem_id="teach-espresso")
        self.markdown = gr.Markdown(elem_id="teach-md")
        self.overlay = gr.Image(label="Heatmap", format="png", interactive=False, height=320, elem_id="teach-overlay")
        self.clusters = gr.Gallery(label="Cluster maps", columns=3, elem_id="teach-clusters", **style.GALLERY)
        self.masked = gr.Gallery(label="Masked images and scores", columns=3, elem_id="teach-masked", **style.GALLERY)
        outputs = [self.overlay, self.clusters, self.masked, self.markdown]
        network = lanes.EXPLAIN_LANE
        cat.click(self._for("Egyptian cat"), None, outputs, api_visibility="private", **network)
        cup.click(self._for("espresso"), None, outputs, api_visibility="private", **network)

    @staticmethod
    def _for(target: str) -> Any:
        def handler() -> tuple[str, list[tuple[str, str]], list[tuple[str, str]], str]:
            return teach_listener(target)

        return handler
