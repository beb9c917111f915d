"""Capturing one layer's output (and making it differentiable) during a forward pass."""

from __future__ import annotations

import difflib
import threading
from types import TracebackType

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

from .layouts import MAPS, Layout, layout_of


def resolve_layer(model: nn.Module, layer: str | nn.Module) -> tuple[str, nn.Module]:
    """``(name, module)`` for a layer given by its dotted name or as the module itself.

    Raises:
        ValueError: no such layer; the message lists the closest names.
    """
    modules = dict(model.named_modules())
    if isinstance(layer, nn.Module):
        for name, module in modules.items():
            if module is layer:
                return name, module
        raise ValueError("The given layer module is not part of the model.")
    if layer in modules and layer != "":
        return layer, modules[layer]
    close = difflib.get_close_matches(str(layer), [n for n in modules if n], n=5)
    hint = f" Closest names: {', '.join(close)}." if close else ""
    raise ValueError(f"The model has no layer named '{layer}'.{hint}")


class LayerCapture:
    """Context manager that records the output of one layer on forward passes.

    While the context is open, every forward pass *made by the thread that opened it* stores the
    layer's output in :attr:`output` and its feature maps ``(B, C, h, w)`` in :attr:`activations`
    (a reference or a view, never moved to the host): a convolutional layer's output as it is, a
    vision transformer's tokens or a Swin stage's ``(B, h, w, C)`` read as maps on their grid
    (:mod:`clustercam.layouts`; :attr:`layout` says how). Forward passes from other threads (a web
    server explaining two images at once) are ignored. The hook is removed on exit, also when the
    body raises, and the captured tensors are released.

    With ``differentiable=True`` the hook hands the rest of the network a detached copy of the
    output that requires grad, so :meth:`gradients` gives ∂score/∂F (the gradients of eqs. 3–6) as
    maps, by back-propagating through the layers *after* the target layer only, whether or not the
    model's parameters require grad.

    Use :meth:`paused` around forward passes whose activations are not wanted (masked inputs).
    """

    def __init__(self, model: nn.Module, layer: str | nn.Module, *, differentiable: bool = False,
                 input_shape: tuple[int, int] | None = None):
        self.model = model
        self.input_shape = input_shape  # (height, width) of the input: a token layer's grid follows it
        self.name, self.module = resolve_layer(model, layer)
        self.differentiable = differentiable
        self.activations: torch.Tensor | None = None
        self.output: torch.Tensor | None = None
        self.layout: Layout = MAPS
        self._handle: RemovableHandle | None = None
        self._owner: int | None = None
        self._active = True

    def __enter__(self) -> LayerCapture:
        if self._handle is not None:
            raise RuntimeError("LayerCapture is not re-entrant.")
        self._owner = threading.get_ident()
        self._active = True
        self._handle = self.module.register_forward_hook(self._hook)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.remove()

    def remove(self) -> None:
        """Remove the hook and drop the captured tensors (idempotent)."""
        if self._handle is not None:
            self._handle.remove()
            self._handle = None
        self.activations = self.output = None

    def paused(self) -> _Paused:
        """A context in which forward passes are not captured."""
        return _Paused(self)

    def _hook(self, _module: nn.Module, _inputs: object, output: object) -> torch.Tensor | None:
        if not self._active or threading.get_ident() != self._owner:
            return None
        if not isinstance(output, torch.Tensor):
            raise TypeError(
                f"Layer '{self.name}' returns {type(output).__name__}, not a tensor; pick a layer "
                "whose output is a feature map."
            )
        height, width = self.input_shape or (0, 0)  # unknown: the model's own image size
        layout = layout_of(self.model, self.module, output, height, width)
        if layout is None:
            raise ValueError(
                f"Layer '{self.name}' outputs a tensor of shape {tuple(output.shape)}; an explainable layer "
                "outputs feature maps (batch × channels × height × width) or a vision transformer's tokens "
                "(batch × (prefix tokens + one per patch) × channels) on more than one position."
            )
        replaced = None
        if self.differentiable and torch.is_grad_enabled():
            output = replaced = output.detach().requires_grad_(True)
        self.output, self.layout = output, layout
        self.activations = layout.to_maps(output)
        return replaced

    def gradients(self, scores: torch.Tensor) -> torch.Tensor:
        """∂(Σ scores)/∂activations as maps ``(B, C, h, w)``; with one score per image, each image
        gets its own gradient (a token layer's prefix tokens get none: they are not maps)."""
        if self.output is None or not self.output.requires_grad:
            raise RuntimeError("No differentiable activations were captured (differentiable=True and grad mode needed).")
        (grad,) = torch.autograd.grad(scores.sum(), self.output)
        return self.layout.to_maps(grad)


class _Paused:
    def __init__(self, capture: LayerCapture):
        self._capture = capture

    def __enter__(self) -> None:
        self._capture._active = False

    def __exit__(self, *_exc: object) -> None:
        self._capture._active = True


def hook_count(model: nn.Module) -> int:
    """Number of forward (pre-)hooks and backward hooks left on ``model``'s modules."""
    total = 0
    for module in model.modules():
        total += len(module._forward_hooks) + len(module._forward_pre_hooks)
        total += len(module._backward_hooks) + len(getattr(module, "_backward_pre_hooks", {}))
    return total
