"""The Explain tab's components, laid out: the heatmap with β and the class beside it, the maps
eq. 22 mixes, the clusters and masked images with a plain-language key, two classes side by side,
the details (share link, downloads, summary). Every output of :data:`.outputs.OUTPUTS` is an
attribute of the same name."""

from __future__ import annotations

import gradio as gr

from ... import drawing, style
from ...components import deep_link_button
from ...controls import Controls
from ...i18n import T
from .examples import ASSETS, EXAMPLES
from .outputs import check_layout

#: Seconds a browser session's state is kept after its last use.
SESSION_TTL = 3600


def small_image(label: str, elem_id: str, alt: str | None = None) -> gr.Image:
    """A small output picture; ``label`` and ``alt`` are keys of the page's strings."""
    return gr.Image(label=T(label), format="png", interactive=False, height=200, min_width=150,
                    buttons=["download", "fullscreen"], elem_id=elem_id, alt_text=T(alt or label),
                    elem_classes=["labelled-image"])


class ExplainLayout:
    """Builds the tab's components under the current Blocks context (the listeners are
    :class:`~clustercamapp.tabs.explain.tab.ExplainTab`'s)."""

    def __init__(self, controls: Controls):
        self.controls = c = controls
        self.top5, self.target = c.top5, c.target  # the instant controls the outputs table fills
        gr.Markdown(T("explain.note"), elem_classes=["note"])
        with gr.Column(elem_id="result-panel"):
            self._heatmap_and_instant_controls()
            with gr.Row(elem_id="role-maps"):
                self.base_map = small_image("explain.base", "base-map", "explain.base_alt")
                self.scissors_map = small_image("explain.scissors", "scissors-map", "explain.scissors_alt")
                self.heatmap = small_image("explain.heatmap", "heatmap", "explain.heatmap_alt")
                self.tradeoff_chart = small_image("explain.curve", "tradeoff-chart", "explain.curve_alt")
            self.summary_md = gr.Markdown(elem_id="summary-md")
        self._clusters_and_scores()
        self._two_classes()
        self._details()
        self.session = gr.State(None, time_to_live=SESSION_TTL)
        self.details_open = gr.State(False)  # whether the zip is wanted with the next explanation
        # /explain for API callers: the whole answer in one call (the page's button runs two steps)
        self.api_explain = gr.Button(T("controls.explain"), visible=False, elem_id="explain-api")
        with c.examples_slot:
            gr.Markdown(T("explain.examples"), elem_classes=["group-title"])
            with gr.Row(elem_id="example-buttons"):
                self.example_buttons = {
                    label: gr.Button(T(f"explain.example.{label.lower().replace(' ', '_')}"), icon=str(ASSETS / name),
                                     size="sm", elem_classes=["example"], min_width=90)
                    for label, name in EXAMPLES.items()
                }
        check_layout(self)

    def _heatmap_and_instant_controls(self) -> None:
        c = self.controls
        with gr.Row(equal_height=False):
            self.overlay = gr.Image(
                label=T("explain.overlay"), format="png", interactive=False, height=340, scale=3,
                min_width=300, buttons=["download", "fullscreen"], elem_id="overlay", elem_classes=["labelled-image"],
                alt_text=T("explain.overlay_alt"),
            )
            with gr.Column(scale=2, min_width=260, elem_id="instant-controls"):
                c.beta.render()
                self.tradeoff_md = gr.Markdown(elem_id="tradeoff-text")
                c.top5.render()
                self.beta_note = gr.Markdown(elem_id="beta-note")
                c.target.render()
                c.colormap.render()

    def _clusters_and_scores(self) -> None:
        with gr.Row(equal_height=False):
            with gr.Column(scale=3, min_width=300):
                self.clusters = gr.Gallery(label=T("explain.clusters"), columns=4, elem_id="clusters", **style.GALLERY)
            with gr.Column(scale=1, min_width=220):
                gr.Markdown(T("explain.key"), elem_id="key")
        self.masked = gr.Gallery(label=T("explain.masked"), columns=4, elem_id="masked", **style.GALLERY)
        with gr.Row(equal_height=False):
            self.scores_chart = gr.Image(
                label=T("explain.scores_chart"), format="png", interactive=False,
                scale=3, min_width=300, buttons=["download"], elem_id="scores-chart", elem_classes=["labelled-image"],
                alt_text=T("explain.scores_chart_alt"),
            )
            self.scores_table = gr.Dataframe(
                label=T("explain.scores_table"), interactive=False, wrap=False, scale=2, min_width=260, elem_id="scores-table",
            )

    def _two_classes(self) -> None:
        with gr.Accordion(T("explain.two_classes"), open=False, elem_id="two-classes"):
            with gr.Row():
                # the 1000 classes are set here and when the model changes, never per explanation:
                # Gradio keeps a copy of every updated component in each session's state
                every = drawing.target_choices(self.controls.spec)[1:]
                self.class_a = gr.Dropdown(choices=every, value=None, label=T("explain.class_a"), filterable=True, elem_id="class-a")
                self.class_b = gr.Dropdown(choices=every, value=None, label=T("explain.class_b"), filterable=True, elem_id="class-b")
            self.show_both = gr.Button(T("explain.show_both"), elem_id="show-both")
            with gr.Row():
                self.overlay_a = small_image("explain.class_a", "overlay-a")
                self.overlay_b = small_image("explain.class_b", "overlay-b")

    def _details(self) -> None:
        with gr.Accordion(T("explain.details"), open=False, elem_id="details") as self.details:
            gr.Markdown(T("explain.share_note"))
            deep_link_button(T("explain.copy_link"), T("explain.link_copied"), size="md")
            self.downloads = gr.File(label=T("explain.downloads"), file_count="multiple", interactive=False, elem_id="downloads")
            self.summary = gr.JSON(label=T("explain.summary"), elem_id="summary-json")
