"""Compiled graphs for serving: ahead-of-time packages, built in a process of their own.

A graph returns one layer's feature maps *and* the logits of a batch of any size (a dynamic batch
dimension; with no layer named, the logits alone) at one input shape: the model's square size, or
one of the shapes common photographs are resized to (:func:`clustercam.imaging.common_shapes`). It is built by :func:`build` in a **separate Python process** at the lowest CPU
priority: the model is pickled to a file, the child captures the layer with FX feature extraction
(timm's ``create_feature_extractor``), exports the graph (``torch.export``) and compiles it with
AOTInductor into a ``.pt2`` package. Nothing of that runs in the serving process: no tracer
patches ``nn.Module.__call__`` beside requests, no compiler holds the interpreter's lock while they
wait. The serving process only loads the finished package (:func:`load`, a fraction of a second)
and runs it as a C++ graph.

Packages live in ``<cache>/aoti/`` (:func:`package_path`), named by a fingerprint of everything
that changes the graph: the torch version, the machine, the device type, the model's class and
weights, the layer, the input shape and the memory layout. A restarted server finds its package
and loads it; a package that cannot be loaded (a server killed while writing one) is evicted and
built again by :class:`clustercam.network.Network`.

    python -m clustercam.compiled MODEL.pt LAYER HxW CHANNELS_LAST OUT.pt2   # what build() runs
"""

from __future__ import annotations

import hashlib
import os
import platform
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from . import environment

#: Largest batch a package accepts (larger batches run eagerly).
MAX_BATCH = 4096
#: CPU priority (nice) of the building process: it yields the cores to requests.
BUILD_NICE = environment.read("CLUSTERCAM_COMPILE_NICE")


class CompileError(RuntimeError):
    """A graph could not be built (the message ends with the building process's last words)."""


def package_folder() -> Path:
    return environment.read("CLUSTERCAM_COMPILE_DIR") / "aoti"


Shape = tuple[int, int]


def as_shape(size: int | Shape) -> Shape:
    """``(height, width)`` of a graph's input: a side (square) or a shape."""
    if isinstance(size, int):
        return (size, size)
    height, width = size
    return (int(height), int(width))


def fingerprint(model: nn.Module, layer: str, shape: int | Shape, channels_last: bool, device: torch.device) -> str:
    """A digest of everything that changes the compiled graph (see the module docstring)."""
    digest = hashlib.sha256()
    height, width = as_shape(shape)
    for part in (torch.__version__, platform.machine(), device.type, type(model).__module__, type(model).__qualname__,
                 layer, f"{height}x{width}", str(channels_last)):
        digest.update(part.encode() + b"\0")
    for name, tensor in model.state_dict().items():
        digest.update(name.encode() + str(tuple(tensor.shape)).encode() + str(tensor.dtype).encode())
        digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:24]


def package_path(model: nn.Module, layer: str, shape: int | Shape, channels_last: bool, device: torch.device) -> Path:
    height, width = as_shape(shape)
    digest = fingerprint(model, layer, (height, width), channels_last, device)
    return package_folder() / f"{type(model).__name__}-{layer}-{height}x{width}-{digest}.pt2"


def _lower_priority() -> None:  # pragma: no cover - runs in the child before exec
    if BUILD_NICE and hasattr(os, "nice"):
        os.nice(BUILD_NICE)


def build(model: nn.Module, layer: str, shape: int | Shape, channels_last: bool, out: Path, *,
          timeout: float | None = None) -> None:
    """Build the package ``out`` for ``model``'s ``layer`` in a child process (see the module
    docstring); the package appears whole or not at all.

    Raises:
        CompileError: the child failed (its last output in the message) or ran out of time.
    """
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="clustercam-build-") as folder:
        pickled = Path(folder) / "model.pt"
        torch.save(model, pickled)
        height, width = as_shape(shape)
        command = [sys.executable, "-m", "clustercam.compiled", str(pickled), layer, f"{height}x{width}",
                   "1" if channels_last else "0", str(out)]
        variables = {**os.environ, "TORCHINDUCTOR_COMPILE_THREADS": str(environment.read("TORCHINDUCTOR_COMPILE_THREADS"))}
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=variables,
                                  preexec_fn=_lower_priority if os.name == "posix" else None)
        except subprocess.TimeoutExpired as error:
            raise CompileError(f"building the compiled graph took more than {timeout:.0f} s") from error
    if done.returncode != 0 or not out.is_file():
        tail = (done.stderr or done.stdout or "").strip().splitlines()[-6:]
        raise CompileError(f"building the compiled graph failed (exit {done.returncode}): " + " | ".join(tail))


def load(path: Path) -> Callable[[torch.Tensor], dict[str, torch.Tensor]]:
    """The package's graph: ``graph(x) → {"layer": maps, "logits": logits}``."""
    return torch._inductor.aoti_load_package(str(path))


class LogitsOnly(nn.Module):
    """The classifier alone, answering as the graphs do (``{"logits": ...}``): the graph built when no
    layer is named."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, inputs: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"logits": self.model(inputs)}


def _build_here(pickled: str, layer: str, shape: Shape, channels_last: bool, out: str) -> None:
    """The child's work: FX capture of the layer and the logits, export, AOTInductor, atomic write."""
    from timm.models import create_feature_extractor
    from timm.models._features_fx import get_graph_node_names

    model = torch.load(pickled, weights_only=False).eval()
    if layer:
        _, nodes = get_graph_node_names(model)
        graph = create_feature_extractor(model, return_nodes={layer: "layer", nodes[-1]: "logits"}).eval()
    else:
        graph = LogitsOnly(model).eval()
    device = next(model.parameters()).device
    example = torch.randn(2, 3, *shape, device=device)
    if channels_last:
        example = example.contiguous(memory_format=torch.channels_last)
    batch = torch.export.Dim("batch", min=1, max=MAX_BATCH)
    with torch.inference_mode():
        exported = torch.export.export(graph, (example,), dynamic_shapes=({0: batch},))
    partial = Path(out).with_name(f".{Path(out).stem}.{os.getpid()}.partial.pt2")
    torch._inductor.aoti_compile_and_package(exported, package_path=str(partial))
    os.replace(partial, out)


if __name__ == "__main__":  # pragma: no cover - exercised through build()
    pickled_model, layer_name, size, layout, target = sys.argv[1:6]
    rows, _, columns = size.partition("x")
    _build_here(pickled_model, layer_name, (int(rows), int(columns or rows)), layout == "1", target)
