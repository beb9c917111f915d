"""Serving machinery: models loaded once, a lock per model, a bounded cache of explanations.

**Models.** :func:`get_model` loads a zoo model once per name (``functools.lru_cache``; only the
names of :func:`clustercam.available_models` are accepted, so the cache is bounded by the zoo) on
:func:`clustercam.zoo.default_device` (CUDA when present, else the CPU). A failed download is not
cached: the next request tries again.

**Locks.** :func:`model_lock` gives one ``threading.Lock`` per name. Every piece of network work
on a model (the forward and masked passes of an explanation) runs under its lock, so concurrent
requests never interleave on one network (hooks are per module); re-rendering (β, target) needs
no lock. Studies run on their own copy of the model under their own lock
(:func:`clustercamapp.lanes.study_model`), so they never hold the lock an explanation waits for.

**Explanations.** :data:`RESULTS` is an LRU of at most :data:`CACHE_SIZE` explanations that expire
after :data:`CACHE_TTL` seconds, keyed by the image's content hash, model, layer, Q and clustering
options (:func:`cache_key`). The target class and β are *not* part of the key: the cached
:class:`~clustercam.methods.ClusterCAMResult` gives any target with ``retarget`` and any β with
``reweight``, without touching the network. A session keeps only the key (in ``gr.State``).
:func:`explain_cached` checks the cache again after taking the model's lock, so a classroom
sending the same example at once computes it once.

**Threads.** Re-rendering (eq. 22 on a few ``H×W`` maps) runs with one torch thread
(:func:`torch_threads`): split over several threads, such small operations spend their time
synchronising, and on a busy CPU (another request's network work on every core) a 20 ms redraw
became 150 ms. An explanation's network work uses every core when it is the only explain-lane
request in flight and its share of them when others are (:func:`network_threads`), or
``CLUSTERCAM_APP_TORCH_THREADS``. Studies run on their own threads (:mod:`clustercamapp.lanes`).

**Counting.** Every pass through a model's :class:`~clustercam.network.Network` adds its batch
size to a per-thread counter (:func:`forward_images`); a handler reads it before and after to
report the network passes its own request made (Gradio runs each request's handler in one
worker thread).

**Compiling.** Each loaded model is compiled in a background thread at the lowest CPU priority
(the classifier and its default layer, :meth:`clustercam.network.Network.compile`, from a copy
taken under the model's lock); requests run eagerly until the compiled graphs have been checked
against the eager model, so start-up never waits for it. :func:`status` (``/status``) says
whether each model's graphs are built and how many calls they served.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from PIL import Image

from clustercam.imaging import common_shapes
from clustercam.methods import DEFAULT_PRESET, PRESETS, ClusterCAM, ClusterCAMResult
from clustercam.network import forward_images as network_images
from clustercam.pipeline import ImageExplanation, explain_image
from clustercam.zoo import MODELS, ModelSpec, available_models, load_model

from .gpu import ON_ZERO_GPU, duration_for, gpu_task
from .i18n import say
from .memory import QUIET_TRIM_SECONDS, release_free_memory

#: Explanations running at once (the explain lane; studies have their own, see
#: :mod:`clustercamapp.lanes`); cheap redraws get more.
NETWORK_CONCURRENCY = int(os.environ.get("CLUSTERCAM_APP_CONCURRENCY", 2))
REDRAW_CONCURRENCY = 8
QUEUE_SIZE = int(os.environ.get("CLUSTERCAM_APP_QUEUE_SIZE", 64))
#: Compile each loaded model in a background thread (``CLUSTERCAM_COMPILE=0`` turns it off;
#: see :mod:`clustercam.network`).
COMPILE_IN_BACKGROUND = True
#: The input shapes compiled (``CLUSTERCAM_APP_COMPILE_SHAPES``): ``common`` (the square and the
#: shapes common photographs have, :func:`~clustercam.imaging.common_shapes`) or ``square`` (each
#: loaded graph holds its own weights: nine shapes added ~350 MB of RSS on EfficientNet-Lite0).
COMPILE_SHAPES = os.environ.get("CLUSTERCAM_APP_COMPILE_SHAPES", "common")
#: Explanations kept server-side (LRU); ``CLUSTERCAM_APP_CACHE_SIZE`` overrides it.
CACHE_SIZE = int(os.environ.get("CLUSTERCAM_APP_CACHE_SIZE", 32))
#: Seconds an explanation stays usable after its last use; ``CLUSTERCAM_APP_CACHE_TTL`` overrides it.
CACHE_TTL = float(os.environ.get("CLUSTERCAM_APP_CACHE_TTL", 3600))
#: Longer side of the overlay shown and downloaded (the network sees its own size). Bounded so
#: that a β move re-renders and re-encodes it in a few milliseconds.
DISPLAY_SIDE = 640
#: Longer side of the heatmap picture shown alone (it is smooth: upsampled from the layer's grid).
HEATMAP_SIDE = 320
#: Longer side of the cluster and masked-image tiles.
TILE_SIDE = 320

#: Kept-confidence values (class × β) memoised per explanation before the memo starts afresh.
MAX_KEPT = 512
#: β values whose kept confidence is measured with every explanation (the curve beside β).
TRADEOFF_BETAS: tuple[float, ...] = tuple(round(0.1 * i, 1) for i in range(11))

#: torch threads for network work (None: torch's default); ``CLUSTERCAM_APP_TORCH_THREADS``.
NETWORK_THREADS = int(os.environ["CLUSTERCAM_APP_TORCH_THREADS"]) if os.environ.get("CLUSTERCAM_APP_TORCH_THREADS") else None

_guard = threading.Lock()
_model_locks: dict[str, threading.Lock] = {}
_load_locks: dict[str, threading.Lock] = {}
#: The cores torch uses by default here.
CORES = torch.get_num_threads()
_in_flight = [0]  # explain-lane requests being served (network work, waiting for it, or drawing)
_last_request_left = [time.monotonic()]  # when the last explain-lane request in flight finished
_trim_pending = [False]  # a timer will trim the heap once the lane is quiet


@contextmanager
def explaining() -> Iterator[None]:
    """Mark the block as an explain-lane request in flight (see :func:`network_threads`). Once the
    lane has been quiet for :data:`~clustercamapp.memory.QUIET_TRIM_SECONDS`, malloc's free pages
    go back to the system (:func:`_trim_when_quiet`)."""
    with _guard:
        _in_flight[0] += 1
    try:
        yield
    finally:
        with _guard:
            _in_flight[0] -= 1
            idle = _in_flight[0] == 0
            _last_request_left[0] = time.monotonic()
            schedule = idle and not _trim_pending[0]
            if schedule:
                _trim_pending[0] = True
        if schedule:
            _start_trim_timer(QUIET_TRIM_SECONDS)


def _start_trim_timer(delay: float) -> None:
    timer = threading.Timer(delay, _trim_when_quiet)
    timer.daemon = True
    timer.start()


def _trim_when_quiet() -> None:
    """Trim the heap (:func:`~clustercamapp.memory.release_free_memory`) when no explain-lane
    request has been in flight for :data:`~clustercamapp.memory.QUIET_TRIM_SECONDS`; otherwise
    wait for the rest of that time, or (a request in flight) for the lane's next quiet moment.
    Not at once when the lane falls idle: a request's two messages, or one visitor's Explain and
    β move, would each find their pages given back and take them again zeroed (see
    :mod:`clustercamapp.memory`)."""
    with _guard:
        busy = _in_flight[0] > 0
        wait = QUIET_TRIM_SECONDS - (time.monotonic() - _last_request_left[0])
        _trim_pending[0] = not busy and wait > 0
    if busy:
        return  # the request in flight schedules the next trim when it leaves
    if wait > 0:
        _start_trim_timer(wait)
        return
    release_free_memory()


def network_threads() -> int | None:
    """Torch threads for an explanation's network work, chosen when it starts:
    ``CLUSTERCAM_APP_TORCH_THREADS`` when set; else every core (None) when it is the only
    request in flight, and ``cores // NETWORK_CONCURRENCY`` when others are (drawing or waiting:
    two requests each on every core oversubscribe them; measured in docs/benchmarks.md)."""
    if NETWORK_THREADS:
        return NETWORK_THREADS
    with _guard:
        others = _in_flight[0] > 1
    return max(1, CORES // NETWORK_CONCURRENCY) if others else None


def forward_images() -> int:
    """Images pushed through any loaded model by the current thread so far (compiled or eager:
    counted by the models' :class:`~clustercam.network.Network`)."""
    return network_images()


@contextmanager
def torch_threads(count: int | None) -> Iterator[None]:
    """Run the block with ``count`` torch intra-op threads in this thread (None: unchanged)."""
    before = torch.get_num_threads()
    if count is None or count == before:
        yield
        return
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _named_lock(table: dict[str, threading.Lock], name: str) -> threading.Lock:
    with _guard:
        return table.setdefault(name, threading.Lock())


def model_lock(name: str) -> threading.Lock:
    """The lock held around all network work on model ``name``."""
    return _named_lock(_model_locks, name)


def model_choices() -> list[tuple[str, str]]:
    """``(title, name)`` of every model the app offers, embedded (offline) ones first; a model
    whose weights need a download says so in its title."""
    choices = []
    for name in available_models():
        entry = MODELS.get(name)
        title = entry.title if entry else name
        if entry is None or not entry.offline:
            title += " · downloads its weights (needs the internet once)"
        choices.append((title, name))
    return choices


#: Models loaded so far, by name (what /status reports).
LOADED: dict[str, ModelSpec] = {}
#: Set once the example explanations are in the cache (:func:`clustercamapp.tabs.explain.warm_examples`).
EXAMPLES_READY = threading.Event()
STARTED = time.monotonic()
#: CPU priority (nice) of the compiling thread (it holds no lock a request needs).
BACKGROUND_NICE = int(os.environ.get("CLUSTERCAM_APP_BACKGROUND_NICE", 19))


def background_priority() -> None:
    """Lower the calling thread's CPU priority (Linux: a thread has its own nice value), so that
    compiling yields the cores to requests; children it starts inherit it. A no-op where it is not
    permitted. (Never for a thread that holds a lock requests wait for.)"""
    if BACKGROUND_NICE and hasattr(os, "setpriority"):
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), BACKGROUND_NICE)


def idle_seconds() -> float:
    """Seconds since the last explain-lane request finished (0 while one is in flight)."""
    with _guard:
        return 0.0 if _in_flight[0] else time.monotonic() - _last_request_left[0]


def requests_in_flight() -> int:
    """Explain-lane requests being served now (background work waits while there are any)."""
    with _guard:
        return _in_flight[0]


@functools.lru_cache(maxsize=len(MODELS))
def _load(name: str) -> ModelSpec:
    spec = load_model(name)
    spec.layers()  # the probe pass that lists the layers, done once here
    if COMPILE_IN_BACKGROUND:
        # compiled graphs of the classifier and the default layer, built from a copy taken under
        # the model's lock by a niced thread; served eagerly until ready. The square first, then
        # the shapes common photographs are resized to (4:3, 3:2, 16:9, 8:7 either way up), so that a
        # typical upload, not only a square one, runs compiled
        spec.network.compile([spec.default_layer], background=True, lock=model_lock(name), thread_setup=background_priority,
                             shapes=common_shapes(spec.input_size) if COMPILE_SHAPES != "square" else ())
    LOADED[name] = spec
    return spec


def status() -> dict[str, Any]:
    """/status: each loaded model's compiled graphs, whether the examples are ready, uptime."""
    return {
        "models": {name: {"device": str(spec.device), **spec.network.status()} for name, spec in list(LOADED.items())},
        "examples_ready": EXAMPLES_READY.is_set(),
        "uptime_s": round(time.monotonic() - STARTED, 1),
    }


def get_model(name: str) -> ModelSpec:
    """The zoo model ``name``, loaded once (thread-safe).

    Raises:
        ValueError: a name the app does not offer.
        WeightsUnavailableError: its weights need a download that failed.
    """
    offered = available_models()
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


@dataclass
class CachedExplanation:
    """One cached Cluster-CAM explanation and what every re-render needs.

    Attributes:
        key: its :func:`cache_key`.
        explained: the library's explanation for the top-1 class, its ``image`` replaced by
            ``display`` (the full-size upload is not kept).
        display: the image at most :data:`DISPLAY_SIDE` pixels on its longer side.
        thumbnail: the image at most :data:`TILE_SIDE` pixels on its longer side (tiles).
        original_size: ``(width, height)`` of the upload.
        name: a short file-name stem for downloads.
        compute_seconds: wall time of the network work.
        options: the Cluster-CAM options it was explained with.
        kept: the class kept on the masked image, per (class, β) (:meth:`kept_confidence`).
        effects: how much β acts, per class (:meth:`beta_effect`).
    Every tensor in it is on the CPU (the cache never holds device memory, and a ZeroGPU task
    returns it from another process).
    """

    key: str
    explained: ImageExplanation
    display: Image.Image
    thumbnail: Image.Image
    original_size: tuple[int, int]
    name: str
    compute_seconds: float
    options: dict[str, Any] = dataclasses.field(default_factory=dict)
    kept: dict[tuple[int, float], float] = dataclasses.field(default_factory=dict)
    effects: dict[int, float] = dataclasses.field(default_factory=dict)
    _measuring: threading.Lock = dataclasses.field(default_factory=threading.Lock, repr=False, compare=False)

    @property
    def spec(self) -> ModelSpec:
        return self.explained.spec

    def beta_effect(self, target: int) -> float:
        """How much β acts on this explanation of class ``target``
        (:meth:`~clustercam.methods.cluster.ClusterCAMResult.beta_effect`: the heatmap at β = 0.5
        against β = 1), memoised per class: it does not depend on the β shown, so a β move
        does not compute it again (two recombinations, ~9 ms here)."""
        effect = self.effects.get(target)
        if effect is None:
            result = self.explained.result
            if int(result.targets[0]) != target:
                result = result.retarget(target)
            effect = self.effects[target] = float(result.beta_effect()[0])
        return effect

    def kept_confidence(self, target: int, betas: tuple[float, ...] | list[float]) -> dict[float, float]:
        """``{β: p(target | X ∘ H(β))}``: the network's probability of ``target`` on the input
        masked by the heatmap at each β (:meth:`~clustercam.ClusterCAM.beta_tradeoff`), memoised
        here; the β values not known yet cost one batched pass together. Needs no model lock:
        the pass registers no hook (a capture in another thread ignores it)."""
        wanted = [round(float(b), 4) for b in betas]
        with self._measuring:  # requests for the same explanation at once measure it once
            known = {b: self.kept.get((target, b)) for b in wanted}
            missing = [b for b, value in known.items() if value is None]
            if missing:
                measured = dict(zip(missing, measure_kept(
                    self.spec.name if ON_ZERO_GPU else self.spec, self.explained.layer, self.options,
                    self.explained.inputs, self.explained.result, target, missing,
                ), strict=True))
                known.update(measured)
                if len(self.kept) > MAX_KEPT:
                    self.kept.clear()
                self.kept.update({(target, b): value for b, value in measured.items()})
        return {b: float(known[b]) for b in wanted}


class ResultCache:
    """A thread-safe LRU of :class:`CachedExplanation` with at most ``max_entries`` and a TTL."""

    def __init__(self, max_entries: int = CACHE_SIZE, ttl: float = CACHE_TTL):
        if max_entries < 1:
            raise ValueError(f"max_entries must be at least 1; got {max_entries}.")
        self.max_entries, self.ttl = int(max_entries), float(ttl)
        self._entries: OrderedDict[str, tuple[float, CachedExplanation]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> CachedExplanation | None:
        now = time.monotonic()
        with self._lock:
            found = self._entries.get(key)
            if found is None:
                return None
            if now - found[0] > self.ttl:
                del self._entries[key]
                return None
            self._entries[key] = (now, found[1])
            self._entries.move_to_end(key)
            return found[1]

    def put(self, entry: CachedExplanation) -> None:
        with self._lock:
            self._entries[entry.key] = (time.monotonic(), entry)
            self._entries.move_to_end(entry.key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)


RESULTS = ResultCache()


def image_digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:32]


def cache_key(digest: str, model: str, layer: str, options: dict[str, Any]) -> str:
    """The key of an explanation: image content, model, layer, Q and clustering options."""
    settings = ",".join(f"{name}={options[name]}" for name in sorted(options))
    return f"{digest}|{model}|{layer}|{settings}"


def _shrunk(image: Image.Image, side: int) -> Image.Image:
    copy = image.copy()
    copy.thumbnail((side, side), Image.Resampling.LANCZOS)
    return copy


def explain_cached(
    data: bytes, name: str, spec: ModelSpec, layer: str, options: dict[str, Any],
    *, lock: threading.Lock | None = None, threads: int | str | None = "auto", tradeoff: bool = False,
) -> tuple[CachedExplanation, bool]:
    """The Cluster-CAM explanation of an image (raw file bytes) for its top-1 class, cached.

    Returns ``(entry, cached)``; ``cached`` is False when this call did the network work, under
    ``lock`` (default: :func:`model_lock` of the model; the study lane passes its own, with its
    own copy of the model as ``spec``) with ``threads`` torch threads (``"auto"``:
    :func:`network_threads`; None: as the calling thread has them). ``tradeoff``: also measure
    the top-1 class's kept confidence at :data:`TRADEOFF_BETAS` (the Explain tab's β curve; one
    batched pass of that many images, in the same lock).

    Raises:
        ImageError / ValueError / TypeError: from the library, with a message for a person.
    """
    key = cache_key(image_digest(data), spec.name, layer, options)
    entry = RESULTS.get(key)
    cached = entry is not None
    if entry is None:
        with lock or model_lock(spec.name):
            entry = RESULTS.get(key)
            cached = entry is not None
            if entry is None:
                with torch_threads(network_threads() if threads == "auto" else threads):
                    entry = _explain(key, data, name, spec, layer, options, tradeoff=tradeoff)
    if tradeoff and entry.explained.is_cluster_cam:  # memoised: free unless a study cached it
        entry.kept_confidence(int(entry.explained.result.targets[0]), TRADEOFF_BETAS)
    return entry, cached


def _explain(
    key: str, data: bytes, name: str, spec: ModelSpec, layer: str, options: dict[str, Any], *, tradeoff: bool = False,
) -> CachedExplanation:
    """The network work of :func:`explain_cached` (:func:`compute_explanation`: in this process,
    or a ZeroGPU task); the entry goes into the cache before the caller releases the lock, so a
    waiting request finds it."""
    computed = compute_explanation(data, spec.name if ON_ZERO_GPU else spec, layer, options, TRADEOFF_BETAS if tradeoff else ())
    method = ClusterCAM(spec, layer, **options)
    explained = ImageExplanation(spec, layer, computed.image, computed.prepared, computed.inputs, computed.result, method)
    display = _shrunk(explained.image, DISPLAY_SIDE)
    entry = CachedExplanation(
        key=key,
        explained=dataclasses.replace(explained, image=display),
        display=display,
        thumbnail=_shrunk(display, TILE_SIDE),
        original_size=explained.image.size,
        name=name,
        compute_seconds=computed.seconds,
        options=dict(options),
        kept={(int(computed.result.targets[0]), b): value for b, value in computed.kept.items()},
    )
    RESULTS.put(entry)
    return entry


@dataclass
class Computed:
    """What :func:`compute_explanation` hands back: plain data, every tensor on the CPU."""

    result: ClusterCAMResult
    image: Image.Image
    prepared: Image.Image
    inputs: torch.Tensor
    kept: dict[float, float]
    seconds: float


def explanation_passes(options: dict[str, Any], betas: tuple[float, ...] | list[float] = ()) -> int:
    """Network passes of one explanation: 1 + Q, and one per β of the kept-confidence curve."""
    q = options.get("q") or PRESETS[options.get("preset") or DEFAULT_PRESET]["q"]
    return 1 + int(q) + len(betas)


@gpu_task(duration=lambda data, model, layer, options, betas: duration_for(explanation_passes(options, betas)))
def compute_explanation(
    data: bytes, model: str | ModelSpec, layer: str, options: dict[str, Any], betas: tuple[float, ...] | list[float],
) -> Computed:
    """Explain an image (raw file bytes) with Cluster-CAM for its top-1 class, and measure the class
    kept on the masked image at each β of ``betas`` (one batched pass). ``model`` is a zoo name (a
    ZeroGPU task: the worker uses its own copy) or a loaded spec. Pure: nothing here changes
    the server's state."""
    spec = model if isinstance(model, ModelSpec) else get_model(model)
    start = time.perf_counter()
    explained = explain_image(spec, data, layer=layer, **options)
    kept: dict[float, float] = {}
    if betas and explained.is_cluster_cam:
        tradeoff = explained.method.beta_tradeoff(explained.inputs, explained.result, betas)
        kept = dict(zip((round(float(b), 4) for b in betas), tradeoff.kept[0].tolist(), strict=True))
    return Computed(explained.result.to("cpu"), explained.image, explained.prepared, explained.inputs.cpu(), kept,
                    time.perf_counter() - start)


@gpu_task(duration=lambda model, layer, options, inputs, result, target, betas: duration_for(len(betas)))
def measure_kept(
    model: str | ModelSpec, layer: str, options: dict[str, Any], inputs: torch.Tensor, result: ClusterCAMResult,
    target: int, betas: list[float],
) -> list[float]:
    """The class ``target`` kept on the input masked by the heatmap at each β (one batched pass),
    for an explanation computed earlier (``inputs`` and ``result`` on the CPU)."""
    spec = model if isinstance(model, ModelSpec) else get_model(model)
    if int(result.targets[0]) != target:
        result = result.retarget(target)
    cam = ClusterCAM(spec, layer, **options)
    return cam.beta_tradeoff(inputs.to(spec.device), result.to(spec.device), betas).kept[0].tolist()
