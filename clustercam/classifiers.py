"""Any classifier as a :class:`~clustercam.zoo.ModelSpec`: a researcher's own ``nn.Module``
(:func:`from_module`) or an exported program file (:func:`load_exported`).

:func:`from_module` does for any network what :func:`clustercam.load_model` does for the zoo:
eval mode, parameters frozen (explanations need gradients with respect to activations only),
in-place activations switched off (an in-place ReLU would overwrite the captured output of the
layer before it), the device, the channels-last layout for convolutional networks, and the list
of explainable layers (convolutional maps, a vision transformer's tokens, Swin's stages) with a
default. It checks on one probe pass that the network is a classifier (logits ``B × classes``) and
that the class names match its logits.

:func:`load_exported` reads a ``torch.export`` program (``torch.export.save``): weights and a graph,
no arbitrary pickled code. Its module hierarchy is rebuilt with ``torch.export.unflatten``, so its
layers keep their original names; a program exported for one input size gets every image resized
to that size. Export a classifier for it like this (a dynamic batch lets the masked images go
through together)::

    batch = torch.export.Dim("batch", min=1, max=4096)
    program = torch.export.export(model.eval(), (torch.rand(2, 3, 224, 224),), dynamic_shapes=({0: batch},))
    torch.export.save(program, "classifier.pt2")
"""

from __future__ import annotations

import json
import os
import zipfile
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from .hooks import LayerCapture
from .layouts import patch_grid
from .network import channels_last_wanted
from .zoo import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    ModelSpec,
    default_device,
    default_layer,
    fixed_input_shape,
    ready_to_explain,
)


def _names(categories: Sequence[str] | None, classes: int, source: str) -> tuple[str, ...]:
    if categories is None:
        return tuple(f"class {index}" for index in range(classes))
    names = tuple(str(name) for name in categories)
    if len(names) != classes:
        raise ValueError(f"{source} names {len(names)} classes, but the network outputs {classes} logits: "
                         "give one name per logit, in the logits' order.")
    return names


def _check_triple(values: Sequence[float], what: str) -> tuple[float, float, float]:
    triple = tuple(float(value) for value in values)
    if len(triple) != 3 or (what == "std" and any(value <= 0 for value in triple)):
        raise ValueError(f"{what} expects three numbers (one per colour channel){', each above 0' if what == 'std' else ''}; "
                         f"got {list(values)}.")
    return triple  # type: ignore[return-value]


def from_module(
    model: nn.Module,
    categories: Sequence[str] | None = None,
    *,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    input_size: int = 224,
    input_shape: tuple[int, int] | None = None,
    layer: str | None = None,
    name: str = "own network",
    device: str | torch.device | None = None,
    categories_source: str = "categories",
) -> ModelSpec:
    """A researcher's own classifier, ready to explain with every method of the library.

    Args:
        model: any ``nn.Module`` that maps a ``B × 3 × H × W`` image batch to ``B × classes`` logits.
        categories: the class names, one per logit (default ``class 0`` … ``class N−1``).
        mean / std: the preprocessing's per-channel normalisation of pixels in ``[0, 1]``.
        input_size: the shorter side the network expects (images keep their aspect ratio).
        input_shape: ``(height, width)`` when it takes one size only (default: a vision
            transformer's fixed patch grid, from timm's ``patch_embed``; else any size).
        layer: the default layer to explain (default: the last convolutional layer that is not a
            pooling, or the last block's first norm of a transformer that reads its class token).
        name / device: what to call it; where to run it (default CUDA, MPS, else the CPU).

    Raises:
        ValueError: not a classifier, names that do not match its logits, a layer it does not have.
    """
    target = torch.device(device) if device is not None else default_device()
    model = ready_to_explain(model, target)
    shape = input_shape or fixed_input_shape(model)
    height, width = shape or (input_size, input_size)
    with torch.inference_mode():
        try:
            logits = model(torch.zeros(1, 3, height, width, device=target))
        except Exception as error:  # whatever the network raises on an image batch
            raise ValueError(f"{name} did not take a 1 × 3 × {height} × {width} image batch "
                             f"({type(error).__name__}: {error}).") from error
    if not isinstance(logits, torch.Tensor) or logits.dim() != 2 or logits.shape[0] != 1 or logits.shape[1] < 2:
        found = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
        raise ValueError(f"{name} is not a classifier: it returned {found} for one image, not 1 × classes logits.")
    names = _names(categories, int(logits.shape[1]), categories_source)
    convolutional = patch_grid(model, 0, 0) is None
    channels_last = convolutional and channels_last_wanted()
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    spec = ModelSpec(
        name=name, title=name, model=model, device=target, categories=names, default_layer="",
        input_size=int(input_size if shape is None else min(shape)), mean=_check_triple(mean, "mean"),
        std=_check_triple(std, "std"), channels_last=channels_last, input_shape=shape,
    )
    layers = spec.layers()
    if not layers:
        raise ValueError(f"{name} has no layer with feature maps to explain (maps or a vision transformer's tokens).")
    names_found = [info.name for info in layers]
    if layer is not None and layer not in names_found:
        _check_layer(model, layer, names_found, name, (height, width), target)
    spec.default_layer = layer or default_layer(model, layers)
    return spec


def _check_layer(model: nn.Module, layer: str, listed: list[str], name: str, shape: tuple[int, int],
                 device: torch.device) -> None:
    """A layer the list does not name (the list names a container's last child by the container, e.g.
    ``blocks`` for ``blocks.11``) is still fine if it exists and holds maps on a probe pass."""
    if layer not in dict(model.named_modules()):
        raise ValueError(f"{name} has no explainable layer '{layer}'; it has {', '.join(listed[-5:])} (last five).")
    with LayerCapture(model, layer, input_shape=shape), torch.inference_mode():
        model(torch.zeros(1, 3, *shape, device=device))  # LayerCapture says why a layer holds no maps


def read_labels(path: str | os.PathLike) -> list[str]:
    """Class names from a text file, one per line (blank lines at the end ignored)."""
    file = Path(path)
    if not file.is_file():
        raise ValueError(f"No labels file at {file}.")
    lines = file.read_text(encoding="utf-8").splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    if not lines:
        raise ValueError(f"The labels file {file} is empty: give one class name per line, in the logits' order.")
    return [line.strip() for line in lines]


def load_exported(
    path: str | os.PathLike,
    labels: str | os.PathLike | Sequence[str] | None = None,
    *,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    layer: str | None = None,
    device: str | torch.device | None = None,
) -> ModelSpec:
    """A classifier saved with ``torch.export.save`` (module docstring), as a spec.

    Args:
        labels: a text file with one class name per line, or the names themselves.

    Raises:
        ValueError: no such file, not an exported program, a program from a newer torch, no
            dynamic batch, not a classifier, labels that do not match its logits.
    """
    file = Path(path)
    if not file.is_file():
        raise ValueError(f"No exported model file at {file}.")
    if not zipfile.is_zipfile(file):
        raise ValueError(f"{file.name} is not a torch.export program (torch.export.save writes a zip archive).")
    _check_versions(file)
    try:
        program = torch.export.load(str(file))
    except Exception as error:  # a zip that holds no program, or one this torch cannot read
        text = f"{type(error).__name__}: {error}"
        newer = any(word in text.lower() for word in ("version", "schema", "unsupported", "upgrade"))
        hint = (f" It may have been exported by a newer torch than this one ({torch.__version__}): export it "
                "with this version, or upgrade torch here." if newer else "")
        raise ValueError(f"{file.name} could not be read as a torch.export program ({text}).{hint}") from error
    shape, dynamic = _input_of(program, file.name)
    if not dynamic:
        raise ValueError(
            f"{file.name} was exported for a batch of one size only; explanations push several images through "
            "at once. Export it with a dynamic batch: dynamic_shapes=({0: torch.export.Dim('batch', min=1, max=4096)},)."
        )
    module = _with_kinds(torch.export.unflatten(program), program)
    names = read_labels(labels) if isinstance(labels, (str, os.PathLike)) else labels
    source = f"The labels file {Path(labels).name}" if isinstance(labels, (str, os.PathLike)) else "labels"
    return from_module(module, names, mean=mean, std=std, input_shape=shape, layer=layer, name=file.name,
                       device=device, categories_source=source)


def _with_kinds(module: nn.Module, program) -> nn.Module:
    """Each rebuilt module told the class it was exported from (the graph's ``nn_module_stack``:
    ``Conv2d``, ``BasicBlock``), for the layer list; the rebuilt ones are all ``InterpreterModule``."""
    kinds: dict[str, str] = {}
    for node in program.graph.nodes:
        for path, kind in (node.meta.get("nn_module_stack") or {}).values():
            kinds.setdefault(str(path), str(kind).rsplit(".", 1)[-1])
    for name, child in module.named_modules():
        if name and name in kinds:
            child.clustercam_kind = kinds[name]
    return module


def _check_versions(file: Path) -> None:
    """Refuse, by name, a program written by a torch newer than this one: its archive version or its
    serialisation schema's major version is above what this torch reads (the archive's
    ``archive_version`` and ``models/*.json``'s ``schema_version`` and ``torch_version``)."""
    try:  # where this torch keeps them (private modules: an older torch may not have the archive's)
        from torch._export.serde.schema import SCHEMA_VERSION
    except ImportError:
        return
    try:
        from torch.export.pt2_archive.constants import ARCHIVE_VERSION_VALUE
    except ImportError:
        ARCHIVE_VERSION_VALUE = 10**9  # no archive version to compare with

    written_by, too_new = None, []
    with zipfile.ZipFile(file) as archive:
        for item in archive.namelist():
            parts = item.split("/")
            try:
                if parts[-1] == "archive_version" and int(archive.read(item).strip() or 0) > int(ARCHIVE_VERSION_VALUE):
                    too_new.append("archive version")
                elif len(parts) >= 2 and parts[-2] == "models" and parts[-1].endswith(".json"):
                    header = json.loads(archive.read(item))
                    written_by = header.get("torch_version", written_by)
                    if int(header.get("schema_version", {}).get("major", 0)) > SCHEMA_VERSION[0]:
                        too_new.append("schema version")
            except (ValueError, TypeError, AttributeError):
                continue  # not this file's to judge: torch.export.load says what is wrong with it
    if too_new:
        by = f"torch {written_by}" if written_by else "a newer torch"
        raise ValueError(f"{file.name} was exported by {by}, newer than this torch ({torch.__version__}): its "
                         f"{' and '.join(dict.fromkeys(too_new))} cannot be read here. Export it with torch "
                         f"{torch.__version__.split('+')[0]}, or upgrade torch where you explain it.")


def _input_of(program, filename: str) -> tuple[tuple[int, int], bool]:
    """The program's image input: ``((height, width), whether its batch is dynamic)``."""
    user_inputs = set(program.graph_signature.user_inputs)
    for node in program.graph.nodes:
        if node.op == "placeholder" and node.name in user_inputs:
            value = node.meta.get("val")
            if value is None or value.dim() != 4 or value.shape[1] != 3:
                break
            height, width = value.shape[2], value.shape[3]
            if not (isinstance(height, int) and isinstance(width, int)):
                height, width = int(height.node.hint or 224), int(width.node.hint or 224)
            return (int(height), int(width)), not isinstance(value.shape[0], int)
    raise ValueError(f"{filename} does not take one image batch (B × 3 × H × W): it is not an image classifier.")
