"""The "Step by step" tab: the user's own image through Cluster-CAM's five steps, one screen each.

Step 1, the layer's feature maps (a sample); 2, their Q clusters and mean maps (eqs. 10–18); 3, the
input masked by each mean map and the class's probability on it (eq. 19); 4, the best and the
worst cluster, cognition-base and cognition-scissors (eqs. 20–21); 5, the two combined with β
(eq. 22), the photograph against its heatmap in an image slider, β movable there. Each screen has
one plain sentence and the equation numbers as secondary text; Back and Next move between them
(Gradio's ``Walkthrough``). The explanation is the Explain tab's (the same settings, the same
cache): walking through an image already explained costs no forward pass.
"""

from __future__ import annotations

from typing import Any

import gradio as gr

from clustercam import render

from .. import drawing, files, gpu, lanes, style
from ..common import user_errors
from ..controls import Controls
from ..engine import (
    RESULTS,
    RUNTIME,
    TRADEOFF_BETAS,
    CachedExplanation,
    explain_cached,
    torch_threads,
)
from ..i18n import T, request_language, say
from ..settings import Settings, checked_beta, takes_settings

#: The five steps (keys ``walk.step<n>``: the title, the stepper numbers them; ``walk.paper<n>``:
#: the equations each one is, as secondary text; ``walk.sentence<n>``: its plain sentence).
STEPS = 5
#: Feature maps shown in step 1 (the most active ones).
FEATURE_SAMPLE = 12


class WalkthroughTab:
    """Builds the tab under the current Blocks context and wires its listeners."""

    def __init__(self, controls: Controls):
        self.controls = controls
        gr.Markdown(T("walk.intro"), elem_classes=["note"])
        self.start = gr.Button(T("walk.start"), variant="primary", elem_id="walk-start")
        self.session = gr.State(None)
        self.sentences: list[gr.Markdown] = []
        with gr.Walkthrough(selected=0, elem_id="walk") as self.walk:
            for index in range(STEPS):
                with gr.Step(T(f"walk.step{index + 1}"), id=index, elem_id=f"walk-step-{index + 1}"):
                    self.sentences.append(gr.Markdown(T("walk.waiting"), elem_id=f"walk-text-{index + 1}"))
                    self._step_body(index)
                    gr.Markdown(T(f"walk.paper{index + 1}"), elem_classes=["equations"])
                    with gr.Row():
                        if index > 0:
                            gr.Button(T("walk.back"), size="sm", elem_id=f"walk-back-{index + 1}").click(
                                self._go(index - 1), None, self.walk, api_visibility="private", queue=False,
                            )
                        if index < STEPS - 1:
                            gr.Button(T("walk.next"), size="sm", variant="primary", elem_id=f"walk-next-{index + 1}").click(
                                self._go(index + 1), None, self.walk, api_visibility="private", queue=False,
                            )
        self._wire()

    def _step_body(self, index: int) -> None:
        if index == 0:
            self.features = gr.Gallery(label=T("walk.features"), columns=4, elem_id="walk-features",
                                       **style.GALLERY)
        elif index == 1:
            self.clusters = gr.Gallery(label=T("walk.clusters"), columns=4, elem_id="walk-clusters", **style.GALLERY)
        elif index == 2:
            self.masked = gr.Gallery(label=T("walk.masked"),
                                     columns=4, elem_id="walk-masked", **style.GALLERY)
        elif index == 3:
            with gr.Row():
                self.base = gr.Image(label=T("walk.base"), interactive=False, height=220, elem_id="walk-base",
                                     buttons=[])
                self.scissors = gr.Image(label=T("walk.scissors"), interactive=False, height=220,
                                         elem_id="walk-scissors", buttons=[])
        else:
            self.slider = gr.ImageSlider(label=T("walk.slider"), type="filepath",
                                         interactive=False, elem_id="walk-slider", max_height=420)
            self.beta = gr.Slider(0, 1, value=0.8, step=0.1, label=T("walk.beta"), elem_id="walk-beta")
            self.kept = gr.Markdown(elem_id="walk-kept")

    @staticmethod
    def _go(step: int) -> Any:
        def go() -> Any:
            return gr.Walkthrough(selected=step)

        return go

    def outputs(self) -> list[Any]:
        return [*self.sentences, self.features, self.clusters, self.masked, self.base, self.scissors, self.slider,
                self.beta, self.kept, self.walk, self.session]

    # ---- handlers --------------------------------------------------------------------------

    def walk_through(self, settings: Settings, progress: Any = None) -> dict[Any, Any]:
        """The five screens for the current image and settings (the Explain tab's explanation,
        from the cache when it is there), opened at step 1."""
        spec = settings.spec()
        data, name = settings.image_bytes()
        with RUNTIME.explaining():
            # on ZeroGPU the β curve's pass rides in the explanation's GPU task (one allocation)
            entry, _ = explain_cached(data, name, spec, settings.layer_name(spec), settings.options,
                                      tradeoff=gpu.ON_ZERO_GPU)
            beta = round(settings.beta, 1)
            session = {"key": entry.key, "target": settings.target_index(spec), "colormap": settings.colormap}
            return {**self._screens(entry, session, beta), self.beta: beta, self.walk: gr.Walkthrough(selected=0),
                    self.session: session}

    def move_beta(self, beta: float, session: dict[str, Any] | None) -> dict[Any, Any]:
        """Step 5's β: the slider's heatmap and the confidence kept again (no forward pass on the
        curve's β values)."""
        beta = checked_beta(beta)
        entry = RESULTS.get(session["key"]) if session else None
        if entry is None:
            raise gr.Error(say("walk.first"))
        return self._fifth(entry, session, beta)

    def _screens(self, entry: CachedExplanation, session: dict[str, Any], beta: float) -> dict[Any, Any]:
        one = drawing.view_result(entry.explained.result, session["target"], beta)[0]
        spec, size, folder = entry.spec, entry.thumbnail.size, files.output_dir()
        name, language = spec.categories[one.target], request_language()
        activations = entry.explained.result.activations[0]
        with torch_threads(1):
            features = files.save_gallery(
                drawing.feature_tiles(activations, one.labels, size, FEATURE_SAMPLE, language), folder, "feature"
            )
            clusters = files.save_gallery(drawing.cluster_tiles(one, size, language), folder, "cluster")
            masked = files.save_gallery(
                drawing.masked_tiles(one, entry.thumbnail, entry.explained.baseline_color, language), folder, "masked"
            )
            base, scissors = drawing.role_maps(one, size, session["colormap"])
            base_path, scissors_path = files.save_png(base, folder / "base.png"), files.save_png(scissors, folder / "scissors.png")
        channels, (height, width) = activations.shape[0], activations.shape[-2:]
        q, sizes = len(one.scores), one.cluster_sizes
        scores = [float(s) for s in one.scores]
        return {
            self.sentences[0]: say("walk.sentence1", language, layer=entry.explained.layer, channels=channels,
                                   height=height, width=width, shown=len(features)),
            self.sentences[1]: say("walk.sentence2", language, q=q, smallest=min(sizes), largest=max(sizes)),
            self.sentences[2]: say("walk.sentence3", language, name=name, best=max(scores), worst=min(scores)),
            self.sentences[3]: say("walk.sentence4", language, base=one.base_index, scissors=one.scissors_index, name=name,
                                   best=scores[one.base_index], worst=scores[one.scissors_index]),
            self.features: features, self.clusters: clusters, self.masked: masked,
            self.base: base_path, self.scissors: scissors_path,
            **self._fifth(entry, session, beta),
        }

    def _fifth(self, entry: CachedExplanation, session: dict[str, Any], beta: float) -> dict[Any, Any]:
        result = drawing.view_result(entry.explained.result, session["target"], beta)
        one = result[0]
        name, full, language = entry.spec.categories[one.target], float(one.target_probability), request_language()
        kept = entry.kept_confidence(one.target, (*TRADEOFF_BETAS, beta))
        with torch_threads(1):
            folder = files.output_dir()
            photo = files.save_png(entry.display, folder / "photo.png")
            shown = render.resize_heatmap(one.heatmap, entry.display.size)
            overlay = files.save_png(render.overlay(entry.display, shown, cmap=session["colormap"]),
                                     folder / f"overlay_beta{beta:.2f}.png")
        return {
            self.sentences[4]: say("walk.sentence5", language, formula=result.cognition.formula, beta=beta),
            self.slider: (photo, overlay),
            self.kept: drawing.tradeoff_markdown(name, beta, kept, full, drawing.heat_areas(result), language),
        }

    # ---- wiring ----------------------------------------------------------------------------

    def _wire(self) -> None:
        self.on_walk = user_errors(takes_settings()(self.walk_through))
        self.on_beta = user_errors(self.move_beta)
        self.start.click(self.on_walk, self.controls.settings(), self.outputs(), api_visibility="private",
                         **lanes.EXPLAIN_LANE)
        self.beta.input(self.on_beta, [self.beta, self.session], [self.sentences[4], self.slider, self.kept],
                        api_visibility="private", trigger_mode="always_last", show_progress="hidden")
