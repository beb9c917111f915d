"""The controls every tab shares, built once: :func:`build_controls` → :class:`Controls`.

Two groups, as a user meets them:

- **Settings that need a new forward pass** (image, model, layer, preset, Q, clustering and its
  options) sit in the left column with the Explain button right under the image;
- **Instant controls** (β, the target class, the colormap) are made here but placed by the
  Explain tab next to the heatmap (``render=False`` here, ``.render()`` there), because moving
  them redraws from the cached explanation and the user should watch the heatmap while doing it.

Tabs read the shared values through :meth:`Controls.settings`, whose order is the settings block
of every network endpoint (:data:`clustercamapp.settings.SETTING_NAMES`).
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from typing import Any

import gradio as gr

from clustercam import render
from clustercam.methods import DEFAULT_BETA, DEFAULT_PRESET, DEFAULT_Q, PRESETS
from clustercam.methods.presets import preset_options
from clustercam.zoo import ModelSpec, WeightsUnavailableError

from . import drawing
from .checks import expect_text, named, named_image, refused
from .common import user_errors
from .components import library_checked
from .engine import get_model, model_choices
from .i18n import T, say
from .settings import SETTING_NAMES, check_preset

#: The β slider's step: fine enough for the tuned β (0.800-1.000 by 0.025, docs/protocol.md).
BETA_STEP = 0.025


@dataclass
class Controls:
    """The shared components (see the module docstring)."""

    image: gr.Image
    explain: gr.Button
    examples_slot: gr.Column
    model: gr.Dropdown
    layer: gr.Dropdown
    preset: gr.Dropdown
    q: gr.Slider
    clustering: gr.Radio
    n_eigenvectors: gr.Slider
    sigma: gr.Number
    theta: gr.Slider
    similarity: gr.Radio
    normalize_rows: gr.Checkbox
    seed: gr.Number
    beta: gr.Slider
    top5: gr.Radio
    target: gr.Dropdown
    colormap: gr.Dropdown
    model_in_use: gr.State
    spec: ModelSpec

    def settings(self) -> list[gr.components.Component]:
        """The settings block, in the order of :data:`~clustercamapp.settings.SETTING_NAMES`."""
        return [getattr(self, name) for name in SETTING_NAMES]

    def choose_model(self, model: str, in_use: str) -> dict[Any, Any]:
        """A new model: its layers (default selected) and classes. One that cannot be loaded
        (no network for its weights) puts the previous model back and says why, until closed."""
        try:
            spec = get_model(model)
        except (ValueError, WeightsUnavailableError) as error:
            gr.Warning(html.escape(str(error), quote=False), duration=None, title=say("controls.model_unusable", model=model))
            return {self.model: in_use}
        return {
            self.layer: gr.Dropdown(choices=[(info.label, info.name) for info in spec.layers()], value=spec.default_layer),
            self.target: gr.Dropdown(choices=drawing.target_choices(spec), value=""),
            self.model_in_use: spec.name,
        }

    def apply_preset(self, preset: str | None) -> dict[Any, Any]:
        """A preset sets Q, β, the clustering and the spectral similarity to its own (its
        normalisation and combination apply to the next Explain)."""
        options = preset_options(check_preset(preset))
        return {
            self.q: options["q"], self.beta: options["beta"], self.clustering: options.get("clustering", "kmeans"),
            self.similarity: options.get("similarity", "euclidean"),
            self.normalize_rows: bool(options.get("normalize_rows", False)),
        }

    def wire(self) -> None:
        """The listeners of the shared controls (not tied to one tab)."""
        self.model.change(  # also when it is put back: that model loads, nothing more happens
            self.choose_model, [self.model, self.model_in_use], [self.model, self.layer, self.target, self.model_in_use],
            api_visibility="private",
        )
        self.preset.input(
            user_errors(self.apply_preset), [self.preset], [self.q, self.beta, self.clustering, self.similarity, self.normalize_rows],
            api_visibility="private", queue=False,
        )
        gr.api(user_errors(layers), api_name="layers")


def build_controls(spec: ModelSpec) -> Controls:
    """The left column (image, Explain, examples slot, forward-pass settings) and the instant
    controls (unrendered), for the default model ``spec``."""
    preset = PRESETS[DEFAULT_PRESET]
    with gr.Column(scale=4, min_width=320, elem_id="settings-column"):
        image = named_image(library_checked(gr.Image(
            type="filepath", image_mode=None, sources=["upload", "clipboard", "webcam"], label=T("controls.image"),
            height=260, elem_id="input-image",
        )))
        explain = gr.Button(T("controls.explain"), variant="primary", size="lg", elem_id="explain-btn")
        with gr.Column(elem_id="examples") as examples_slot:
            pass  # the Explain tab puts its cached examples here
        with gr.Group(elem_id="forward-settings"):
            gr.Markdown(T("controls.forward_title"), elem_classes=["group-title"])
            model = gr.Dropdown(
                choices=model_choices(), value=spec.name, label=T("controls.model"), allow_custom_value=True, elem_id="model",
            )
            layer = gr.Dropdown(
                choices=[(info.label, info.name) for info in spec.layers()], value=spec.default_layer,
                label=T("controls.layer"), filterable=True,
                allow_custom_value=True, elem_id="layer",
            )
            preset_menu = gr.Dropdown(
                choices=drawing.preset_choices(), value=DEFAULT_PRESET, label=T("controls.preset"), info=T("controls.preset_info"),
                allow_custom_value=True, elem_id="preset",  # the handler refuses unknown names with the list
            )
            q = gr.Slider(2, 16, value=DEFAULT_Q, step=1, label=T("controls.q"), elem_id="q")
            clustering = gr.Radio(
                [(T("controls.kmeans"), "kmeans"), (T("controls.spectral"), "spectral")], value=preset.get("clustering", "kmeans"),
                label=T("controls.clustering"), elem_id="clustering", info=T("controls.clustering_info"),
            )
            with gr.Accordion(T("controls.options"), open=False, elem_id="options"):
                n_eigenvectors = gr.Slider(0, 32, value=0, step=1, label=T("controls.eigenvectors"), elem_id="eigenvectors")
                sigma = gr.Number(0.2, label=T("controls.sigma"), elem_id="sigma")
                theta = gr.Slider(0, 0.99, value=0.0, step=0.01, label=T("controls.theta"), elem_id="theta")
                similarity = gr.Radio(
                    [(T(f"controls.similarity_{name}"), name) for name in ("euclidean", "ssim", "correlation")],
                    value=preset.get("similarity", "euclidean"), label=T("controls.similarity"), elem_id="similarity",
                )
                normalize_rows = gr.Checkbox(
                    value=bool(preset.get("normalize_rows", False)),
                    label=T("controls.normalize_rows"), elem_id="normalize-rows",
                )
                seed = gr.Number(0, precision=0, label=T("controls.seed"), elem_id="seed")
    beta = gr.Slider(
        0, 1, value=DEFAULT_BETA, step=BETA_STEP, label=T("controls.beta"), info=T("controls.beta_info"),
        elem_id="beta", render=False,
    )
    top5 = gr.Radio(choices=[], label=T("controls.top5"), elem_id="top5", render=False)
    target = gr.Dropdown(
        choices=drawing.target_choices(spec), value="", label=T("controls.target"),
        filterable=True, allow_custom_value=True, elem_id="target", render=False,
    )
    colormap = gr.Dropdown(
        choices=list(render.CMAPS), value=render.DEFAULT_CMAP, label=T("controls.colormap"), info=T("controls.colormap_info"), elem_id="colormap", render=False,
    )
    for name, component in (("model", model), ("layer", layer), ("preset", preset_menu), ("q", q), ("clustering", clustering),
                            ("n_eigenvectors", n_eigenvectors), ("sigma", sigma), ("theta", theta), ("similarity", similarity),
                            ("normalize_rows", normalize_rows), ("seed", seed), ("beta", beta), ("target", target),
                            ("colormap", colormap)):
        named(component, name)  # a value Gradio's preprocessing refuses names its parameter
    controls = Controls(
        image=image, explain=explain, examples_slot=examples_slot, model=model, layer=layer, preset=preset_menu,
        q=q, clustering=clustering, n_eigenvectors=n_eigenvectors, sigma=sigma, theta=theta, similarity=similarity,
        normalize_rows=normalize_rows, seed=seed, beta=beta, top5=top5, target=target, colormap=colormap,
        model_in_use=gr.State(spec.name), spec=spec,
    )
    controls.wire()
    return controls


def layers(model: str) -> tuple[str, list[dict[str, Any]]]:
    """/layers → (the model's default layer, its explainable layers as rows: name, kind,
    channels, height, width)."""
    name = expect_text(model, "model", empty=False)
    try:
        spec = get_model(name)
    except ValueError as error:
        raise refused("model", model, str(error)) from None
    rows = [
        {"name": info.name, "kind": info.kind, "channels": info.channels, "height": info.height, "width": info.width}
        for info in spec.layers()
    ]
    return spec.default_layer, rows
