"""The page's look: a theme whose text passes WCAG AA contrast (≥ 4.5:1) and CSS for projectors
and phones (galleries without inner scrolling or blank space, captions under the tiles)."""

from __future__ import annotations

import gradio as gr

#: Large text, the bundled IBM Plex Sans (no font is fetched from the internet), and colours
#: darkened from the Soft theme's where its text fell below 4.5:1 (green labels 2.2:1, hints
#: 2.5:1, white on the primary button 2.5:1).
THEME = gr.themes.Soft(
    primary_hue="emerald",
    secondary_hue="slate",
    neutral_hue="slate",
    text_size=gr.themes.sizes.text_lg,
    font=[gr.themes.LocalFont("IBM Plex Sans"), "ui-sans-serif", "system-ui", "sans-serif"],
).set(
    button_primary_background_fill="*primary_800",
    button_primary_background_fill_hover="*primary_700",
    button_primary_text_color="white",
    block_label_text_color="*neutral_800",
    block_title_text_color="*neutral_800",
    block_info_text_color="*neutral_700",
    body_text_color_subdued="*neutral_700",
    block_label_background_fill="*neutral_100",
    checkbox_label_text_color="*neutral_800",
    checkbox_label_background_fill_selected="*primary_800",
    checkbox_label_text_color_selected="white",
    checkbox_background_color_selected="*primary_800",
    checkbox_border_color_selected="*primary_800",
    slider_color="*primary_700",
    input_placeholder_color="*neutral_600",
    link_text_color="*primary_800",
    link_text_color_visited="*primary_800",
)

#: Gallery keywords shared by every gallery of the page.
GALLERY = {"format": "png", "object_fit": "contain", "height": "auto", "elem_classes": ["full-gallery"]}

CSS = """
.gradio-container { max-width: 1680px !important; }
/* Galleries show every row (no inner scrolling, no blank height); captions sit under the tiles. */
.full-gallery .grid-wrap, .full-gallery .grid-wrap.fixed-height {
  max-height: none !important; height: auto !important; min-height: 0 !important; overflow: visible !important;
}
.full-gallery .grid-container { grid-auto-rows: auto !important; height: auto !important; padding-top: 4px !important; }
/* A gallery's label in the flow (a long or translated label pushes the tiles down instead of covering them). */
.full-gallery > label[data-testid="block-label"] { position: static !important; width: fit-content;
  max-width: calc(100% - 56px); margin: 6px 6px 4px; }
.full-gallery .gallery-item, .full-gallery .thumbnail-item { height: auto !important; min-height: 0 !important;
  aspect-ratio: auto !important; }
.full-gallery .thumbnail-item { display: flex !important; flex-direction: column !important; }
.full-gallery .thumbnail-item img { position: static !important; width: 100% !important; height: auto !important;
  max-height: 260px; object-fit: contain !important; }
.full-gallery .caption-label { position: static !important; transform: none !important; max-width: 100% !important;
  white-space: normal !important; overflow: visible !important; font-size: 15px; color: #1e293b !important;
  background: #f1f5f9 !important; margin: 0 !important; padding: 2px 6px !important; border-radius: 0 0 6px 6px;
  text-align: left; width: 100%; box-sizing: border-box; }
@media (max-width: 640px) {
  .full-gallery .grid-container { grid-template-columns: repeat(2, minmax(0, 1fr)) !important; }
  #overlay { height: auto !important; min-height: 160px; }
  #overlay .image-container { height: auto !important; }
  #overlay img { max-height: 320px; }
}
/* The small pictures (four a row, two on a phone): a label of several lines makes the block taller,
   the picture keeps its own height. */
.labelled-image:not(#overlay) { height: auto !important; }
.labelled-image:not(#overlay) .image-container { flex: none; height: 150px !important; }
/* Pictures start under their label instead of behind it, however many lines the label takes (a long
   heading, a translation, a phone): the label is in the flow, the picture gets the rest of the block. */
.labelled-image { display: flex !important; flex-direction: column; }
.labelled-image > label[data-testid="block-label"] { position: static !important; flex: none; width: fit-content;
  max-width: calc(100% - 12px); margin: 6px 6px 4px; }
.labelled-image .image-container { flex: 1 1 auto; min-height: 0; height: auto !important; margin-top: 0; }
.group-title p { margin: 4px 8px !important; }
#example-buttons button { flex: 1 1 40%; }
#summary-md { font-size: 17px; }
/* A display equation wider than a phone scrolls instead of being cut at the edge. */
.katex-display { overflow-x: auto; overflow-y: hidden; padding-bottom: 2px; }
#beta-note:empty { display: none; }
"""
