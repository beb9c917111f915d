"""Running the network fast without changing what it computes: channels-last, inference mode, and
``torch.compile`` where a compiler is available, with the plain eager model as the fallback.

Every forward pass a method makes goes through a :class:`Network`:

- :meth:`Network.logits` — the classifier on a batch (the masked passes of Cluster-CAM,
  Score-CAM, Group-CAM, the metrics). Compiled once with a dynamic batch dimension;
- :meth:`Network.layer_and_logits` — one layer's feature maps *and* the logits from one compiled
  graph (the first pass of a method that needs no gradient). Forward hooks cannot capture a layer
  inside a compiled graph, so the graph is built by FX feature extraction (timm's
  ``create_feature_extractor``, which also traces timm's "same" padding) with the layer's output
  as a second output, then compiled;
- :meth:`Network.eager` — the model itself, for passes that need hooks or gradients (the gradient
  methods): unchanged.

Compilation never blocks: :meth:`Network.compile` (or ``background=True``) builds the graphs in a
thread while every call runs eagerly; the compiled graphs take over once they gave the same
logits as the eager model on a probe batch (else they are dropped, and a warning says why).
Graphs are built for square inputs of the model's size (any batch size): what ``bench`` and
square images feed. Serving never compiles (``torch.compiler.set_stance("eager_on_recompile")``):
another input size runs eagerly, as fast as before.
Inductor's caches live in ``~/.cache/clustercam/inductor`` (``TORCHINDUCTOR_CACHE_DIR`` overrides),
so a restarted server compiles in seconds instead of a minute. ``CLUSTERCAM_COMPILE=0`` turns
compilation off everywhere; ``CLUSTERCAM_CHANNELS_LAST=0`` keeps the NCHW layout.

Every call adds its batch size to the per-thread count read by :func:`forward_images` (the app
reports the passes of each request with it) and calls the ``observers`` (e.g. a counter of a test).
"""

from __future__ import annotations

import copy
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

import torch
from torch import nn

log = logging.getLogger(__name__)

#: Largest difference of logits between a compiled graph and the eager model that is accepted.
TOLERANCE = 1e-3


def _serving() -> AbstractContextManager:
    """Serving never compiles: an input the compiled graphs were not built for (another height or
    width than the square probe's, e.g. an upload that is not square) runs eagerly instead of
    waiting a minute for a new graph. Only :meth:`Network.compile` compiles. (The stance is made
    per call: creating it already sets it, and leaving restores the one before.)"""
    return torch.compiler.set_stance("eager_on_recompile")
_counter = threading.local()


def forward_images() -> int:
    """Images pushed through any :class:`Network` by the current thread so far."""
    return getattr(_counter, "images", 0)


@contextmanager
def before_each_pass(check: Callable[[int], None]) -> Iterator[None]:
    """Call ``check(batch)`` in this thread before every pass of any :class:`Network` in the block.

    A check that raises stops the work between batches, before the next pass runs: the app uses
    it to stop a study whose client left or whose session sent a newer one. Nested blocks add
    their checks; only the current thread is affected.
    """
    checks = getattr(_counter, "checks", ())
    _counter.checks = (*checks, check)
    try:
        yield
    finally:
        _counter.checks = checks


def compile_wanted() -> bool:
    """Whether compilation is allowed (``CLUSTERCAM_COMPILE``, default on)."""
    return os.environ.get("CLUSTERCAM_COMPILE", "1").strip().lower() not in ("0", "false", "no", "off")


def channels_last_wanted() -> bool:
    return os.environ.get("CLUSTERCAM_CHANNELS_LAST", "1").strip().lower() not in ("0", "false", "no", "off")


def compiler_available() -> bool:
    """``torch.compile`` can run here: inductor needs a C++ compiler on the CPU."""
    import shutil

    if not hasattr(torch, "compile"):
        return False
    return any(shutil.which(name) for name in ("g++", "c++", "clang++"))


def _use_persistent_cache() -> None:
    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(Path.home() / ".cache" / "clustercam" / "inductor"))


class Network:
    """A classifier's forward passes, eager until compiled graphs are ready (see the module doc).

    Args:
        model: the network in eval mode.
        input_size: side of the square probe batch used to check compiled graphs.
        channels_last: store the weights and feed the inputs in the channels-last layout
            (faster convolutions on CPUs and tensor cores; identical results up to rounding).
    """

    def __init__(self, model: nn.Module, input_size: int = 224, *, channels_last: bool | None = None):
        self.model = model
        self.input_size = int(input_size)
        self.channels_last = channels_last_wanted() if channels_last is None else bool(channels_last)
        if self.channels_last:
            with torch.inference_mode(False):  # weights stay ordinary tensors (gradient methods)
                model.to(memory_format=torch.channels_last)
        parameter = next(model.parameters(), None)
        if parameter is not None and parameter.device.type == "cuda":
            # fixed input sizes: let cuDNN pick the fastest convolution algorithms once. Mixed
            # precision stays off: bfloat16 moved logits by up to 0.18 on this model.
            torch.backends.cudnn.benchmark = True
        self.observers: list[Callable[[int], None]] = []
        self._classifier: Callable[[torch.Tensor], torch.Tensor] | None = None
        self._layers: dict[str, Callable[[torch.Tensor], dict[str, torch.Tensor]]] = {}
        self._lock = threading.Lock()
        self._private: nn.Module = model
        self._thread: threading.Thread | None = None
        self.compile_seconds: float | None = None
        self.compile_error: str | None = None

    # ---- calls -------------------------------------------------------------------------

    def _count(self, batch: int) -> None:
        for check in getattr(_counter, "checks", ()):
            check(batch)
        _counter.images = forward_images() + batch
        for observer in list(self.observers):
            observer(batch)

    def _layout(self, inputs: torch.Tensor) -> torch.Tensor:
        return inputs.contiguous(memory_format=torch.channels_last) if self.channels_last and inputs.dim() == 4 else inputs

    def eager(self, inputs: torch.Tensor) -> torch.Tensor:
        """The model itself (hooks and gradients work)."""
        self._count(int(inputs.shape[0]))
        return self.model(self._layout(inputs))

    def logits(self, inputs: torch.Tensor) -> torch.Tensor:
        """Logits of a batch with no gradient: the compiled classifier when ready."""
        compiled = self._classifier
        if compiled is None or torch.is_grad_enabled():
            return self.eager(inputs)
        self._count(int(inputs.shape[0]))
        with torch.inference_mode(), _serving():
            return compiled(self._layout(inputs))

    __call__ = logits

    def layer_and_logits(self, layer: str, inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
        """``(feature maps of layer, logits)`` from one compiled graph, or None (not compiled for
        this layer yet: the caller captures the layer with a hook on :meth:`eager`)."""
        compiled = self._layers.get(layer)
        if compiled is None or torch.is_grad_enabled():
            return None
        self._count(int(inputs.shape[0]))
        with torch.inference_mode(), _serving():
            out = compiled(self._layout(inputs))
        return out["layer"], out["logits"]

    @property
    def compiled(self) -> bool:
        return self._classifier is not None

    def compiled_layers(self) -> list[str]:
        return list(self._layers)

    # ---- compilation -------------------------------------------------------------------

    def compile(self, layers: list[str] | tuple[str, ...] = (), *, background: bool = False) -> threading.Thread | None:
        """Compile the classifier and ``layers`` (feature maps + logits), checked against the
        eager model; with ``background``, in a daemon thread (calls stay eager meanwhile).

        Does nothing where compilation is turned off or no compiler is available. Returns the
        thread when ``background``.
        """
        if not compile_wanted() or not compiler_available():
            self.compile_error = "compilation is turned off or no C++ compiler is available"
            return None
        if background:
            self._thread = threading.Thread(target=self._compile_all, args=(list(layers),), name="compile", daemon=True)
            self._thread.start()
            return self._thread
        self._compile_all(list(layers))
        return None

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for a background compilation; True when the classifier is compiled."""
        if self._thread is not None:
            self._thread.join(timeout)
        return self.compiled

    def _compile_all(self, layers: list[str]) -> None:
        start = time.perf_counter()
        _use_persistent_cache()
        try:
            with self._lock:
                # Graphs are traced from a private copy: hooks that other threads put on the
                # served model meanwhile (a method capturing a layer) must not be traced into them.
                self._private = copy.deepcopy(self.model)
                self._classifier = self._checked(self._compile_classifier(), layer=None)
                for layer in layers:
                    self._layers[layer] = self._checked(self._compile_layer(layer), layer=layer)
        except Exception as error:  # a compiler failure must never take the eager path down
            self._classifier, self._layers = None, {}
            self.compile_error = f"{type(error).__name__}: {error}"
            log.warning("torch.compile failed, running eagerly: %s", self.compile_error)
        self.compile_seconds = time.perf_counter() - start

    def _compile_classifier(self) -> Callable[[torch.Tensor], torch.Tensor]:
        return torch.compile(self._private, dynamic=None)

    def _compile_layer(self, layer: str) -> Callable[[torch.Tensor], dict[str, torch.Tensor]]:
        from timm.models import create_feature_extractor
        from timm.models._features_fx import get_graph_node_names

        _, nodes = get_graph_node_names(self._private)
        graph = create_feature_extractor(self._private, return_nodes={layer: "layer", nodes[-1]: "logits"})
        graph.eval()
        return torch.compile(graph, dynamic=None)

    def _checked(self, compiled: Callable, layer: str | None) -> Callable:
        """Run ``compiled`` on probe batches of 1 and 3 (compiling both shapes) and keep it only if
        its logits (and feature maps) match the eager model's. The eager reference is the private
        copy (the same weights): a probe pass or hook on the served model would run beside, and
        be captured by, the requests served meanwhile."""
        reference = self._private
        device = next(self.model.parameters()).device
        generator = torch.Generator().manual_seed(0)
        for batch in (1, 3):
            probe = torch.randn(batch, 3, self.input_size, self.input_size, generator=generator).to(device)
            if batch > 1:
                torch._dynamo.mark_dynamic(probe, 0)
            with torch.inference_mode():
                got = compiled(self._layout(probe))
                logits = got["logits"] if isinstance(got, dict) else got
                if layer is None:
                    expected = reference(self._layout(probe))
                else:
                    from .hooks import LayerCapture

                    with LayerCapture(reference, layer) as capture:
                        expected = reference(self._layout(probe))
                        maps = capture.activations
                    gap = float((got["layer"] - maps).abs().max())
                    if gap > TOLERANCE:
                        raise RuntimeError(f"compiled feature maps of {layer} differ from eager ones by {gap:.2e}")
            gap = float((logits - expected).abs().max())
            if gap > TOLERANCE:
                raise RuntimeError(f"compiled logits differ from eager ones by {gap:.2e}")
        return compiled
