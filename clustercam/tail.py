"""The network's *tail*: what follows one layer, run on a batch of replacement feature maps.

Methods that perturb a layer's feature maps rather than the input (Ablation-CAM zeroes one map at a
time, Recipro-CAM keeps one position at a time) need the logits of many perturbed copies of one
image's maps. Nothing before the layer changes, so only what follows it is re-run: the network is
called on *one* copy of the image and a forward hook on the layer replaces its output with the
``k`` rows (:func:`replaced_output`); broadcasting makes a residual addition of a one-image tensor to
the ``k``-row tensor work. Where the rest of the network cannot take ``k`` rows against one
(a concatenation with a one-image tensor, a reshape that fixes the batch), or gives other logits,
the rows are evaluated by *full* re-runs instead: the image repeated ``k`` times, the layer's output
replaced all the same (:meth:`Tail.logits` with ``full=True``). :meth:`Tail.validated` decides once
per call, with the un-perturbed maps as a first row whose logits must be the network's own.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn

#: Relative tolerance of the tail's validation (logits of the un-perturbed row vs the original).
VALIDATION_RTOL = 1e-4


class TailMismatchError(RuntimeError):
    """The tail-only pass did not reproduce the network's output."""


@contextmanager
def replaced_output(layer: nn.Module, replacement: torch.Tensor) -> Iterator[None]:
    """Make ``layer`` output ``replacement`` during forward passes made by this thread (another
    thread's passes on the same model are left alone); the hook is always removed.

    Raises ``ValueError`` after the pass if the layer ran more than once (its output would be
    ambiguous).
    """
    calls, owner = 0, threading.get_ident()

    def hook(_module: nn.Module, _inputs: object, _output: object) -> torch.Tensor | None:
        nonlocal calls
        if threading.get_ident() != owner:
            return None
        calls += 1
        return replacement

    handle = layer.register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()
    if calls > 1:
        raise ValueError(
            "The target layer runs more than once per forward pass, so its output cannot be "
            "replaced unambiguously; pick another layer."
        )


@dataclass(frozen=True)
class TailCheck:
    """What :meth:`Tail.validated` found: the rows' logits (None: the tail cannot stand for the
    network here), why not, and how many rows ran through the network (counted as passes)."""

    logits: torch.Tensor | None
    reason: str
    rows_run: int


class Tail:
    """The layers after ``layer`` of ``network``'s model, run on replacement rows.

    Args:
        network: the :class:`~clustercam.network.Network` whose eager model is run.
        layer: the layer whose output is replaced.
    """

    def __init__(self, network, layer: nn.Module):
        self.network, self.layer = network, layer

    def logits(self, image: torch.Tensor, rows: torch.Tensor, *, full: bool = False) -> torch.Tensor:
        """Logits ``(k, classes)`` with the layer's output replaced by ``rows`` ``(k, …)``; ``image`` is
        ``(1, C, H, W)`` (``full``: repeated ``k`` times, the whole network re-run per row)."""
        inputs = image.expand(rows.shape[0], *image.shape[1:]) if full else image
        with replaced_output(self.layer, rows):
            logits = self.network.eager(inputs)
        if logits.shape[0] != rows.shape[0]:
            raise TailMismatchError(f"{rows.shape[0]} replaced rows gave {logits.shape[0]} rows of logits.")
        return logits.float()

    def validated(self, image: torch.Tensor, maps: torch.Tensor, expected: torch.Tensor,
                  rows: torch.Tensor) -> TailCheck:
        """The logits of ``rows`` from the tail alone, checked: the image's own maps ``maps``
        (``(1, …)``) go first and must give its logits ``expected`` (``(classes,)``, from the pass
        that captured them)."""
        count = rows.shape[0] + 1
        try:
            logits = self.logits(image, torch.cat([maps, rows]))
        except TailMismatchError as error:
            return TailCheck(None, str(error), count)
        except RuntimeError as error:  # shape errors of one-image tensors meeting k rows: nothing ran through
            return TailCheck(None, f"{type(error).__name__}: {error}", 0)
        error = _mismatch(logits[0], expected)
        if error is not None:
            return TailCheck(None, f"the un-perturbed row's logits differ from the original by up to {error:.3g}", count)
        return TailCheck(logits[1:], "", count)


def _mismatch(logits: torch.Tensor, expected: torch.Tensor) -> float | None:
    """The largest difference of ``logits`` from ``expected`` where they differ beyond
    :data:`VALIDATION_RTOL` (relative to the largest expected logit), else None."""
    expected = expected.float()
    tolerance = VALIDATION_RTOL * float(expected.abs().max())
    if torch.allclose(logits, expected, rtol=VALIDATION_RTOL, atol=tolerance):
        return None
    return (logits - expected).abs().max().item()


class _Seen:
    """What :func:`expanded_output` saw: the layer's own output."""

    output: torch.Tensor | None = None


@contextmanager
def expanded_output(layer: nn.Module, make_rows) -> Iterator[_Seen]:
    """During this thread's next pass, make ``layer`` hand on ``1 + k`` rows instead of its output:
    the output itself (one image), then ``make_rows(output)`` (``k`` rows made from it). The head
    runs once and the tail ``1 + k`` times; row 0 of the logits is the image's own. The output is
    kept in the yielded object's ``output``."""
    seen, owner = _Seen(), threading.get_ident()

    def hook(_module: nn.Module, _inputs: object, output: object) -> torch.Tensor | None:
        if threading.get_ident() != owner or seen.output is not None:
            return None
        if not isinstance(output, torch.Tensor) or output.shape[0] != 1:
            raise TailMismatchError("the layer's output is not one image's tensor")
        seen.output = output
        return torch.cat([output, make_rows(output).to(output.dtype)])

    handle = layer.register_forward_hook(hook)
    try:
        yield seen
    finally:
        handle.remove()


_checked: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def tail_holds(network, layer: nn.Module, layer_name: str, image: torch.Tensor, make_rows) -> tuple[bool, str]:
    """Whether the network's tail, handed ``1 + k`` rows at ``layer`` (:func:`expanded_output`),
    gives row 0 the logits of a plain pass of ``image`` (relative tolerance
    :data:`VALIDATION_RTOL`): checked once per network, layer and input shape (two passes, not
    counted as a method's passes, like a compiled graph's check), then remembered. Returns
    ``(holds, why not)``."""
    key = (layer_name, tuple(image.shape[1:]), image.device.type)
    known = _checked.setdefault(network, {})
    if key not in known:
        known[key] = _check(network, layer, image, make_rows)
    return known[key]


def _check(network, layer: nn.Module, image: torch.Tensor, make_rows) -> tuple[bool, str]:
    expected = network.eager(image).float()[0]
    try:
        with expanded_output(layer, make_rows) as seen:
            logits = network.eager(image).float()
    except (TailMismatchError, RuntimeError) as error:  # one-image tensors meeting k rows
        return False, f"{type(error).__name__}: {error}"
    if seen.output is None:
        return False, "the layer was not reached"
    if logits.shape[0] < 2:
        return False, f"{logits.shape[0]} rows of logits for the expanded output"
    error = _mismatch(logits[0], expected)
    if error is not None:
        return False, f"the image's own row differs from its plain pass by up to {error:.3g}"
    return True, ""
