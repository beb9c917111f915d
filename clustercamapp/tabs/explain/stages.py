"""The Explain path, stage by stage: explanation (or the cache) → view → pictures → files → outputs.

Every action of the tab (:class:`~clustercamapp.tabs.explain.tab.ExplainTab`) runs the same
stages on the parts it asks for (:data:`~clustercamapp.tabs.explain.outputs.STEPS`):

1. :func:`explanation` — the network work: feature maps, clusters and the Q masked passes
   (eqs. 10–21), from the cache when the image, model, layer and options were explained before;
2. the view — the session's class, β, colormap and the request's language
   (:meth:`~.session.ExplainSession.view`), and :func:`kept_confidences`, the class kept on the image
   masked by the heatmap across β (one batched pass the first time a class is shown);
3. :func:`draw` — the pictures and texts of the parts (:func:`clustercamapp.drawing.render_view`,
   pure);
4. :func:`write` — each part's files and output values (:data:`WRITERS`), then the summary, the
   ``.npy`` heatmap and the zip (:func:`summarise`);
5. the outputs — ``{component: value}`` from the one table (:mod:`.outputs`).

:class:`Request` keeps one event's account (its passes and each stage's seconds) for the summary.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gradio as gr

from ... import drawing, files, gpu
from ...engine import TRADEOFF_BETAS, CachedExplanation, explain_cached, forward_images
from ...i18n import say
from ...settings import Settings
from .session import Bundle, ExplainSession, StepOne, Written


@dataclass
class Request:
    """One event's account: when it started, the network passes before it, whether its explanation
    came from the cache, the seconds of each stage, and step 1's figures when this is step 2."""

    step_one: StepOne | None = None
    cached: bool = True
    started: float = field(default_factory=time.perf_counter)
    passes_before: int = field(default_factory=forward_images)
    seconds: dict[str, float] = field(default_factory=dict)
    _open: dict[str, float] = field(default_factory=dict)

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Time the block as stage ``name`` (added to its seconds)."""
        self._open[name] = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds_of(name)
            del self._open[name]

    def seconds_of(self, name: str) -> float:
        """Seconds spent in stage ``name`` so far (a stage still running included)."""
        running = time.perf_counter() - self._open[name] if name in self._open else 0.0
        return self.seconds.get(name, 0.0) + running

    def passes(self) -> int:
        """Images this event pushed through the network so far."""
        return forward_images() - self.passes_before

    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    def as_step_one(self) -> StepOne:
        return StepOne(self.elapsed(), self.passes(), self.cached, self.seconds_of("explanation"))

    def account(self) -> dict[str, Any]:
        """The summary's ``request``: this request's network passes and server seconds (both steps
        of the page's Explain), and how they split into the explanation, the β curve's pass and
        the drawing and files; Gradio's serialisation follows the return (the load test measures it)."""
        one = self.step_one
        account = {
            "forward_passes": self.passes() + (one.passes if one else 0),
            "cached": one.cached if one else self.cached,
            "server_seconds": round(self.elapsed() + (one.seconds if one else 0.0), 4),
            "explanation_seconds": round(one.explanation_seconds if one else self.seconds_of("explanation"), 4),
            "curve_seconds": round(self.seconds_of("curve"), 4),
            "drawing_seconds": round(self.seconds_of("drawing"), 4),
        }
        if one is not None:  # when the first message (the heatmap in view) was ready
            account["first_paint_seconds"] = round(one.seconds, 4)
        return account


# ---- 1. explanation ------------------------------------------------------------------------------


def explanation(settings: Settings, request: Request, progress: Any = None) -> tuple[CachedExplanation, int | None]:
    """The explanation of the settings' image (cached) and the class asked for (checked before the
    network work). On ZeroGPU the β curve's pass rides in the explanation's GPU task (each task is
    a GPU allocation, counted against the quota); elsewhere it comes with the rest."""
    data, name = settings.image_bytes()
    if progress is not None:
        progress(0.05, desc=say("explain.loading", model=settings.model))
    spec = settings.spec()
    layer, target = settings.layer_name(spec), settings.target_index(spec)
    if progress is not None:
        progress(0.2, desc=say("explain.working"))
    with request.stage("explanation"):
        entry, request.cached = explain_cached(data, name, spec, layer, settings.options, tradeoff=gpu.ON_ZERO_GPU)
    return entry, target


# ---- 2. the view's kept confidences ----------------------------------------------------------------


def kept_confidences(entry: CachedExplanation, view: drawing.View, parts: frozenset[str],
                     request: Request) -> dict[float, float] | None:
    """``{β: p(class | X ∘ H(β))}`` on the curve's grid and at the view's β, when the parts need them
    (memoised per explanation; a class or β not measured yet costs one batched pass)."""
    if not parts & {"curve", "summary"}:
        return None
    shown = int(entry.explained.result.targets[0]) if view.target is None else view.target
    with request.stage("curve"):
        return entry.kept_confidence(shown, (*TRADEOFF_BETAS, view.beta))


# ---- 3. pictures -----------------------------------------------------------------------------------


def draw(entry: CachedExplanation, view: drawing.View, parts: frozenset[str],
         kept: dict[float, float] | None) -> drawing.Pictures:
    """The pictures and texts of ``parts`` (pure: :func:`clustercamapp.drawing.render_view`)."""
    return drawing.render_view(entry, view, parts & drawing.PARTS, kept)


# ---- 4. files and values ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Drawn:
    """What a part's writer needs: the explanation, the view, its pictures and where to write."""

    entry: CachedExplanation
    view: drawing.View
    pictures: drawing.Pictures
    folder: Path

    @property
    def stem(self) -> str:
        """File-name stem of the view's files: the image, the class and β."""
        one = self.pictures.result[0]
        return f"{files.slug(self.entry.name)}_{files.slug(self.entry.spec.categories[one.target])}_beta{one.beta:.2f}"


def _maps(drawn: Drawn) -> Written:
    # the heatmap over the photograph as JPEG (0.3 against 11 ms to encode as PNG), alone as PNG
    overlay = files.save_jpeg(drawn.pictures.overlay, drawn.folder / f"{drawn.stem}_overlay.jpg")
    heatmap = files.save_png(drawn.pictures.heatmap, drawn.folder / f"{drawn.stem}_heatmap.png")
    return Written({"overlay": overlay, "heatmap": heatmap}, (overlay, heatmap))


def _roles(drawn: Drawn) -> Written:
    base = files.save_png(drawn.pictures.base_map, drawn.folder / "base.png")
    scissors = files.save_png(drawn.pictures.scissors_map, drawn.folder / "scissors.png")
    return Written({"base_map": base, "scissors_map": scissors}, (base, scissors))


def _note(drawn: Drawn) -> Written:
    return Written({"beta_note": drawn.pictures.beta_note})


def _top5(drawn: Drawn) -> Written:
    one = drawn.pictures.result[0]
    return Written({"top5": gr.Radio(choices=drawn.pictures.top5, value=str(one.target))})


def _details(drawn: Drawn) -> Written:
    pictures, one = drawn.pictures, drawn.pictures.result[0]
    clusters = files.save_gallery(pictures.clusters, drawn.folder, "cluster")
    masked = files.save_gallery(pictures.masked, drawn.folder, "masked")
    chart = files.save_png(pictures.scores_chart, drawn.folder / "scores.png")
    second = one.top_classes[1] if len(one.top_classes) > 1 else one.target
    return Written({
        "clusters": clusters, "masked": masked, "scores_chart": chart, "scores_table": pictures.scores_table,
        "target": gr.update(value="" if drawn.view.target is None else str(drawn.view.target)),
        "class_a": str(one.target), "class_b": str(second),
    }, (*(path for path, _ in clusters + masked), chart))


def _curve(drawn: Drawn) -> Written:
    chart = files.save_png(drawn.pictures.tradeoff_chart, drawn.folder / f"{drawn.stem}_tradeoff.png")
    return Written({"tradeoff_md": drawn.pictures.tradeoff_markdown, "tradeoff_chart": chart}, (chart,))


#: Each part's writer (the summary comes last: :func:`summarise`, it needs the others' files).
WRITERS: dict[str, Callable[[Drawn], Written]] = {
    "maps": _maps, "roles": _roles, "note": _note, "top5": _top5, "details": _details, "curve": _curve,
}


def write(drawn: Drawn, parts: frozenset[str]) -> dict[str, Written]:
    """Each part's files and output values (in :data:`WRITERS`' order)."""
    return {part: writer(drawn) for part, writer in WRITERS.items() if part in parts}


def summarise(drawn: Drawn, kept: dict[float, float], session: ExplainSession, request: Request,
              *, bundle_now: bool) -> tuple[Written, Bundle | None]:
    """The summary (JSON and words), the exact ``.npy`` heatmap and the zip of every file of the view
    on screen (``session``'s parts: this event's and those kept from earlier ones). ``bundle_now``:
    write the zip now; otherwise it is returned as a :class:`Bundle` to write when asked for."""
    result, one = drawn.pictures.result, drawn.pictures.result[0]
    array = files.save_npy(one.heatmap, drawn.folder / f"{drawn.stem}_heatmap.npy")  # exact, as computed
    data = drawing.summary_data(drawn.entry, result, cached=request.cached, passes=0, seconds=0.0)
    data["confidence_kept"] = {
        "beta": round(kept[round(one.beta, 4)], 6), "beta_1": round(kept[1.0], 6),
        "whole_image": round(float(one.target_probability), 6),
        "curve": {f"{b:g}": round(kept[b], 6) for b in TRADEOFF_BETAS},
    }
    overlay = session.written["maps"].values["overlay"]
    every_file = [*session.written["maps"].files, array,
                  *(file for part in ("curve", "roles", "details") if part in session.written
                    for file in session.written[part].files)]
    path = drawn.folder / f"{drawn.stem}.zip"
    data["request"] = request.account()
    bundle = None
    if bundle_now:
        downloads = [files.write_bundle(path, every_file, data), overlay, array]
    else:  # written by the tab when the details are opened
        downloads = [overlay, array]
        bundle = Bundle(str(path), tuple(every_file), copy.deepcopy(data), tuple(downloads))
    data["request"] = request.account()  # the server's time with the zip written
    values = {"summary": data, "summary_md": drawing.summary_markdown(data, drawn.view.language), "downloads": downloads}
    return Written(values, (array,)), bundle
