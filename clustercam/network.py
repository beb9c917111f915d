"""Running the network fast without changing what it computes: channels-last, inference mode, and
compiled graphs (AOTInductor packages, :mod:`clustercam.compiled`) where a C++ compiler is
available, with the plain eager model as the fallback.

Every forward pass a method makes goes through a :class:`Network`:

- :meth:`Network.logits` — the classifier on a batch (the masked passes of Cluster-CAM,
  Score-CAM and Group-CAM; the metrics and ``bench`` take the model itself, ``spec.model``, and
  stay eager);
- :meth:`Network.layer_and_logits` — one layer's feature maps *and* the logits from one compiled
  graph (the first pass of a method that needs no gradient: hooks cannot see inside a graph);
- :meth:`Network.eager` — the model itself, for passes that need hooks or gradients (the gradient
  methods): unchanged.

**Compiled graphs** are ahead-of-time packages (:mod:`clustercam.compiled`): one graph per layer and
input shape returns that layer's maps and the logits of a batch of any size, and serves
:meth:`~Network.logits` too. The shapes are the model's square size and, when the caller asks for
them (the app does), the shapes common photographs are resized to (4:3, 3:2, 16:9, 8:7, either way up:
:func:`clustercam.imaging.common_shapes`), built after the square one. They are built in a separate process at the lowest CPU
priority and only *loaded* here, so nothing here touches another thread's work: no tracer patches
``nn.Module.__call__`` beside requests, no compiler holds the interpreter's lock, no process-wide
switch is flipped per call. :meth:`Network.compile` (``background=True``: in a thread, calls stay
eager meanwhile) builds or finds each package, loads it and keeps it only if it gives the same
maps and logits as the eager model on probe batches (a private copy of the model, taken under the
caller's lock and stripped of hooks). An input of a shape without a graph, or one that needs
gradients, runs eagerly and never compiles anything. :attr:`Network.calls` counts the calls each
path served (``compiled`` / ``eager``).

**The caches heal.** A package that cannot be loaded (a server killed while one was being
written) is evicted and built once more; a build that fails on a broken artefact of inductor's
own cache (``TORCHINDUCTOR_CACHE_DIR``, set to ``~/.cache/clustercam/inductor`` by the entry points
before torch is imported) evicts that cache and builds once more. ``CLUSTERCAM_COMPILE=0`` turns
compilation off everywhere; ``CLUSTERCAM_CHANNELS_LAST=0`` keeps the NCHW layout.

Every call adds its batch size to the per-thread count read by :func:`forward_images` (the app
reports the passes of each request with it) and calls the ``observers`` (e.g. a counter of a test).
"""

from __future__ import annotations

import copy
import logging
import os
import re
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path

import torch
from torch import nn

from . import environment
from .compiled import MAX_BATCH, CompileError, Shape, as_shape, build, load, package_path

log = logging.getLogger(__name__)

#: Images per call of a compiled graph (``CLUSTERCAM_COMPILED_CHUNK``): a graph holds the
#: interpreter's lock for its whole run, so a batch runs in chunks of this many and the server's
#: other threads (its event loop, the files a page is fetching) get their turn between two (~50 ms
#: on 2 cores); four-image chunks were also faster than one batch of 12 (153-167 ms against 200-274).
COMPILED_CHUNK = environment.read("CLUSTERCAM_COMPILED_CHUNK")
#: Largest difference of logits between a compiled graph and the eager model that is accepted.
TOLERANCE = 1e-3
_counter = threading.local()


def cache_dir() -> Path:
    """The folder inductor writes its artefacts to (``TORCHINDUCTOR_CACHE_DIR``, which
    ``import clustercam`` points at clustercam's own folder unless it is set)."""
    return environment.read("TORCHINDUCTOR_CACHE_DIR")


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
    """Whether compilation is allowed: ``CLUSTERCAM_COMPILE`` (default on), and never on a ZeroGPU
    Space (``SPACES_ZERO_GPU``: its GPU is attached per call, in a forked worker; it does not
    support compiled graphs)."""
    return not environment.on_zero_gpu() and environment.read("CLUSTERCAM_COMPILE")


def channels_last_wanted() -> bool:
    """Whether the network runs in the channels-last layout (``CLUSTERCAM_CHANNELS_LAST``, default on)."""
    return environment.read("CLUSTERCAM_CHANNELS_LAST")


def compiler_available() -> bool:
    """A compiled graph can be built here: AOTInductor needs a C++ compiler on the CPU."""
    if not hasattr(torch, "compile"):
        return False
    return any(shutil.which(name) for name in ("g++", "c++", "clang++"))


def without_hooks(model: nn.Module) -> nn.Module:
    """``model`` with every forward, pre-forward and backward hook of its modules removed (in place;
    used on private copies, which may have been taken while a request had a hook registered)."""
    for module in model.modules():
        for hooks in ("_forward_hooks", "_forward_hooks_with_kwargs", "_forward_hooks_always_called",
                      "_forward_pre_hooks", "_forward_pre_hooks_with_kwargs", "_backward_hooks",
                      "_backward_pre_hooks"):
            table = getattr(module, hooks, None)
            if table is not None:
                table.clear()
    return model


def _broken_artefacts(message: str, folder: Path | None) -> list[Path]:
    """Files named in a failure's message that lie in the cache folder (e.g. a truncated ``.so``)."""
    if folder is None:
        return []
    found = []
    for text in re.findall(r"(/[^\s:'\"]+)", message):
        path = Path(text)
        if path.is_file() and folder.resolve() in path.resolve().parents:
            found.append(path)
    return found


def _shared_default(folder: Path) -> bool:
    """Whether ``folder`` is inductor's own default in the system's temporary folder (other
    programs' artefacts live there too: never removed as a whole)."""
    return folder.name.startswith("torchinductor") and folder.resolve().parent == Path(os.environ.get("TMPDIR", "/tmp")).resolve()


def evict(message: str) -> list[str]:
    """Remove what made a compilation fail to load its cache. A message that names a file in the
    cache folder (a truncated ``.so``: a server killed while writing it) means the folder cannot be
    trusted: it is removed as a whole (one file at a time would take one failed build each), except
    inductor's shared default folder, of which only the named files go. A failure that names no
    cached file evicts nothing. Returns what was removed."""
    folder = cache_dir()
    if folder is None or not folder.exists():
        return []
    files = _broken_artefacts(message, folder)
    if not files:
        return []
    if _shared_default(folder):
        for path in files:
            path.unlink(missing_ok=True)
        return [str(path) for path in files]
    shutil.rmtree(folder, ignore_errors=True)
    return [str(folder)]


class Network:
    """A classifier's forward passes, eager until compiled graphs are ready (see the module doc).

    Args:
        model: the network in eval mode; in the channels-last layout already when ``channels_last``
            (:func:`clustercam.load_model` converts it when it loads it: a ``Network`` never
            changes the model it is given).
        input_size: side of the square inputs the compiled graphs are built for by default (other
            shapes: :meth:`compile`'s ``shapes``).
        channels_last: feed the inputs in the channels-last layout (faster convolutions on CPUs and
            tensor cores; identical results up to rounding).
    """

    def __init__(self, model: nn.Module, input_size: int = 224, *, channels_last: bool | None = None):
        self.model = model
        self.input_size = int(input_size)
        self.channels_last = channels_last_wanted() if channels_last is None else bool(channels_last)
        self.observers: list[Callable[[int], None]] = []
        #: The checked graphs: ``{(layer, (height, width)): graph}`` (layer "" = the logits alone).
        self._graphs: dict[tuple[str, Shape], Callable[[torch.Tensor], dict[str, torch.Tensor]]] = {}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self.compile_seconds: float | None = None
        self.compile_error: str | None = None
        #: Packages or cache folders evicted after a failed load or build (then built once more).
        self.evicted: list[str] = []
        #: Graphs loaded and checked.
        self.graphs_built = 0
        #: Calls served by each path (``compiled`` graphs or the ``eager`` model).
        self.calls = {"compiled": 0, "eager": 0}

    # ---- calls -------------------------------------------------------------------------

    def _count(self, batch: int, path: str) -> None:
        for check in getattr(_counter, "checks", ()):
            check(batch)
        _counter.images = forward_images() + batch
        self.calls[path] += 1
        for observer in list(self.observers):
            observer(batch)

    def _layout(self, inputs: torch.Tensor) -> torch.Tensor:
        return inputs.contiguous(memory_format=torch.channels_last) if self.channels_last and inputs.dim() == 4 else inputs

    def _graph_for(self, inputs: torch.Tensor, layer: str | None = None) -> Callable | None:
        """The compiled graph that takes this input (``layer``'s; None: any layer's), or None: a
        graph of this height and width, float32, at most :data:`~clustercam.compiled.MAX_BATCH`
        images, no gradient wanted."""
        if not (inputs.dim() == 4 and inputs.dtype == torch.float32 and 1 <= inputs.shape[0] <= MAX_BATCH
                and not torch.is_grad_enabled()):
            return None
        shape, graphs = (int(inputs.shape[-2]), int(inputs.shape[-1])), self._graphs  # replaced whole, never changed
        if layer is not None:
            return graphs.get((layer, shape))
        return next((graph for (_, graph_shape), graph in graphs.items() if graph_shape == shape), None)

    def eager(self, inputs: torch.Tensor) -> torch.Tensor:
        """The model itself (hooks and gradients work)."""
        self._count(int(inputs.shape[0]), "eager")
        return self.model(self._layout(inputs))

    def logits(self, inputs: torch.Tensor) -> torch.Tensor:
        """Logits of a batch with no gradient: a compiled graph's when one is ready for this input."""
        graph = self._graph_for(inputs)
        if graph is None:
            return self.eager(inputs)
        self._count(int(inputs.shape[0]), "compiled")
        return self._run(graph, inputs)["logits"]

    __call__ = logits

    def layer_and_logits(self, layer: str, inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
        """``(feature maps of layer, logits)`` from one compiled graph, or None (no graph for this
        layer or input: the caller captures the layer with a hook on :meth:`eager`)."""
        graph = self._graph_for(inputs, layer)
        if graph is None:
            return None
        self._count(int(inputs.shape[0]), "compiled")
        out = self._run(graph, inputs)
        return out["layer"], out["logits"]

    def _run(self, graph: Callable, inputs: torch.Tensor) -> dict[str, torch.Tensor]:
        """The graph on ``inputs`` in chunks of :data:`COMPILED_CHUNK` images (see there)."""
        inputs = self._layout(inputs)
        with torch.inference_mode():
            if inputs.shape[0] <= COMPILED_CHUNK:
                return graph(inputs)
            parts = [graph(inputs[start:start + COMPILED_CHUNK]) for start in range(0, inputs.shape[0], COMPILED_CHUNK)]
            return {key: torch.cat([part[key] for part in parts]) for key in parts[0]}

    @property
    def compiled(self) -> bool:
        return bool(self._graphs)

    def compiled_layers(self) -> list[str]:
        return list(dict.fromkeys(layer for layer, _ in self._graphs if layer))

    def compiled_shapes(self) -> list[str]:
        """The input shapes with a graph, ``"HxW"``, in the order they were built."""
        return list(dict.fromkeys(f"{height}x{width}" for _, (height, width) in self._graphs))

    @property
    def compiling(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def status(self) -> dict:
        """What the app's ``/status`` reports of this network."""
        return {
            "compiled": self.compiled, "compiled_layers": self.compiled_layers(),
            "compiled_shapes": self.compiled_shapes(), "compiling": self.compiling,
            "compile_seconds": None if self.compile_seconds is None else round(self.compile_seconds, 1),
            "compile_error": self.compile_error, "graphs_built": self.graphs_built, "calls": dict(self.calls),
            "evicted": list(self.evicted),
        }

    # ---- compilation -------------------------------------------------------------------

    def compile(
        self, layers: list[str] | tuple[str, ...] = (), *, background: bool = False,
        lock: threading.Lock | None = None, thread_setup: Callable[[], None] | None = None,
        timeout: float | None = None, shapes: list[Shape] | tuple[Shape, ...] = (),
    ) -> threading.Thread | None:
        """Build or find, load and check a graph for each of ``layers`` (feature maps + logits; no
        layer: the logits alone) and each input shape (``shapes``, ``(height, width)``; default the
        square of ``input_size``), shape by shape: every layer at the first shape before the next;
        with ``background``, in a daemon thread (calls stay eager meanwhile, and each graph serves
        as soon as it is checked).

        ``lock`` is held while the private reference copy is taken (the lock requests hold around
        network work on this model); ``thread_setup`` runs first in the compiling thread (e.g. to
        lower its priority); ``timeout`` bounds each build. Does nothing where compilation is
        turned off or no compiler is available. Returns the thread when ``background``.
        """
        if not compile_wanted() or not compiler_available():
            self.compile_error = "compilation is turned off or no C++ compiler is available"
            return None

        def work() -> None:
            if thread_setup is not None:
                thread_setup()
            wanted = [as_shape(shape) for shape in shapes] or [as_shape(self.input_size)]
            self._compile_all(list(layers) or [""], list(dict.fromkeys(wanted)), lock, timeout)

        if background:
            self._thread = threading.Thread(target=work, name="compile", daemon=True)
            self._thread.start()
            return self._thread
        work()
        return None

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for a background compilation; True when a graph is ready."""
        if self._thread is not None:
            self._thread.join(timeout)
        return self.compiled

    def _compile_all(self, layers: list[str], shapes: list[Shape], lock: threading.Lock | None,
                     timeout: float | None) -> None:
        start = time.perf_counter()
        with self._lock:
            reference: nn.Module | None = None
            for shape in shapes:
                for layer in layers:
                    try:
                        if reference is None:
                            reference = self._private_copy(lock)
                        graph = self._graph(layer, shape, reference, timeout)
                        # a new dict, published whole: requests read the graphs while this thread adds one
                        self._graphs = {**self._graphs, (layer, shape): graph}
                        self.graphs_built += 1
                    except Exception as error:  # a compiler failure must never take the eager path down
                        self.compile_error = f"{type(error).__name__}: {error}"
                        log.warning("Compiling %s at %dx%d failed, running eagerly: %s", layer or "the classifier",
                                    *shape, self.compile_error)
                self.compile_seconds = time.perf_counter() - start

    def _graph(self, layer: str, shape: Shape, reference: nn.Module, timeout: float | None) -> Callable:
        """The checked graph of ``layer``: built when missing, evicted and built once more when it
        cannot be loaded or its build tripped on a broken cache artefact."""
        device = next(self.model.parameters()).device
        path = package_path(self.model, layer, shape, self.channels_last, device)
        for attempt in (1, 2):
            if not path.is_file():
                try:
                    build(self.model, layer, shape, self.channels_last, path, timeout=timeout)
                except CompileError as error:
                    evicted = evict(str(error)) if attempt == 1 else []
                    if not evicted:
                        raise
                    self.evicted += evicted
                    log.warning("Evicted %s from the compile cache after: %s; building again", ", ".join(evicted), error)
                    continue
            try:
                graph = load(path)
                self._check(graph, reference, layer, shape)
                return graph
            except CompileMismatch:
                raise
            except Exception as error:
                if attempt == 2:
                    raise
                path.unlink(missing_ok=True)
                self.evicted.append(str(path))
                log.warning("The compiled graph %s could not be loaded (%s: %s); evicted, building again",
                            path.name, type(error).__name__, error)
        raise CompileError(f"no usable graph for {layer or 'the classifier'}")

    def _private_copy(self, lock: threading.Lock | None) -> nn.Module:
        """A deep copy of the model, taken under ``lock``, without hooks: the eager reference."""
        with lock or nullcontext():
            private = copy.deepcopy(self.model)
        return without_hooks(private).eval()

    def _check(self, graph: Callable, reference: nn.Module, layer: str, shape: Shape) -> None:
        """Keep ``graph`` only if its logits (and feature maps) match the eager ``reference`` on
        probe batches of 1 and 3 (the reference is a private copy: a probe on the served model
        would run beside, and be captured by, the requests served meanwhile)."""
        from .hooks import LayerCapture

        device = next(self.model.parameters()).device
        generator = torch.Generator().manual_seed(0)
        for batch in (1, 3):
            probe = self._layout(torch.randn(batch, 3, *shape, generator=generator).to(device))
            with torch.inference_mode():
                got = graph(probe)
                if layer:
                    with LayerCapture(reference, layer) as capture:
                        expected = reference(probe)
                        maps = capture.activations
                    gap = float((got["layer"] - maps).abs().max())
                    if gap > TOLERANCE:
                        raise CompileMismatch(f"compiled feature maps of {layer} differ from eager ones by {gap:.2e}")
                else:
                    expected = reference(probe)
            gap = float((got["logits"] - expected).abs().max())
            if gap > TOLERANCE:
                raise CompileMismatch(f"compiled logits differ from eager ones by {gap:.2e}")


class CompileMismatch(RuntimeError):
    """A compiled graph answered differently from the eager model (it is not used)."""
