"""The models the explorer serves: each loaded once, a lock per model, compiled graphs built in the
background, and ``/status``.

**Loading.** :func:`get_model` loads a zoo model once per name (``functools.lru_cache``; only the
names of :func:`clustercam.available_models` are accepted, so the cache is bounded by the zoo) on
:func:`clustercam.zoo.default_device` (CUDA when present, else the CPU). A failed download is not
cached: the next request tries again.

**Locks.** :func:`model_lock` gives one ``threading.Lock`` per name. Every piece of network work
on a model (the forward and masked passes of an explanation) runs under its lock, so concurrent
requests never interleave on one network (hooks are per module); re-rendering (β, target) needs
no lock. Studies run on their own copy of the model under their own lock
(:func:`clustercamapp.lanes.study_model`), so they never hold the lock an explanation waits for.

**Compiled graphs.** Each loaded model's classifier and default layer are compiled by a background
thread at the lowest CPU priority (:meth:`clustercam.network.Network.compile`, from a copy taken
under the model's lock), for the square input and, with ``CLUSTERCAM_APP_COMPILE_SHAPES=common``
(the default), the ten other shapes common photographs are resized to
(:func:`clustercam.imaging.common_shapes`: 4:3, 500:333, 3:2, 16:9 and 8:7, either way up): eleven
graphs, each holding its own weights (~39 MB of RSS each on EfficientNet-Lite0: nine measured
~350 MB, docs/benchmarks.md). Requests run eagerly until a graph has been checked against the eager
model, so start-up never waits for it. :func:`status` (``/status``) lists them.
"""

from __future__ import annotations

import functools
import threading
import time
from typing import Any

from clustercam import environment
from clustercam.imaging import common_shapes
from clustercam.zoo import MODELS, ModelSpec, available_models, load_model

from ..i18n import say
from .runtime import RUNTIME

#: The input shapes compiled: ``common`` (the square and the shapes photographs have) or ``square``.
COMPILE_SHAPES: str = environment.read("CLUSTERCAM_APP_COMPILE_SHAPES")
#: Models loaded so far, by name (what /status reports).
LOADED: dict[str, ModelSpec] = {}
#: Model files the server was started with (``python app.py --model classifier.pt2 --labels
#: classes.txt``), by name: offered before the zoo, loaded once at start, never compiled again.
FILES: dict[str, ModelSpec] = {}
#: Set once the example explanations are in the cache (:func:`clustercamapp.tabs.explain.warm_examples`).
EXAMPLES_READY = threading.Event()
STARTED = time.monotonic()

_guard = threading.Lock()
_model_locks: dict[str, threading.Lock] = {}
_load_locks: dict[str, threading.Lock] = {}


def _named_lock(table: dict[str, threading.Lock], name: str) -> threading.Lock:
    with _guard:
        return table.setdefault(name, threading.Lock())


def model_lock(name: str) -> threading.Lock:
    """The lock held around all network work on model ``name``."""
    return _named_lock(_model_locks, name)


def add_model_file(path: str, labels: str | None = None) -> ModelSpec:
    """Load an exported program file (:func:`clustercam.classifiers.load_exported`) and offer it
    beside the zoo. Raises ``ValueError`` with a message for a person."""
    spec = load_model(path, labels=labels)
    FILES[spec.name] = LOADED[spec.name] = spec
    return spec


def offered_models() -> list[str]:
    """Every model name the app offers: the files it was started with, then the zoo."""
    return [*FILES, *available_models()]


def model_choices() -> list[tuple[str, str]]:
    """``(title, name)`` of every model the app offers: the files it was started with, embedded
    (offline) ones, then the rest; a model whose weights need a download says so in its title."""
    choices = [(f"{name} (your exported model)", name) for name in FILES]
    for name in available_models():
        entry = MODELS.get(name)
        title = entry.title if entry else name
        if entry is None or not entry.offline:
            title += " · downloads its weights (needs the internet once)"
        choices.append((title, name))
    return choices


@functools.lru_cache(maxsize=len(MODELS))
def _load(name: str) -> ModelSpec:
    spec = load_model(name)
    spec.layers()  # the probe pass that lists the layers, done once here
    if spec.input_shape is not None:  # a network of one input size (a vision transformer): that size only
        shapes = [spec.input_shape]
    else:
        shapes = common_shapes(spec.input_size) if COMPILE_SHAPES == "common" else ()
    spec.network.compile([spec.default_layer], background=True, lock=model_lock(name),
                         thread_setup=RUNTIME.lower_priority, shapes=shapes)
    LOADED[name] = spec
    return spec


def get_model(name: str) -> ModelSpec:
    """The zoo model ``name``, loaded once (thread-safe).

    Raises:
        ValueError: a name the app does not offer.
        WeightsUnavailableError: its weights need a download that failed.
    """
    if name in FILES:
        return FILES[name]
    offered = offered_models()
    if name not in offered:
        raise ValueError(say("errors.unknown_model", name=name, offered=", ".join(offered)))
    with _named_lock(_load_locks, name):
        return _load(name)


def resolve_layer_name(spec: ModelSpec, layer: str | None) -> str:
    """``layer`` checked against the model's explainable layers (empty: the default layer)."""
    if not layer:
        return spec.default_layer
    names = spec.layer_names()
    if layer not in names:
        close = [name for name in names if layer.lower() in name.lower()][:5]
        hint = say("errors.did_you_mean", names=", ".join(close)) if close else ""
        raise ValueError(say("errors.unknown_layer", layer=layer, model=spec.name, count=len(names),
                             default=spec.default_layer, hint=hint))
    return layer


def status() -> dict[str, Any]:
    """/status: each loaded model's compiled graphs, whether the examples are ready, uptime."""
    return {
        "models": {name: {"device": str(spec.device), **spec.network.status()} for name, spec in list(LOADED.items())},
        "examples_ready": EXAMPLES_READY.is_set(),
        "uptime_s": round(time.monotonic() - STARTED, 1),
    }
