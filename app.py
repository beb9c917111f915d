"""Cluster-CAM explorer: a Gradio app over the :mod:`clustercam` library.

This file only lays out the page and wires events; the handlers in :mod:`clustercamapp` convert
types and call the library. Run ``python app.py`` (``GRADIO_SERVER_NAME`` / ``GRADIO_SERVER_PORT``
choose the address, ``CLUSTERCAM_APP_MAX_FILE_SIZE`` the upload limit, default ``20mb``).

Named API endpoints (``gradio_client``; a ``Client`` keeps its session, so /reweight and
/retarget act on that client's last /explain). Inputs in order; ``target`` is "" (top-1), a class
index as text ("285") or a class name; ``n_eigenvectors`` 0 means Q − 1:

- ``/explain(image, model, layer, q, beta, clustering, n_eigenvectors, sigma, theta, seed, target,
  preset, similarity, normalize_rows)``
  → ``(overlay, heatmap, clusters, masked, scores, summary, downloads, summary_text, top5)``
- ``/reweight(beta)`` → ``(overlay, heatmap, summary, downloads, summary_text)``, no forward pass
- ``/retarget(target)`` → ``(overlay, heatmap, clusters, masked, scores, summary, downloads,
  summary_text, top5, target)``, no forward pass
- ``/layers(model)`` → ``(layer dropdown update, layer table)``
- ``/compare(image, model, layer, q, beta, clustering, n_eigenvectors, sigma, theta, seed, target,
  methods, preset, similarity, normalize_rows)`` → ``(gallery, table)``
- ``/sweep_q(image, model, layer, beta, clustering, n_eigenvectors, sigma, theta, seed, target,
  preset, similarity, normalize_rows)``
- ``/sweep_layers(image, model, q, beta, clustering, n_eigenvectors, sigma, theta, seed, target,
  max_layers, preset, similarity, normalize_rows)``
- ``/sweep_eigenvectors(image, model, layer, q, beta, sigma, theta, seed, target, preset, similarity,
  normalize_rows)`` → gallery

The last three inputs may be left out: they then take the page's defaults (the default preset,
the Euclidean similarity, rows not normalised); an empty preset is the default one.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import gradio as gr

from clustercam.methods import DEFAULT_BETA, DEFAULT_PRESET, DEFAULT_Q, PRESETS
from clustercam.zoo import DEFAULT_MODEL, available_models
from clustercamapp import handlers, studies, text, views
from clustercamapp.components import library_checked
from clustercamapp.engine import get_model, model_choices
from clustercamapp.memory import tune_allocator
from clustercamapp.views import preset_choices, target_choices

ASSETS = Path(__file__).resolve().parent / "assets"
EXAMPLES = ["chelsea.jpg", "coffee.jpg", "cat_and_coffee.jpg", "astronaut.jpg", "rocket.jpg", "grace_hopper.jpg"]
#: Requests doing network work at once (explain, compare, sweeps); cheap redraws get more.
NETWORK_CONCURRENCY = int(os.environ.get("CLUSTERCAM_APP_CONCURRENCY", 2))
REDRAW_CONCURRENCY = 8
QUEUE_SIZE = int(os.environ.get("CLUSTERCAM_APP_QUEUE_SIZE", 64))
#: Seconds a browser session's state is kept after its last use.
SESSION_TTL = 3600
MAX_FILE_SIZE = os.environ.get("CLUSTERCAM_APP_MAX_FILE_SIZE", "20mb")

#: Large text and the bundled IBM Plex Sans (no font is fetched from the internet).
THEME = gr.themes.Soft(
    primary_hue="emerald",
    secondary_hue="slate",
    text_size=gr.themes.sizes.text_lg,
    font=[gr.themes.LocalFont("IBM Plex Sans"), "ui-sans-serif", "system-ui", "sans-serif"],
)
#: Readable from the back of a classroom: galleries show every row (no inner scrolling) with
#: larger captions.
CSS = """
.gradio-container { max-width: 1680px !important; }
.full-gallery .grid-wrap.fixed-height { max-height: none !important; height: auto !important; overflow: visible !important; }
.full-gallery .caption-label { font-size: 15px; white-space: normal; }
#summary-md table { font-size: 16px; }
"""
GALLERY = {"format": "png", "object_fit": "contain", "height": "auto", "elem_classes": ["full-gallery"]}


def launch_options() -> dict[str, Any]:
    """``demo.launch`` arguments every launch uses (also the tests'): look, uploads, file access."""
    return {
        "theme": THEME,
        "css": CSS,
        "max_file_size": MAX_FILE_SIZE,
        "allowed_paths": [str(ASSETS)],
        "ssr_mode": False,
    }


def build_demo() -> gr.Blocks:
    """The whole page: inputs on the left, Explain / Compare / Sweeps / How it works on the right."""
    default_model = DEFAULT_MODEL if DEFAULT_MODEL in available_models() else available_models()[0]
    spec = get_model(default_model)
    with gr.Blocks(title="Cluster-CAM explorer", delete_cache=(3600, 3600)) as demo:
        session = gr.State(None, time_to_live=SESSION_TTL)
        gr.Markdown(text.TITLE, elem_id="title")
        with gr.Row(equal_height=False):
            with gr.Column(scale=4, min_width=360):
                image = library_checked(gr.Image(
                    type="filepath", image_mode=None, sources=["upload", "clipboard", "webcam"], label="Image",
                    height=320, elem_id="input-image",
                ))
                gr.Examples(
                    examples=[[str(ASSETS / name)] for name in EXAMPLES], inputs=[image],
                    label="Examples (click one, then Explain)", examples_per_page=len(EXAMPLES),
                )
                model = gr.Dropdown(
                    choices=model_choices(), value=default_model, label="Model",
                    info="Embedded models work offline; torchvision ones download their weights once.",
                    allow_custom_value=True, elem_id="model",
                )
                layer = gr.Dropdown(
                    choices=[(info.label, info.name) for info in spec.layers()], value=spec.default_layer,
                    label="Layer (name · kind · channels×height×width)", filterable=True,
                    allow_custom_value=True, elem_id="layer",
                )
                preset = gr.Dropdown(
                    choices=preset_choices(), value=DEFAULT_PRESET, label="Preset",
                    info="Measured trade-offs: docs/benchmarks.md. Q, β and the clustering below override it.",
                    allow_custom_value=True, elem_id="preset",  # the handler refuses unknown names with the list
                )
                q = gr.Slider(2, 16, value=DEFAULT_Q, step=1, label="Q: number of clusters", elem_id="q")
                beta = gr.Slider(
                    0, 1, value=DEFAULT_BETA, step=0.01, label="β: weight of base against scissors (eq. 22)",
                    elem_id="beta",
                )
                clustering = gr.Radio(
                    [("K-means", "kmeans"), ("Spectral", "spectral")], value="kmeans", label="Clustering",
                    elem_id="clustering",
                )
                with gr.Accordion("Spectral options and seed", open=False, elem_id="options"):
                    n_eigenvectors = gr.Slider(
                        0, 32, value=0, step=1, label="K: eigenvectors (0 = Q − 1)", elem_id="eigenvectors"
                    )
                    sigma = gr.Number(0.2, label="σ of eq. 11", elem_id="sigma")
                    theta = gr.Slider(0, 0.99, value=0.0, step=0.01, label="θ: edge threshold of eq. 11", elem_id="theta")
                    similarity = gr.Radio(
                        [("Euclidean (eq. 17)", "euclidean"), ("SSIM (eq. 10)", "ssim"), ("Correlation (shape)", "correlation")],
                        value=PRESETS[DEFAULT_PRESET].get("similarity", "euclidean"), label="Similarity of two maps",
                        elem_id="similarity",
                    )
                    normalize_rows = gr.Checkbox(
                        value=bool(PRESETS[DEFAULT_PRESET].get("normalize_rows", False)),
                        label="Unit-length rows of the spectral embedding (Ng–Jordan–Weiss)", elem_id="normalize-rows",
                    )
                    seed = gr.Number(0, precision=0, label="Seed", elem_id="seed")
                top5 = gr.Radio(choices=[], label="Target class: the top-5 predictions", elem_id="top5")
                target = gr.Dropdown(
                    choices=target_choices(spec), value="", label="…or any ImageNet class (type to search)",
                    filterable=True, allow_custom_value=True, elem_id="target",
                )
                run = gr.Button("Explain", variant="primary", size="lg", elem_id="explain-btn")
            with gr.Column(scale=7), gr.Tabs(elem_id="tabs"):
                with gr.Tab("Explain", elem_id="tab-explain"):
                    gr.Markdown(text.EXPLAIN_NOTE)
                    with gr.Row():
                        overlay = gr.Image(
                            label="Heatmap over the image", format="png", interactive=False, scale=3,
                            buttons=["download", "fullscreen"], elem_id="overlay",
                        )
                        heatmap = gr.Image(
                            label="Heatmap alone (eq. 22)", format="png", interactive=False, scale=2,
                            buttons=["download", "fullscreen"], elem_id="heatmap",
                        )
                    summary_md = gr.Markdown(label="Summary (text)", elem_id="summary-md")
                    clusters = gr.Gallery(
                        label="Cluster maps F̃q (eq. 18): base framed green, scissors red",
                        columns=3, elem_id="clusters", **GALLERY,
                    )
                    masked = gr.Gallery(
                        label="Masked images Hq∘X and the target's probability (eq. 19)",
                        columns=3, elem_id="masked", **GALLERY,
                    )
                    scores = gr.BarPlot(
                        x="cluster", y="score", color="role", color_map=views.ROLE_COLORS, tooltip=["cluster", "score", "maps"],
                        label="Scores yq = p(target | Hq∘X) of the masked images (eq. 19): base green, scissors red",
                        x_title="cluster q", y_title="p(target | Hq∘X)",
                        height=380, colors_in_legend=[], elem_id="scores-plot",
                    )
                    with gr.Accordion("Summary (JSON) and downloads", open=False, elem_id="details"):
                        summary = gr.JSON(label="Summary", elem_id="summary-json")
                        downloads = gr.File(
                            label="Downloads: overlay (PNG) and heatmap at the network's input size (.npy)",
                            file_count="multiple", interactive=False, elem_id="downloads",
                        )
                with gr.Tab("Compare methods", elem_id="tab-compare"):
                    gr.Markdown(text.COMPARE_NOTE, latex_delimiters=text.LATEX)
                    methods = gr.CheckboxGroup(
                        choices=studies.method_choices(), value=studies.default_methods(spec.device),
                        label="Methods", elem_id="compare-methods",
                    )
                    compare_run = gr.Button("Compare", variant="primary", elem_id="compare-btn")
                    compare_gallery = gr.Gallery(
                        label="Heatmaps (the paper's Fig. 1)", columns=3, elem_id="compare-gallery", **GALLERY,
                    )
                    compare_table = gr.Dataframe(
                        headers=studies.COMPARE_COLUMNS, interactive=False, wrap=True, elem_id="compare-table"
                    )
                with gr.Tab("Sweeps", elem_id="tab-sweeps"):
                    gr.Markdown(text.SWEEP_Q_NOTE)
                    sweep_q_run = gr.Button("Sweep Q = 2…8", elem_id="sweep-q-btn")
                    sweep_q_gallery = gr.Gallery(
                        label="Q sweep", columns=4, elem_id="sweep-q-gallery", **GALLERY
                    )
                    gr.Markdown(text.SWEEP_LAYERS_NOTE)
                    with gr.Row():
                        max_layers = gr.Slider(2, 12, value=6, step=1, label="Layers (at most)", elem_id="max-layers")
                        sweep_layers_run = gr.Button("Sweep layers", elem_id="sweep-layers-btn")
                    sweep_layers_gallery = gr.Gallery(
                        label="Layer sweep", columns=3, elem_id="sweep-layers-gallery", **GALLERY
                    )
                    gr.Markdown(text.SWEEP_K_NOTE)
                    sweep_k_run = gr.Button("Sweep K = 1…8 (spectral)", elem_id="sweep-k-btn")
                    sweep_k_gallery = gr.Gallery(
                        label="Eigenvector sweep", columns=4, elem_id="sweep-k-gallery", **GALLERY
                    )
                with gr.Tab("How it works", elem_id="tab-teach"):
                    gr.Markdown(text.HOW_IT_WORKS, latex_delimiters=text.LATEX, elem_id="how-it-works")
                    gr.Markdown(text.TEACH)
                    with gr.Row():
                        teach_cat = gr.Button("Explain “Egyptian cat”", elem_id="teach-cat")
                        teach_cup = gr.Button("Explain “espresso”", elem_id="teach-espresso")
                    teach_md = gr.Markdown(elem_id="teach-md")
                    teach_overlay = gr.Image(label="Heatmap", format="png", interactive=False, elem_id="teach-overlay")
                    teach_clusters = gr.Gallery(
                        label="Cluster maps (base green, scissors red)", columns=3, elem_id="teach-clusters",
                        **GALLERY,
                    )
                    teach_masked = gr.Gallery(
                        label="Masked images and scores", columns=3, elem_id="teach-masked", **GALLERY,
                    )
        layer_list = gr.JSON(visible=False, elem_id="layer-list")

        settings = [image, model, layer, q, beta, clustering, n_eigenvectors, sigma, theta, seed, target]
        spectral = [sigma, theta, seed, target]
        extra = [preset, similarity, normalize_rows]  # last, so that the older positions stay
        shown = [overlay, heatmap, clusters, masked, scores, summary, downloads, summary_md, top5]
        network = {"concurrency_id": "network", "concurrency_limit": NETWORK_CONCURRENCY}
        redraw = {"concurrency_limit": REDRAW_CONCURRENCY, "show_progress": "hidden", "trigger_mode": "always_last"}

        run.click(handlers.explain, [*settings, *extra], [*shown, session], api_name="explain", **network)
        preset.input(handlers.apply_preset, [preset], [q, beta, clustering, similarity, normalize_rows], api_visibility="private", queue=False)
        beta.input(
            handlers.reweight, [beta, session], [overlay, heatmap, summary, downloads, summary_md, session],
            api_name="reweight", **redraw,
        )
        target.input(handlers.retarget, [target, session], [*shown, target, session], api_name="retarget", **redraw)
        top5.input(handlers.retarget, [top5, session], [*shown, target, session], api_visibility="private", **redraw)
        model.change(handlers.layers, [model], [layer, layer_list], api_name="layers")
        image.change(handlers.reset_target, None, [target, top5, session], api_visibility="private", queue=False)

        compare_run.click(
            studies.compare, [*settings, methods, *extra], [compare_gallery, compare_table], api_name="compare", **network
        )
        sweep_q_run.click(
            studies.sweep_q, [image, model, layer, beta, clustering, n_eigenvectors, *spectral, *extra], [sweep_q_gallery],
            api_name="sweep_q", **network,
        )
        sweep_layers_run.click(
            studies.sweep_layers, [image, model, q, beta, clustering, n_eigenvectors, *spectral, max_layers, *extra],
            [sweep_layers_gallery], api_name="sweep_layers", **network,
        )
        sweep_k_run.click(
            studies.sweep_eigenvectors, [image, model, layer, q, beta, *spectral, *extra], [sweep_k_gallery],
            api_name="sweep_eigenvectors", **network,
        )
        teach_outputs = [teach_overlay, teach_clusters, teach_masked, teach_md]
        teach_cat.click(lambda: handlers.teach("Egyptian cat"), None, teach_outputs, api_visibility="private", **network)
        teach_cup.click(lambda: handlers.teach("espresso"), None, teach_outputs, api_visibility="private", **network)
    demo.queue(max_size=QUEUE_SIZE, default_concurrency_limit=NETWORK_CONCURRENCY)
    return demo


tune_allocator()  # flat memory for a long-running server (see clustercamapp/memory.py)
demo = build_demo()

if __name__ == "__main__":
    demo.launch(
        server_name=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
        server_port=int(os.environ.get("GRADIO_SERVER_PORT", 7860)),
        **launch_options(),
    )
