"""Component helpers of the app: the image input that leaves every check to the library."""

from __future__ import annotations

import json
from typing import Any

import gradio as gr


def library_checked(image: gr.Image) -> gr.Image:
    """Make ``image`` (``type="filepath"``) hand an upload's path on without opening it.

    ``gr.Image`` opens every upload with PIL while preprocessing, so an unreadable file fails
    inside Gradio with an opaque error before any handler runs (and with an ``image_mode`` the
    image is even re-encoded). With this, the path of the file (already checked by Gradio to be an
    upload of this server) goes straight to the handler, whose :func:`clustercam.load_image`
    refuses non-images, truncated files and oversized images with a message for a person
    (``gr.Error``), applies the EXIF orientation and converts any mode.

    The method is replaced on this one instance rather than in a ``gr.Image`` subclass: Gradio
    writes a generated ``.pyi`` stub beside the source of every component subclass.
    """
    if image.type != "filepath":
        raise ValueError("library_checked needs gr.Image(type='filepath').")
    default = image.preprocess

    def preprocess(payload: Any) -> Any:
        if payload is None:
            return None
        url = getattr(payload, "url", None) or ""
        path = getattr(payload, "path", None)
        if path and not url.startswith("data:"):
            return str(path)
        return default(payload)  # pasted or webcam images sent inline (data: URLs)

    image.preprocess = preprocess  # type: ignore[method-assign]
    return image


def deep_link_button(label: Any, copied: Any, **options: Any) -> gr.DeepLinkButton:
    """A ``gr.DeepLinkButton`` whose two texts are translated strings (:func:`clustercamapp.i18n.T`).

    The button writes its "copied" text into a line of JavaScript (``return "…";``) and takes both
    texts as ``str`` only: each is passed as Gradio's translation marker, the copied one escaped
    for that JavaScript string; the browser translates the marker wherever the button shows it.
    """
    return gr.DeepLinkButton(str(label), copied_value=json.dumps(str(copied))[1:-1], **options)
