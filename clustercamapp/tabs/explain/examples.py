"""The example buttons: six freely licensed photographs (assets/ATTRIBUTION.md) explained with the
default settings, warmed into the cache when the server starts so that a click shows a finished
explanation."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any

import gradio as gr

from clustercam import render
from clustercam.methods import DEFAULT_BETA, DEFAULT_PRESET, DEFAULT_Q, PRESETS

from ...controls import Controls
from ...engine import EXAMPLES_READY, RUNTIME, explain_cached
from ...i18n import say
from ...settings import Settings

log = logging.getLogger(__name__)
ASSETS = Path(__file__).resolve().parents[3] / "assets"
#: The example buttons: English label (the handler's key; the button shows ``explain.example.<key>``) and file.
EXAMPLES = {
    "Cat": "chelsea.jpg",
    "Espresso": "coffee.jpg",
    "Cat and espresso": "cat_and_coffee.jpg",
    "Astronaut": "astronaut.jpg",
    "Rocket": "rocket.jpg",
    "Grace Hopper": "grace_hopper.jpg",
}
#: The background warm-up explains its next example only after this many seconds without a request.
QUIET_SECONDS = 5.0


def default_settings(image: str) -> Settings:
    """The page's defaults (the default preset on the embedded model) for ``image``."""
    return Settings.parse(image=image)


def example_inputs(controls: Controls, label: str) -> tuple[Settings, dict[Any, Any]]:
    """An example's settings (its image, the defaults) and the inputs the button sets on the page."""
    if label not in EXAMPLES:
        raise gr.Error(say("explain.unknown_example", label=repr(label)))
    path = str(ASSETS / EXAMPLES[label])
    c, preset = controls, PRESETS[DEFAULT_PRESET]
    return default_settings(path), {
        c.image: path, c.model: c.spec.name, c.layer: c.spec.default_layer, c.preset: DEFAULT_PRESET,
        c.q: DEFAULT_Q, c.beta: DEFAULT_BETA, c.clustering: preset.get("clustering", "kmeans"),
        c.colormap: render.DEFAULT_CMAP,
    }


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
            while RUNTIME.requests_in_flight() or min(RUNTIME.idle_seconds(), time.monotonic() - started) < quiet:
                time.sleep(0.05)
            try:
                _warm(name)
            except Exception:  # one example must not stop the others, nor the server
                log.exception("Warming up the example %s failed", name)
        EXAMPLES_READY.set()

    thread = threading.Thread(target=work, name="warm-examples", daemon=True)
    thread.start()
    return thread
