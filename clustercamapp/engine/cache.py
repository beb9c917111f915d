"""The explanation cache: one explanation per image, model, layer and clustering options, redrawn
for any class and β without touching the network.

:data:`RESULTS` is an LRU of at most ``CLUSTERCAM_APP_CACHE_SIZE`` explanations that expire after
``CLUSTERCAM_APP_CACHE_TTL`` seconds, keyed by the image's content hash, model, layer, Q and
clustering options (:func:`cache_key`). The target class and β are *not* part of the key: the
cached :class:`~clustercam.methods.ClusterCAMResult` gives any target with ``retarget`` and any β
with ``reweight`` (eq. 22 again), with no forward pass. A session keeps only the key.
:func:`explain_cached` checks the cache again after taking the model's lock, so a classroom
sending the same example at once computes it once. The network work itself is a task
(:mod:`clustercamapp.engine.tasks`: in this process, or on ZeroGPU in a GPU worker).
"""

from __future__ import annotations

import dataclasses
import hashlib
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from PIL import Image

from clustercam import environment
from clustercam.methods import ClusterCAM
from clustercam.pipeline import ImageExplanation
from clustercam.zoo import ModelSpec

from .. import gpu
from . import tasks
from .models import model_lock
from .runtime import RUNTIME, torch_threads

#: Explanations kept server-side (LRU) and the seconds one stays usable after its last use.
CACHE_SIZE: int = environment.read("CLUSTERCAM_APP_CACHE_SIZE")
CACHE_TTL: float = environment.read("CLUSTERCAM_APP_CACHE_TTL")
#: Longer side of the overlay shown and downloaded (the network sees its own size). Bounded so
#: that a β move re-renders and re-encodes it in a few milliseconds.
DISPLAY_SIDE = 640
#: Longer side of the cluster and masked-image tiles and of the maps shown small.
TILE_SIDE = 320
#: Kept-confidence values (class × β) memoised per explanation before the memo starts afresh.
MAX_KEPT = 512
#: β values whose kept confidence is measured with every explanation (the curve beside β).
TRADEOFF_BETAS: tuple[float, ...] = tuple(round(0.1 * i, 1) for i in range(11))


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
                measured = dict(zip(missing, tasks.measure_kept(
                    self.spec.name if gpu.ON_ZERO_GPU else self.spec, self.explained.layer, self.options,
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
    :meth:`~clustercamapp.engine.runtime.Runtime.network_threads`; None: as the calling thread has them). ``tradeoff``: also measure
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
                with torch_threads(RUNTIME.network_threads() if threads == "auto" else threads):
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
    computed = tasks.compute_explanation(data, spec.name if gpu.ON_ZERO_GPU else spec, layer, options, TRADEOFF_BETAS if tradeoff else ())
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


