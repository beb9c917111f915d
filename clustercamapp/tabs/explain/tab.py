"""The Explain tab's actions: one entry point per thing a visitor does, each the same path of
stages (:mod:`.stages`) on the parts it changes (:data:`.outputs.STEPS`).

Listeners (named API endpoints in brackets):

- Explain button: two chained events on the explain lane. Step 1 [``/explain_first``]
  (:meth:`ExplainTab.explain_first`) explains (the network work) and sends what is in view: the
  heatmap over the image, β's note, the class choice, the base and scissors maps; the page scrolls
  to them and waits until the heatmap is painted; step 2 [``/explain_rest``]
  (:meth:`ExplainTab.explain_rest`) sends the rest. In a class, Gradio's first-come queue puts
  every visitor's step 1 before anyone's step 2. API callers use [``/explain``]
  (:meth:`ExplainTab.explain`): both steps in one call, two messages, every output, the zip included;
- an example button (:meth:`ExplainTab.example`): step 1 for the example with the default
  settings, then the same step 2;
- β [``/reweight``], the colormap, the class dropdown [``/retarget``] and the top-5 radio:
  redraw from the cached explanation (no forward pass);
- opening the details (:meth:`ExplainTab.open_details`): the zip of the explanation on screen;
- "Show both" (:meth:`ExplainTab.two_classes`): two classes' heatmaps from one explanation;
- a new upload (:meth:`ExplainTab.cleared`): every output cleared.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gradio as gr

from clustercam import render

from ... import drawing, files, lanes
from ...common import user_errors
from ...engine import RESULTS, RUNTIME, CachedExplanation, get_model, torch_threads
from ...i18n import request_language, say
from ...scripts import SCROLL_THEN_WAIT_FOR_PAINT
from ...settings import Settings, check_colormap, checked_beta, class_of, takes_settings
from . import outputs, stages
from .examples import example_inputs
from .layout import ExplainLayout
from .outputs import OUTPUTS, STEPS
from .session import ExplainSession


class ExplainTab(ExplainLayout):
    """The tab's components (:class:`~.layout.ExplainLayout`) and its actions, wired."""

    def __init__(self, controls: Any):
        super().__init__(controls)
        self._wire()

    # ---- the outputs each listener declares (all from the one table) -------------------------

    def explain_outputs(self) -> list[Any]:
        """The outputs of /explain and /retarget, in the API's order."""
        return outputs.components(self, "class", self.session)

    def first_outputs(self) -> list[Any]:
        """What the page's Explain sends first: what is in view."""
        return outputs.components(self, "first", self.session)

    def rest_outputs(self) -> list[Any]:
        """What the page's Explain sends second: every output of /explain not sent first."""
        return outputs.components(self, "rest", self.session)

    def redraw_outputs(self) -> list[Any]:
        """The outputs of /reweight and a colormap change (β leaves the two maps as they are)."""
        return outputs.components(self, "colormap", self.session)

    def cleared_outputs(self) -> list[Any]:
        return outputs.components(self, "class", self.overlay_a, self.overlay_b, self.session)

    # ---- the path ------------------------------------------------------------------------------

    def _path(self, entry: CachedExplanation, session: ExplainSession, step: str, request: stages.Request,
              *, bundle_now: bool = True) -> dict[Any, Any]:
        """Stages 2-5 for ``step``'s parts: the view (and its kept confidences), the pictures (one
        torch thread: small tensors), the files and values, the outputs."""
        parts = STEPS[step]
        view = session.view(request_language())
        kept = stages.kept_confidences(entry, view, parts, request)
        with torch_threads(1), request.stage("drawing"):
            pictures = stages.draw(entry, view, parts, kept)
            drawn = stages.Drawn(entry, view, pictures, files.output_dir())
            written = stages.write(drawn, parts)
            session = session.with_written(written)
            if "summary" in parts:
                written["summary"], bundle = stages.summarise(drawn, kept, session, request, bundle_now=bundle_now)
                session = session.with_written({"summary": written["summary"]}).but(bundle=bundle)
        values = {name: value for part in written.values() for name, value in part.values.items()}
        return {**outputs.to_components(self, values), self.session: session}

    def _entry(self, session: ExplainSession | None) -> CachedExplanation | None:
        """The session's cached explanation (None: nothing explained yet); gone: a message."""
        if session is None:
            return None
        entry = RESULTS.get(session.key)
        if entry is None:
            raise gr.Error(say("explain.gone"), duration=None)
        return entry

    def _nothing_to_redraw(self, session: ExplainSession | None) -> dict[Any, Any]:
        return {self.session: session, self.beta_note: say("explain.nothing_to_redraw")}

    # ---- the actions ---------------------------------------------------------------------------

    def explain_first(self, settings: Settings, progress: Any = None) -> dict[Any, Any]:
        """Explain, step 1: the explanation (network work, or the cache) and what is in view."""
        request = stages.Request()
        with RUNTIME.explaining():  # the lane's requests in flight (the heap is trimmed once it is quiet)
            entry, target = stages.explanation(settings, request, progress)
            session = ExplainSession(entry.key, target, settings.beta, settings.colormap)
            out = self._path(entry, session, "first", request)
        out[self.session] = out[self.session].but(step_one=request.as_step_one())
        return out

    def explain_rest(self, session: ExplainSession | None, details_open: bool = True) -> dict[Any, Any]:
        """Explain, step 2 (after step 1's heatmap is on screen): the tiles, masked images, chart,
        table, the β curve (its pass), the summary and the files. The zip is written now when the
        details are open (or for /explain), else when they are opened (:meth:`open_details`)."""
        entry = self._entry(session)
        if entry is None:
            return {self.session: session}
        request = stages.Request(step_one=session.step_one)
        with RUNTIME.explaining():
            return self._path(entry, session.but(step_one=None), "rest", request, bundle_now=bool(details_open))

    def explain(self, settings: Settings, progress: Any = None) -> Iterator[dict[Any, Any]]:
        """/explain: step 1 then step 2 in one call, two messages; the last is every output."""
        first = self.explain_first(settings, progress)
        yield first
        yield {**first, **self.explain_rest(first[self.session])}

    def example(self, label: str) -> dict[Any, Any]:
        """An example button, step 1 (step 2 is Explain's): the example's image and the default
        settings set on the page, and what is in view."""
        settings, inputs = example_inputs(self.controls, label)
        return {**self.explain_first(settings), **inputs}

    def reweight(self, beta: float, session: ExplainSession | None) -> dict[Any, Any]:
        """/reweight: eq. 22 again with another β from the cached maps; no forward pass. Before any
        explanation there is nothing to redraw (β applies to the next Explain)."""
        beta, entry = checked_beta(beta), self._entry(session)
        if entry is None:
            return self._nothing_to_redraw(session)
        return self._path(entry, session.but(beta=beta), "beta", stages.Request())

    def recolor(self, colormap: str, session: ExplainSession | None) -> dict[Any, Any]:
        colormap, entry = check_colormap(colormap), self._entry(session)
        if entry is None:
            return self._nothing_to_redraw(session)
        return self._path(entry, session.but(colormap=colormap), "colormap", stages.Request())

    def retarget(self, target: str | None, session: ExplainSession | None) -> dict[Any, Any]:
        """/retarget: another class from the cached masked passes (they hold every class's
        probability) and the same clusters: new scores, base and scissors, no forward pass.
        ``target`` is a class index (as text) or name; empty means the top-1 prediction."""
        entry = self._entry(session)
        if entry is None:
            return self._nothing_to_redraw(session)
        return self._path(entry, session.but(target=class_of(entry.spec, target)), "class", stages.Request())

    def open_details(self, session: ExplainSession | None) -> dict[Any, Any]:
        """The details opened: the zip of the explanation on screen, written now (once), and with
        every later explanation while they stay open."""
        bundle = session.bundle if session is not None else None
        if bundle is None:
            return {self.downloads: gr.update(), self.details_open: True}
        path = files.write_bundle(Path(bundle.path), bundle.files, dict(bundle.summary))
        return {self.downloads: [path, *bundle.beside], self.session: session.but(bundle=None), self.details_open: True}

    def two_classes(self, class_a: str | None, class_b: str | None, session: ExplainSession | None) -> dict[Any, Any]:
        """Class A and class B side by side from the one cached explanation (no forward pass)."""
        entry = self._entry(session)
        if entry is None:
            raise gr.Error(say("explain.first_explain"), duration=None)
        out, folder, language = {}, files.output_dir(), request_language()
        for component, chosen, letter in ((self.overlay_a, class_a, "A"), (self.overlay_b, class_b, "B")):
            if not chosen:
                raise gr.Error(say("explain.pick_class", language, letter=letter), duration=None)
            index = entry.spec.class_index(chosen)
            with torch_threads(1):
                one = drawing.view_result(entry.explained.result, index, session.beta)[0]
                picture = render.overlay(entry.display, one.heatmap, cmap=session.colormap)
            path = files.save_jpeg(picture, folder / f"class_{letter.lower()}.jpg")
            name = entry.spec.categories[index]
            out[component] = gr.Image(
                value=path, label=say("explain.class_view", language, letter=letter, name=name, base=one.base_index,
                                      scissors=one.scissors_index),
                alt_text=drawing.overlay_alt(entry.spec, one, language),
            )  # a private listener: the label and alt text can follow the class
        return out

    def heading(self, session: ExplainSession | None) -> Any:
        """The heatmap's heading: the formula the explanation on screen computed (eq. 22 or a
        variant). A private step after the paint, so that /explain's outputs stay plain values."""
        entry = RESULTS.get(session.key) if session is not None else None
        if entry is None or not entry.explained.is_cluster_cam:
            return gr.update()
        return gr.Image(label=drawing.heatmap_label(entry.explained.result, request_language()))

    def class_choices(self, model: str) -> tuple[Any, Any]:
        """The two-class pickers list the classes of a newly chosen model."""
        try:
            every = drawing.target_choices(get_model(model))[1:]
        except Exception:  # a model that cannot load: the model menu says why and puts the old one back
            return gr.update(), gr.update()
        return gr.Dropdown(choices=every, value=None), gr.Dropdown(choices=every, value=None)

    def cleared(self) -> dict[Any, Any]:
        """Every output empty: what a new image shows until Explain."""
        empty = {getattr(self, name): fill.cleared() for name, fill in OUTPUTS.items()}
        return {**empty, self.overlay_a: None, self.overlay_b: None, self.session: None}

    # ---- wiring --------------------------------------------------------------------------------

    def _wire(self) -> None:
        c, network = self.controls, lanes.EXPLAIN_LANE
        redraw = {"concurrency_limit": lanes.REDRAW_CONCURRENCY, "show_progress": "hidden", "trigger_mode": "always_last"}
        # the listeners exactly as Gradio calls them (the tests call these too)
        self.on_explain_first = user_errors(takes_settings()(self.explain_first))
        self.on_explain_in_stages = user_errors(takes_settings()(self.explain))
        self.on_explain_rest = user_errors(self.explain_rest)
        self.on_reweight = user_errors(self.reweight)
        self.on_recolor = user_errors(self.recolor)
        self.on_retarget = user_errors(self.retarget)
        self.on_two_classes = user_errors(self.two_classes)
        # the page's Explain: step 1, then, once its heatmap is on screen, step 2
        first_steps = [c.explain.click(
            self.on_explain_first, c.settings(), self.first_outputs(), api_name="explain_first",
            api_visibility="undocumented", show_progress_on=[self.overlay], **network,
        )]
        example_outputs = [*self.first_outputs(), c.image, c.model, c.layer, c.preset, c.q, c.beta, c.clustering, c.colormap]
        for label, button in self.example_buttons.items():
            first_steps.append(button.click(
                user_errors(self._example_listener(label)), None, example_outputs,
                api_visibility="private", show_progress_on=[self.overlay], **network,
            ))
        for step in first_steps:
            painted = step.success(None, js=SCROLL_THEN_WAIT_FOR_PAINT)
            # the heading rebuilds the heatmap's config for the session: after the paint
            painted.success(self.heading, [self.session], [self.heatmap], api_visibility="private", queue=False)
            painted.success(
                self.on_explain_rest, [self.session, self.details_open], self.rest_outputs(), api_name="explain_rest",
                api_visibility="undocumented", show_progress_on=[self.clusters, self.masked], **network,
            )
        self.api_explain.click(self.on_explain_in_stages, c.settings(), self.explain_outputs(), api_name="explain", **network)
        self.details.expand(self.open_details, [self.session], [self.downloads, self.session, self.details_open],
                            api_visibility="private", queue=False)
        self.details.collapse(lambda: False, None, self.details_open, api_visibility="private", queue=False)
        c.beta.input(self.on_reweight, [c.beta, self.session], self.redraw_outputs(), api_name="reweight", **redraw)
        c.colormap.input(self.on_recolor, [c.colormap, self.session], self.redraw_outputs(), api_visibility="private", **redraw)
        c.target.input(self.on_retarget, [c.target, self.session], self.explain_outputs(), api_name="retarget", **redraw)
        c.top5.input(self.on_retarget, [c.top5, self.session], self.explain_outputs(), api_visibility="private", **redraw)
        self.show_both.click(self.on_two_classes, [self.class_a, self.class_b, self.session], [self.overlay_a, self.overlay_b],
                             api_visibility="private", **redraw)
        c.model.change(self.class_choices, [c.model], [self.class_a, self.class_b], api_visibility="private", queue=False)
        for event in (c.image.upload, c.image.clear):
            event(self.cleared, None, self.cleared_outputs(), api_visibility="private", queue=False)

    def _example_listener(self, label: str) -> Any:
        def listener() -> dict[Any, Any]:
            return self.example(label)

        return listener

    def on_explain(self, *args: Any, **kwargs: Any) -> dict[Any, Any]:
        """/explain's whole answer (its last message), for callers in Python (tests, benchmarks)."""
        *_, last = self.on_explain_in_stages(*args, **kwargs)
        return last
