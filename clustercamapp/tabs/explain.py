"""The Explain tab: the heatmap with β and the class beside it, the maps eq. 22 mixes, the
clusters and masked images with a plain-language key, two classes side by side, one zip.

Listeners (named API endpoints in brackets):

- Explain button: the settings block → two chained steps on the explain lane. Step 1
  [``/explain_first``] explains (the network work) and sends what is in view: the heatmap over the
  image, β's note, the class choice, the base and scissors maps; the page scrolls to them and
  waits until the heatmap is painted; step 2 [``/explain_rest``] sends the rest (tiles, masked
  images, chart, table, the β curve, the summary). API callers use [``/explain``]: both steps in
  one call, every output (the zip included);
- the details accordion: opening it writes the zip of the explanation on screen (the page's
  step 2 writes it only while the details are open);
- β [``/reweight``], the class dropdown [``/retarget``], the top-5 radio and the colormap: redraw
  from the cached explanation (no forward pass);
- the example buttons: the example image with the default settings (explanations warmed in the
  background when the server starts, see :func:`warm_examples`);
- "Show both": two classes' heatmaps from one explanation;
- a new upload: every output cleared (no stale result or error left beside a new image).
"""

from __future__ import annotations

import copy
import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gradio as gr

from clustercam import render
from clustercam.methods import DEFAULT_BETA, DEFAULT_PRESET, DEFAULT_Q, PRESETS

from .. import drawing, engine, files, lanes, style
from ..common import user_errors
from ..components import deep_link_button
from ..controls import Controls
from ..engine import (
    EXAMPLES_READY,
    REDRAW_CONCURRENCY,
    RESULTS,
    TRADEOFF_BETAS,
    CachedExplanation,
    explain_cached,
    explaining,
    forward_images,
    get_model,
    idle_seconds,
    requests_in_flight,
    torch_threads,
)
from ..i18n import T, request_language, say
from ..settings import Settings, check_colormap, checked_beta, class_of, takes_settings

log = logging.getLogger(__name__)
ASSETS = Path(__file__).resolve().parents[2] / "assets"
#: The example buttons: English label (the handler's key; the button shows ``explain.example.<key>``) and file.
EXAMPLES = {
    "Cat": "chelsea.jpg",
    "Espresso": "coffee.jpg",
    "Cat and espresso": "cat_and_coffee.jpg",
    "Astronaut": "astronaut.jpg",
    "Rocket": "rocket.jpg",
    "Grace Hopper": "grace_hopper.jpg",
}
#: Seconds a browser session's state is kept after its last use.
SESSION_TTL = 3600
#: After step 1 of Explain (or an example), bring the heatmap, β and the class choice into view;
#: step 2 waits for step 1's heatmap to be on screen (at most 2 s), so that the
#: server's work for the rest (and other visitors' step 1) never competes with the first paint.
SCROLL_THEN_WAIT_FOR_PAINT = """async () => {
  document.getElementById('result-panel')?.scrollIntoView({block: 'start'});
  const frame = () => new Promise((done) => requestAnimationFrame(() => done()));
  const deadline = performance.now() + 2000;
  await frame();
  for (;;) {
    const picture = document.querySelector('#overlay img');
    if ((picture && picture.complete && picture.naturalWidth > 0) || performance.now() > deadline) break;
    await new Promise((done) => setTimeout(done, 15));
  }
  await frame();
}"""
#: Opening a shared link (``?deep_link=…``) restores the inputs and outputs; this re-runs
#: Explain on them (served from the server's cache when it still holds it) so that β and the
#: class respond again.
EXPLAIN_SHARED_LINK = """() => {
  if (!new URLSearchParams(window.location.search).has('deep_link')) return;
  setTimeout(() => {
    if (document.querySelector('#input-image img')) document.getElementById('explain-btn')?.click();
  }, 300);
}"""
Session = dict[str, Any] | None
#: The background warm-up explains its next example only after this many seconds without a request.
QUIET_SECONDS = 5.0


def default_settings(image: str) -> Settings:
    """The page's defaults (the default preset on the embedded model) for ``image``."""
    return Settings.parse(image=image)


def _warm(name: str) -> None:
    settings = default_settings(str(ASSETS / name))
    spec = settings.spec()
    data, stem = settings.image_bytes()
    explain_cached(data, stem, spec, settings.layer_name(spec), settings.options, tradeoff=True)


def warm_examples(first_now: bool = True, quiet: float = QUIET_SECONDS) -> threading.Thread:
    """Explain every example once, so that a click shows a finished explanation from the cache.

    The first example is explained in the calling thread (``first_now``; the app does it before its
    port opens): the process's one-time costs -- the first allocations of every size, the clustering
    and drawing code's first calls -- are paid before any visitor arrives, so the first visitor's
    explanation takes what every later one does. The others follow in a background thread, each
    once no request has been in flight for ``quiet`` seconds, so that they never hold the model
    while a visitor who just arrived waits for it."""
    names = list(EXAMPLES.values())
    if first_now and names:
        first = names.pop(0)
        try:
            _warm(first)
        except Exception:  # the server starts anyway
            log.exception("Warming up the example %s failed", first)

    def work() -> None:
        # at normal priority: it holds the model's lock while it explains an example, and a request
        # waiting for that lock must not wait on a thread the scheduler starves (it yields instead)
        started = time.monotonic()
        for name in names:
            # visitors' requests go first (and the first visitors arrive as the port opens)
            while requests_in_flight() or min(idle_seconds(), time.monotonic() - started) < quiet:
                time.sleep(0.05)
            try:
                _warm(name)
            except Exception:  # one example must not stop the others, nor the server
                log.exception("Warming up the example %s failed", name)
        EXAMPLES_READY.set()

    thread = threading.Thread(target=work, name="warm-examples", daemon=True)
    thread.start()
    return thread


class ExplainTab:
    """Builds the tab's components under the current Blocks context and wires its listeners."""

    def __init__(self, controls: Controls):
        self.controls = c = controls
        gr.Markdown(T("explain.note"), elem_classes=["note"])
        with gr.Column(elem_id="result-panel"):
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
            with gr.Row(elem_id="role-maps"):
                self.base_map = self._small_image("explain.base", "base-map", "explain.base_alt")
                self.scissors_map = self._small_image("explain.scissors", "scissors-map", "explain.scissors_alt")
                self.heatmap = self._small_image("explain.heatmap", "heatmap", "explain.heatmap_alt")
                self.tradeoff_chart = self._small_image("explain.curve", "tradeoff-chart", "explain.curve_alt")
            self.summary_md = gr.Markdown(elem_id="summary-md")
        with gr.Row(equal_height=False):
            with gr.Column(scale=3, min_width=300):
                self.clusters = gr.Gallery(
                    label=T("explain.clusters"), columns=4, elem_id="clusters",
                    **style.GALLERY,
                )
            with gr.Column(scale=1, min_width=220):
                gr.Markdown(T("explain.key"), elem_id="key")
        self.masked = gr.Gallery(
            label=T("explain.masked"), columns=4, elem_id="masked",
            **style.GALLERY,
        )
        with gr.Row(equal_height=False):
            self.scores_chart = gr.Image(
                label=T("explain.scores_chart"), format="png", interactive=False,
                scale=3, min_width=300, buttons=["download"], elem_id="scores-chart", elem_classes=["labelled-image"],
                alt_text=T("explain.scores_chart_alt"),
            )
            self.scores_table = gr.Dataframe(
                label=T("explain.scores_table"), interactive=False, wrap=False, scale=2, min_width=260, elem_id="scores-table",
            )
        with gr.Accordion(T("explain.two_classes"), open=False, elem_id="two-classes"):
            with gr.Row():
                # the 1000 classes are set here and when the model changes, never per explanation:
                # Gradio keeps a copy of every updated component in each session's state
                every = drawing.target_choices(c.spec)[1:]
                self.class_a = gr.Dropdown(choices=every, value=None, label=T("explain.class_a"), filterable=True, elem_id="class-a")
                self.class_b = gr.Dropdown(choices=every, value=None, label=T("explain.class_b"), filterable=True, elem_id="class-b")
            self.show_both = gr.Button(T("explain.show_both"), elem_id="show-both")
            with gr.Row():
                self.overlay_a = self._small_image("explain.class_a", "overlay-a")
                self.overlay_b = self._small_image("explain.class_b", "overlay-b")
        with gr.Accordion(T("explain.details"), open=False, elem_id="details") as self.details:
            gr.Markdown(T("explain.share_note"))
            deep_link_button(T("explain.copy_link"), T("explain.link_copied"), size="md")
            self.downloads = gr.File(
                label=T("explain.downloads"), file_count="multiple",
                interactive=False, elem_id="downloads",
            )
            self.summary = gr.JSON(label=T("explain.summary"), elem_id="summary-json")
        self.session = gr.State(None, time_to_live=SESSION_TTL)
        self.details_open = gr.State(False)  # whether the zip is wanted with the next explanation
        # /explain for API callers: the whole answer in one call (the page's button runs two steps)
        self.api_explain = gr.Button(T("controls.explain"), visible=False, elem_id="explain-api")
        with c.examples_slot:
            gr.Markdown(T("explain.examples"), elem_classes=["group-title"])
            with gr.Row(elem_id="example-buttons"):
                self.example_buttons = {
                    label: gr.Button(T(f"explain.example.{label.lower().replace(' ', '_')}"), icon=str(ASSETS / name), size="sm", elem_classes=["example"], min_width=90)
                    for label, name in EXAMPLES.items()
                }
        self._wire()

    @staticmethod
    def _small_image(label: str, elem_id: str, alt: str | None = None) -> gr.Image:
        """A small output picture; ``label`` and ``alt`` are keys of the page's strings."""
        return gr.Image(label=T(label), format="png", interactive=False, height=200, min_width=150,
                        buttons=["download", "fullscreen"], elem_id=elem_id, alt_text=T(alt or label),
                        elem_classes=["labelled-image"])

    # ---- outputs -------------------------------------------------------------------------

    def explain_outputs(self) -> list[Any]:
        """The outputs of /explain and /retarget, in the API's order (the first nine as before)."""
        c = self.controls
        return [
            self.overlay, self.heatmap, self.clusters, self.masked, self.scores_table, self.summary, self.downloads,
            self.summary_md, c.top5, self.base_map, self.scissors_map, self.scores_chart, self.beta_note, c.target,
            self.class_a, self.class_b, self.tradeoff_md, self.tradeoff_chart, self.session,
        ]

    def first_outputs(self) -> list[Any]:
        """What the page's Explain sends first: what is in view (see :meth:`explain_first`)."""
        return [self.overlay, self.heatmap, self.beta_note, self.base_map, self.scissors_map, self.controls.top5,
                self.session]

    def rest_outputs(self) -> list[Any]:
        """What the page's Explain sends second: every output of /explain not sent first."""
        first = set(self.first_outputs()) - {self.session}
        return [component for component in self.explain_outputs() if component not in first]

    def redraw_outputs(self) -> list[Any]:
        """The outputs of /reweight and a colormap change (the two maps change with the colormap
        only: /reweight leaves them as they are)."""
        return [self.overlay, self.heatmap, self.summary, self.downloads, self.summary_md, self.beta_note,
                self.base_map, self.scissors_map, self.tradeoff_md, self.tradeoff_chart, self.session]

    def cleared_outputs(self) -> list[Any]:
        c = self.controls
        return [*self._empty_images(), self.clusters, self.masked, self.scores_table, self.summary, self.downloads,
                self.summary_md, self.beta_note, self.tradeoff_md, c.top5, c.target, self.class_a, self.class_b, self.session]

    def _empty_images(self) -> tuple[gr.Image, ...]:
        return (self.overlay, self.heatmap, self.base_map, self.scissors_map, self.scores_chart, self.overlay_a,
                self.overlay_b, self.tradeoff_chart)

    def cleared(self) -> dict[Any, Any]:
        """Every output empty: what a new image shows until Explain (called per event: the
        component updates below must not be made while the page is being built)."""
        c = self.controls
        return {
            **{image: None for image in self._empty_images()},
            self.clusters: [], self.masked: [], self.scores_table: None, self.summary: None, self.downloads: None,
            self.summary_md: "", self.beta_note: "", self.tradeoff_md: "", c.top5: gr.Radio(choices=[], value=None), c.target: "",
            self.class_a: None, self.class_b: None,
            self.session: None,
        }

    def _draw(
        self, entry: CachedExplanation, session: dict[str, Any], *, everything: bool, cached: bool, passes_before: int,
        started: float, explanation_seconds: float = 0.0, first_paint: bool = False, drawn: dict[Any, Any] | None = None,
        first_paint_seconds: float | None = None, bundle: bool = True,
    ) -> dict[Any, Any]:
        """Every output for ``entry`` explained for ``session``'s target, β and colormap.

        ``everything``: also the tiles, chart, table and class pickers (a new explanation or a
        new class); otherwise only what β and the colormap change. ``first_paint``: only what is
        in view after Explain (the heatmap over the image, β's note, the class choice, the base
        and scissors maps), drawn before the rest; ``drawn``: those outputs, drawn already for
        this view, reused instead of drawn again. ``bundle``: write the zip of every file now
        (otherwise the session keeps what it needs and :meth:`make_bundle` writes it when asked
        for). Pure re-rendering on small tensors: one torch thread (see :mod:`clustercamapp.engine`).
        """
        c = self.controls
        drawing_started = time.perf_counter()
        view = drawing.View(session["target"], session["beta"], session["colormap"], request_language())
        # β changes neither the two maps nor the tiles: they are drawn again only for a new
        # explanation, class or colormap, and otherwise reused (not re-encoded) in the zip
        role_maps = session.get("role_maps")
        redraw_roles = drawn is None and (everything or role_maps is None or role_maps[2] != view.colormap)
        parts = {"maps"} if drawn is None else set()
        parts |= {"roles"} if redraw_roles else set()
        if first_paint:
            with torch_threads(1):
                pictures = drawing.render_view(entry, view, parts)
                return self._first_message(entry, session, pictures, role_maps)
        # the class kept on X∘H(β) across β: memoised; a β off the curve's grid costs one pass
        shown_class = int(entry.explained.result.targets[0]) if view.target is None else view.target
        curve_started = time.perf_counter()
        kept = entry.kept_confidence(shown_class, (*TRADEOFF_BETAS, view.beta))
        curve_seconds = time.perf_counter() - curve_started
        parts |= {"curve"} | ({"details"} if everything else set())
        with torch_threads(1):
            pictures = drawing.render_view(entry, view, parts, kept)
            result, one = pictures.result, pictures.result[0]
            folder, stem = files.output_dir(), self._stem(entry, one)
            if drawn is not None:
                overlay, heatmap = drawn[self.overlay], drawn[self.heatmap]
                role_maps = (drawn[self.base_map], drawn[self.scissors_map], view.colormap)
            else:
                overlay, heatmap, role_maps = self._save_maps(entry, pictures, view.colormap, role_maps)
            array = files.save_npy(one.heatmap, folder / f"{stem}_heatmap.npy")  # exact, as computed
            tradeoff = files.save_png(pictures.tradeoff_chart, folder / f"{stem}_tradeoff.png")
            out: dict[Any, Any] = {
                self.overlay: overlay, self.heatmap: heatmap, self.beta_note: pictures.beta_note,
                self.tradeoff_md: pictures.tradeoff_markdown, self.tradeoff_chart: tradeoff,
            }
            if drawn is not None or redraw_roles:
                out.update({self.base_map: role_maps[0], self.scissors_map: role_maps[1]})
            tiles = list(session.get("tiles", []))
            if everything:
                clusters = files.save_gallery(pictures.clusters, folder, "cluster")
                masked = files.save_gallery(pictures.masked, folder, "masked")
                chart = files.save_png(pictures.scores_chart, folder / "scores.png")
                tiles = [path for path, _ in clusters + masked] + [chart]
                second = one.top_classes[1] if len(one.top_classes) > 1 else one.target
                out.update({
                    self.clusters: clusters, self.masked: masked, self.scores_chart: chart,
                    self.scores_table: pictures.scores_table,
                    c.top5: gr.Radio(choices=pictures.top5, value=str(one.target)),
                    c.target: gr.update(value="" if session["target"] is None else str(session["target"])),
                    self.class_a: str(one.target), self.class_b: str(second),
                })
            passes = forward_images() - passes_before  # this request's: the explanation's and the curve's
            data = drawing.summary_data(entry, result, cached=cached, passes=passes, seconds=time.perf_counter() - started)
            full = float(one.target_probability)
            data["confidence_kept"] = {
                "beta": round(kept[round(one.beta, 4)], 6), "beta_1": round(kept[1.0], 6), "whole_image": round(full, 6),
                "curve": {f"{b:g}": round(kept[b], 6) for b in TRADEOFF_BETAS},
            }
            every_file = [overlay, heatmap, array, tradeoff, *role_maps[:2], *tiles]
            if bundle:
                downloads = [files.write_bundle(folder / f"{stem}.zip", every_file, data), overlay, array]
                later = None
            else:  # written by make_bundle when the details are opened
                downloads = [overlay, array]
                later = {"path": str(folder / f"{stem}.zip"), "files": every_file, "summary": copy.deepcopy(data),
                         "beside": downloads}
            # this request's server time, split: the network work (0 from the cache), the drawing
            # and files; Gradio's serialisation follows the return (the load test measures it)
            data["request"].update(
                explanation_seconds=round(explanation_seconds, 4),
                curve_seconds=round(curve_seconds, 4),  # the β curve's pass (0 when known)
                drawing_seconds=round(time.perf_counter() - drawing_started - curve_seconds, 4),
                server_seconds=round(time.perf_counter() - started, 4),
            )
            if first_paint_seconds is not None:  # when the first message (the heatmap in view) was ready
                data["request"]["first_paint_seconds"] = round(first_paint_seconds, 4)
            out.update({
                self.downloads: downloads, self.summary: data,
                self.summary_md: drawing.summary_markdown(data, view.language),
                self.session: {**session, "tiles": tiles, "role_maps": role_maps, "bundle": later},
            })
        return out

    @staticmethod
    def _stem(entry: CachedExplanation, one: Any) -> str:
        """File-name stem of a view's files: the image, the class and β."""
        return f"{files.slug(entry.name)}_{files.slug(entry.spec.categories[one.target])}_beta{one.beta:.2f}"

    def _save_maps(self, entry: CachedExplanation, pictures: drawing.Pictures, colormap: str,
                   role_maps: Any) -> tuple[str, str, Any]:
        """Write the heatmap over the image and alone, and the base and scissors maps when they were
        drawn (otherwise ``role_maps``, the files of an earlier view, stay): their paths."""
        folder, stem = files.output_dir(), self._stem(entry, pictures.result[0])
        overlay = files.save_jpeg(pictures.overlay, folder / f"{stem}_overlay.jpg")  # a photograph: 0.3 vs 11 ms
        heatmap = files.save_png(pictures.heatmap, folder / f"{stem}_heatmap.png")
        if pictures.base_map is not None:
            role_maps = (files.save_png(pictures.base_map, folder / "base.png"),
                         files.save_png(pictures.scissors_map, folder / "scissors.png"), colormap)
        return overlay, heatmap, role_maps

    def _first_message(self, entry: CachedExplanation, session: dict[str, Any], pictures: drawing.Pictures,
                       role_maps: Any) -> dict[Any, Any]:
        """What is in view after Explain: the heatmap over the image, β's note, the class choice,
        the base and scissors maps (written to files here; the second message reuses them)."""
        one = pictures.result[0]
        overlay, heatmap, role_maps = self._save_maps(entry, pictures, session["colormap"], role_maps)
        out: dict[Any, Any] = {self.overlay: overlay, self.heatmap: heatmap, self.beta_note: pictures.beta_note}
        out.update({
            self.base_map: role_maps[0], self.scissors_map: role_maps[1],
            self.controls.top5: gr.Radio(choices=drawing.top5_choices(entry.spec, one), value=str(one.target)),
            self.session: {**session, "role_maps": role_maps},
        })
        return out

    def _entry(self, session: Session) -> CachedExplanation | None:
        if not session or "key" not in session:
            return None
        entry = RESULTS.get(session["key"])
        if entry is None:
            raise gr.Error(say("explain.gone"), duration=None)
        return entry

    # ---- handlers --------------------------------------------------------------------------

    def explain(self, settings: Settings, progress: Any = None) -> dict[Any, Any]:
        """Every output of an explanation at once (the last message of :meth:`explain_in_stages`)."""
        *_, last = self.explain_in_stages(settings, progress)
        return last

    def explain_in_stages(self, settings: Settings, progress: Any = None) -> Iterator[dict[Any, Any]]:
        """/explain: :meth:`explain_first`, then :meth:`explain_rest` in the same call -- two
        messages, the second every output (the first's pictures reused). The last message is the
        whole answer an API caller gets. The page runs the two steps as two chained events instead
        (see :meth:`_wire`), so that in a class every visitor's heatmap comes before anyone's rest."""
        first = self.explain_first(settings, progress)
        yield first
        yield {**first, **self.explain_rest(first[self.session])}

    def explain_first(self, settings: Settings, progress: Any = None) -> dict[Any, Any]:
        """The page's Explain, step 1: feature maps, clustering and the Q masked passes (cached),
        and what is in view after Explain -- the heatmap over the image, β's note, the class
        choice, the base and scissors maps. The session remembers what step 2 reuses."""
        started, passes_before = time.perf_counter(), forward_images()
        data, name = settings.image_bytes()
        if progress is not None:
            progress(0.05, desc=say("explain.loading", model=settings.model))
        spec = settings.spec()
        layer, target = settings.layer_name(spec), settings.target_index(spec)
        if progress is not None:
            progress(0.2, desc=say("explain.working"))
        with explaining():  # other requests in flight share the cores (engine.network_threads)
            began = time.perf_counter()
            # the β curve's pass comes in step 2; on ZeroGPU it rides in the same GPU task as the
            # explanation (each task is a GPU allocation, counted against the quota)
            entry, cached = explain_cached(data, name, spec, layer, settings.options, tradeoff=engine.ON_ZERO_GPU)
            explanation_seconds = time.perf_counter() - began
            session = {"key": entry.key, "target": target, "beta": settings.beta, "colormap": settings.colormap}
            first = self._draw(entry, session, everything=True, cached=cached, passes_before=passes_before,
                               started=started, first_paint=True)
        first[self.session]["first_paint"] = {
            "view": [target, settings.beta, settings.colormap],
            "overlay": first[self.overlay], "heatmap": first[self.heatmap],
            "cached": cached, "passes": forward_images() - passes_before,
            "explanation_seconds": explanation_seconds, "seconds": time.perf_counter() - started,
        }
        return first

    def explain_rest(self, session: Session, *, bundle: bool = True) -> dict[Any, Any]:
        """The page's Explain, step 2 (after step 1's heatmap is on screen): every output -- the
        tiles, masked images, chart, table, the β curve and its pass, the summary and the files --
        with step 1's pictures reused while the view is the one step 1 drew. ``bundle``: write the
        zip now (an API call to /explain gets it at once; the page asks for it only while the
        details, where it is offered, are open, else :meth:`make_bundle` writes it when they are)."""
        entry = self._entry(session)
        if entry is None:
            return {self.session: session}
        session = dict(session)
        first = session.pop("first_paint", None) or {}
        view = [session["target"], session["beta"], session["colormap"]]
        drawn = None
        if first.get("view") == view and session.get("role_maps"):
            drawn = {self.overlay: first["overlay"], self.heatmap: first["heatmap"],
                     self.base_map: session["role_maps"][0], self.scissors_map: session["role_maps"][1]}
        began = time.perf_counter()
        with explaining():
            return self._draw(
                entry, session, everything=True, cached=first.get("cached", True),
                passes_before=forward_images() - first.get("passes", 0),  # both steps' passes
                started=began - first.get("seconds", 0.0),  # both steps' server time, not the gap between
                explanation_seconds=first.get("explanation_seconds", 0.0), drawn=drawn,
                first_paint_seconds=first.get("seconds"), bundle=bundle,
            )

    def page_rest(self, session: Session, details_open: bool) -> dict[Any, Any]:
        """Step 2 as the page runs it: only the outputs step 1 did not send (β, the class and the
        maps in view may have moved since; step 1 and /reweight own them)."""
        out = self.explain_rest(session, bundle=bool(details_open))
        wanted = set(self.rest_outputs())
        return {component: value for component, value in out.items() if component in wanted}

    def details_opened(self, session: Session) -> dict[Any, Any]:
        """The details opened: the zip of the explanation on screen (:meth:`make_bundle`), and with
        every later explanation while they stay open."""
        return {**self.make_bundle(session), self.details_open: True}

    def make_bundle(self, session: Session) -> dict[Any, Any]:
        """The zip of every file of the explanation on screen, written when the details (where it is
        offered) are opened; nothing to do when it was written already or nothing is explained."""
        later = (session or {}).get("bundle")
        if not later:
            return {self.downloads: gr.update()}
        path = files.write_bundle(Path(later["path"]), later["files"], later["summary"])
        return {self.downloads: [path, *later["beside"]], self.session: {**session, "bundle": None}}

    def reweight(self, beta: float, session: Session) -> dict[Any, Any]:
        """/reweight: eq. 22 again with another β from the cached maps; no forward pass. Before
        any explanation there is nothing to redraw (β applies to the next Explain)."""
        return self._redraw(session, beta=checked_beta(beta))

    def recolor(self, colormap: str, session: Session) -> dict[Any, Any]:
        return self._redraw(session, colormap=check_colormap(colormap))

    def _redraw(self, session: Session, **change: Any) -> dict[Any, Any]:
        started, passes_before = time.perf_counter(), forward_images()
        entry = self._entry(session)
        if entry is None:  # nothing explained in this session yet, or the server let the session go
            return {self.session: session, self.beta_note: say("explain.nothing_to_redraw")}
        return self._draw(
            entry, {**session, **change}, everything=False, cached=True,
            passes_before=passes_before, started=started,
        )

    def retarget(self, target: str | None, session: Session) -> dict[Any, Any]:
        """/retarget: another class from the cached masked passes (they hold every class's
        probability) and the same clusters: new scores, base and scissors, no forward pass.
        ``target`` is a class index (as text) or name; empty means the top-1 prediction."""
        started, passes_before = time.perf_counter(), forward_images()
        entry = self._entry(session)
        if entry is None:
            return {self.session: session, self.beta_note: say("explain.nothing_to_redraw")}
        wanted = class_of(entry.spec, target)
        return self._draw(
            entry, {**session, "target": wanted}, everything=True, cached=True,
            passes_before=passes_before, started=started,
        )

    def two_classes(self, class_a: str | None, class_b: str | None, session: Session) -> dict[Any, Any]:
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
                one = drawing.view_result(entry.explained.result, index, session["beta"])[0]
                picture = render.overlay(entry.display, one.heatmap, cmap=session["colormap"])
            path = files.save_jpeg(picture, folder / f"class_{letter.lower()}.jpg")
            name = entry.spec.categories[index]
            out[component] = gr.Image(
                value=path, label=say("explain.class_view", language, letter=letter, name=name, base=one.base_index,
                                      scissors=one.scissors_index),
                alt_text=drawing.overlay_alt(entry.spec, one, language),
            )  # a private listener: the label and alt text can follow the class
        return out

    def class_choices(self, model: str) -> tuple[Any, Any]:
        """The two-class pickers list the classes of a newly chosen model."""
        try:
            every = drawing.target_choices(get_model(model))[1:]
        except Exception:  # a model that cannot load: the model menu says why and puts the old one back
            return gr.update(), gr.update()
        return gr.Dropdown(choices=every, value=None), gr.Dropdown(choices=every, value=None)

    def heading(self, session: Session) -> Any:
        """The heatmap's heading: the formula the explanation on screen computed (eq. 22 or a
        variant, read from the explanation). A private step after Explain, so that /explain's
        outputs stay plain values for API callers."""
        entry = RESULTS.get(session["key"]) if session and "key" in session else None
        if entry is None or not entry.explained.is_cluster_cam:
            return gr.update()
        return gr.Image(label=drawing.heatmap_label(entry.explained.result, request_language()))

    def example(self, label: str) -> dict[Any, Any]:
        """An example button's whole answer (the last message of :meth:`example_in_stages`)."""
        *_, last = self.example_in_stages(label)
        return last

    def example_in_stages(self, label: str) -> Iterator[dict[Any, Any]]:
        """An example button: its image, the default settings, and the finished explanation (from
        the cache once warmed up), in the two messages of :meth:`explain_in_stages`."""
        path, chosen = self._example(label)
        for message in self.explain_in_stages(default_settings(path)):
            yield {**message, **chosen}

    def example_first(self, label: str) -> dict[Any, Any]:
        """An example button on the page, step 1 (step 2 is Explain's): its image, the default
        settings and what is in view."""
        path, chosen = self._example(label)
        return {**self.explain_first(default_settings(path)), **chosen}

    def _example(self, label: str) -> tuple[str, dict[Any, Any]]:
        """An example's file and the inputs it sets (the default settings)."""
        if label not in EXAMPLES:
            raise gr.Error(say("explain.unknown_example", label=repr(label)))
        path = str(ASSETS / EXAMPLES[label])
        c, preset = self.controls, PRESETS[DEFAULT_PRESET]
        return path, {
            c.image: path, c.model: c.spec.name, c.layer: c.spec.default_layer, c.preset: DEFAULT_PRESET,
            c.q: DEFAULT_Q, c.beta: DEFAULT_BETA, c.clustering: preset.get("clustering", "kmeans"),
            c.colormap: render.DEFAULT_CMAP,
        }

    def _example_handler(self, label: str) -> Any:
        def handler() -> dict[Any, Any]:
            return self.example_first(label)

        return handler

    # ---- wiring ----------------------------------------------------------------------------

    def _wire(self) -> None:
        c = self.controls
        network = lanes.EXPLAIN_LANE
        redraw = {"concurrency_limit": REDRAW_CONCURRENCY, "show_progress": "hidden", "trigger_mode": "always_last"}
        # The listeners exactly as Gradio calls them (the tests call these too).
        self.on_explain = user_errors(takes_settings()(self.explain))
        self.on_explain_in_stages = user_errors(takes_settings()(self.explain_in_stages))
        self.on_explain_first = user_errors(takes_settings()(self.explain_first))
        self.on_page_rest = user_errors(self.page_rest)
        self.on_reweight = user_errors(self.reweight)
        self.on_recolor = user_errors(self.recolor)
        self.on_retarget = user_errors(self.retarget)
        self.on_two_classes = user_errors(self.two_classes)
        heading = {"fn": self.heading, "inputs": [self.session], "outputs": [self.heatmap], "api_visibility": "private",
                   "queue": False}
        # The page's Explain in two chained events on the explain lane: step 1 (what is in view),
        # then, once its heatmap is on screen, step 2 (the rest). Gradio's queue is first come,
        # first served: in a class, everyone's step 1 queued before a step 2 goes first.
        first_steps = [c.explain.click(
            self.on_explain_first, c.settings(), self.first_outputs(), api_name="explain_first",
            api_visibility="undocumented", show_progress_on=[self.overlay], **network,
        )]
        example_outputs = [*self.first_outputs(), c.image, c.model, c.layer, c.preset, c.q, c.beta, c.clustering, c.colormap]
        for label, button in self.example_buttons.items():
            first_steps.append(button.click(
                user_errors(self._example_handler(label)), None, example_outputs,
                api_visibility="private", show_progress_on=[self.overlay], **network,
            ))
        for step in first_steps:
            painted = step.success(None, js=SCROLL_THEN_WAIT_FOR_PAINT)
            painted.success(**heading)  # rebuilds the heatmap's config for the session: after the paint
            painted.success(
                self.on_page_rest, [self.session, self.details_open], self.rest_outputs(), api_name="explain_rest",
                api_visibility="undocumented", show_progress_on=[self.clusters, self.masked], **network,
            )
        self.api_explain.click(
            self.on_explain_in_stages, c.settings(), self.explain_outputs(), api_name="explain", **network,
        )
        self.details.expand(self.details_opened, [self.session], [self.downloads, self.session, self.details_open],
                            api_visibility="private", queue=False)
        self.details.collapse(lambda: False, None, self.details_open, api_visibility="private", queue=False)
        c.beta.input(self.on_reweight, [c.beta, self.session], self.redraw_outputs(), api_name="reweight", **redraw)
        c.colormap.input(self.on_recolor, [c.colormap, self.session], self.redraw_outputs(),
                         api_visibility="private", **redraw)
        c.target.input(self.on_retarget, [c.target, self.session], self.explain_outputs(), api_name="retarget", **redraw)
        c.top5.input(self.on_retarget, [c.top5, self.session], self.explain_outputs(), api_visibility="private", **redraw)
        self.show_both.click(
            self.on_two_classes, [self.class_a, self.class_b, self.session], [self.overlay_a, self.overlay_b],
            api_visibility="private", **redraw,
        )
        c.model.change(self.class_choices, [c.model], [self.class_a, self.class_b], api_visibility="private", queue=False)
        cleared = self.cleared_outputs()
        c.image.upload(self.cleared, None, cleared, api_visibility="private", queue=False)
        c.image.clear(self.cleared, None, cleared, api_visibility="private", queue=False)
