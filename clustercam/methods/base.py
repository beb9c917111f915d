"""The template every CAM method follows, and the result objects they return.

A call ``cam(inputs, targets)``:

1. one forward pass of the batch with the target layer captured (activations ``F``; with
   ``needs_gradients``, also ``∂s_c/∂F`` of the target logit ``s_c``, back-propagated through the
   layers after the target layer only);
2. ``explain`` (the one method a subclass writes) turns that into a saliency map per image, at any
   resolution, and counts its extra forward/backward passes;
3. ``finalize`` upsamples the map to the input size and scales it into ``[0, 1]``
   (``max(x, 0) / max`` for the CAM family, as in their papers).

Forward passes count *images* pushed through the network (a batch of k images counts k; a pass
through only the layers after the target layer counts too); backward passes likewise.
"""

from __future__ import annotations

import inspect
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field, fields, replace
from types import TracebackType
from typing import ClassVar

import torch
from torch import nn

from ..hooks import LayerCapture, resolve_layer
from ..layouts import MAPS, Layout, layout_of
from ..maps import relu_max, upsample
from ..network import Network

Targets = int | Sequence[int] | torch.Tensor | None


@dataclass
class Explanation:
    """One image's explanation (``result[i]``)."""

    method: str
    heatmap: torch.Tensor
    target: int
    target_probability: float
    top_classes: list[int]
    top_probabilities: list[float]
    forward_passes: int
    backward_passes: int
    seconds: float


@dataclass
class CAMResult:
    """A batch of explanations.

    Attributes:
        heatmaps: ``(B, H, W)`` in ``[0, 1]``, at the input size.
        targets: ``(B,)`` explained class of each image.
        probabilities: ``(B, classes)`` softmax of the unmasked inputs' logits.
        forward_passes / backward_passes: totals for the batch (see the module docstring).
        seconds: wall time of the call.
    """

    method: str
    heatmaps: torch.Tensor
    targets: torch.Tensor
    probabilities: torch.Tensor
    forward_passes: int
    backward_passes: int
    seconds: float
    extras: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return self.heatmaps.shape[0]

    def to(self, device: torch.device | str) -> CAMResult:
        """The same result with every tensor on ``device`` (e.g. ``"cpu"`` to keep or send it)."""
        moved = {}
        for item in fields(self):
            value = getattr(self, item.name)
            if isinstance(value, torch.Tensor):
                moved[item.name] = value.to(device)
        return replace(self, **moved)

    def target_probabilities(self) -> torch.Tensor:
        return self.probabilities.gather(1, self.targets[:, None]).squeeze(1)

    def top(self, k: int = 5) -> tuple[torch.Tensor, torch.Tensor]:
        """``(probabilities, class indices)`` of the ``k`` most likely classes, ``(B, k)`` each."""
        return self.probabilities.topk(min(k, self.probabilities.shape[1]), dim=1)

    def _common(self, index: int) -> dict:
        n = len(self)
        values, classes = self.top(5)
        return {
            "method": self.method,
            "heatmap": self.heatmaps[index],
            "target": int(self.targets[index]),
            "target_probability": float(self.probabilities[index, self.targets[index]]),
            "top_classes": classes[index].tolist(),
            "top_probabilities": values[index].tolist(),
            "forward_passes": self.forward_passes // n,
            "backward_passes": self.backward_passes // n,
            "seconds": self.seconds / n,
        }

    def __getitem__(self, index: int) -> Explanation:
        return Explanation(**self._common(index))


@dataclass
class ForwardState:
    """What ``explain`` receives: the batch, its logits and the captured layer.

    Attributes:
        activations: the layer's feature maps ``(B, C, h, w)`` (a transformer's tokens read as maps
            on their grid: :mod:`clustercam.layouts`).
        gradients: ∂s_c/∂F as maps, for methods that need them.
        layout: how the layer's own output holds the maps.
        output: the layer's output in its own layout (what a replacement handed to the rest of the
            network must look like); None when it is ``activations`` itself.
    """

    inputs: torch.Tensor
    logits: torch.Tensor
    activations: torch.Tensor
    gradients: torch.Tensor | None
    targets: torch.Tensor
    layout: Layout = MAPS
    output: torch.Tensor | None = None

    def own_output(self, index: int) -> torch.Tensor:
        """Image ``index``'s layer output in the layer's own layout, ``(1, …)``."""
        source = self.activations if self.output is None else self.output
        return source[index : index + 1]


@dataclass
class Saliency:
    """What ``explain`` returns: maps ``(B, h, w)`` (any resolution) and its extra pass counts."""

    maps: torch.Tensor
    forward_passes: int = 0
    backward_passes: int = 0
    extras: dict = field(default_factory=dict)


def resolve_targets(targets: Targets, logits: torch.Tensor) -> torch.Tensor:
    """Class index per image: the top-1 prediction by default, or the given index(es)."""
    batch, classes = logits.shape
    if targets is None:
        resolved = logits.argmax(dim=1)
    elif isinstance(targets, int):
        resolved = torch.full((batch,), targets, dtype=torch.long, device=logits.device)
    else:
        resolved = torch.as_tensor(targets, dtype=torch.long, device=logits.device).flatten()
        if resolved.numel() == 1:
            resolved = resolved.expand(batch).clone()
    if resolved.shape != (batch,):
        raise ValueError(f"Expected one target per image ({batch}); got {resolved.numel()}.")
    if ((resolved < 0) | (resolved >= classes)).any():
        raise ValueError(f"Target class indices must be in [0, {classes}); got {resolved.tolist()}.")
    return resolved


def model_device(model: nn.Module) -> torch.device:
    for tensor in model.parameters():
        return tensor.device
    for tensor in model.buffers():
        return tensor.device
    return torch.device("cpu")


class BaseCAM:
    """Shared machinery; a method subclasses it and implements :meth:`explain`.

    Args:
        model: an ``nn.Module`` in eval mode, or a zoo :class:`~clustercam.zoo.ModelSpec`.
        layer: target layer (dotted name or module); default the spec's ``default_layer``.
        batch_size: images per forward pass in the method's extra (masked/ablated) passes.

    Usable as a context manager for symmetry with pytorch-grad-cam; hooks only exist during a
    call, so leaving the context (or not using one) never leaks a hook.
    """

    #: Registry name (``METHODS``), the title people read (app, plots, tables), and whether the
    #: method is too slow to run by default on a CPU (one forward pass per channel: Score-CAM).
    name: ClassVar[str] = "base"
    title: ClassVar[str] = "CAM"
    slow_on_cpu: ClassVar[bool] = False
    needs_gradients: ClassVar[bool] = False

    @classmethod
    def planned_passes(cls, channels: int, **options) -> tuple[int, int]:
        """``(forward, backward)`` passes per image this method makes at a layer of ``channels``
        feature maps with these constructor ``options``, known before it runs (the counts of the
        paper's Table 2 and of :attr:`CAMResult.forward_passes`; an upper bound where a method
        skips duplicate masks). The app budgets requests with it. ``height`` and ``width`` (the
        layer's grid for the input) are passed too: a method whose cost depends on the grid
        (Recipro-CAM, one tail row per position) reads them, the others ignore them."""
        return 1, 1 if cls.needs_gradients else 0

    @classmethod
    def option_names(cls) -> tuple[str, ...]:
        """The keyword options a caller may pass to this method's constructor (besides
        ``batch_size``): what the CLI and the app forward to it and nothing else."""
        parameters = inspect.signature(cls.__init__).parameters.values()
        return tuple(p.name for p in parameters if p.kind is p.KEYWORD_ONLY and p.name != "batch_size")

    def __init__(self, model, layer: str | nn.Module | None = None, *, batch_size: int = 64):
        spec = model if hasattr(model, "default_layer") and hasattr(model, "model") else None
        self.model: nn.Module = spec.model if spec is not None else model
        #: Every forward pass goes through it (compiled graphs where ready; the model as given
        #: otherwise: a bare module is left in its own memory layout).
        self.network: Network = spec.network if spec is not None else Network(self.model, channels_last=False)
        if layer is None:
            if spec is None:
                raise ValueError("Name the target layer (or pass a zoo ModelSpec, which has a default).")
            layer = spec.default_layer
        self.layer_name, self.layer = resolve_layer(self.model, layer)
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be at least 1; got {batch_size}.")
        self.batch_size = int(batch_size)

    def __enter__(self) -> BaseCAM:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        return None

    def __call__(self, inputs: torch.Tensor, targets: Targets = None) -> CAMResult:
        start = time.perf_counter()
        if inputs.dim() != 4:
            raise ValueError(f"Expected a B×C×H×W input batch; got shape {tuple(inputs.shape)}.")
        if self.model.training:
            warnings.warn(
                "The model is in training mode (dropout/batch-norm statistics make explanations "
                "noisy); call model.eval() first.",
                stacklevel=2,
            )
        inputs = inputs.to(model_device(self.model))
        state = self.forward(inputs, targets)
        saliency = self.explain(state)
        heatmaps = self.finalize(saliency.maps, (inputs.shape[-2], inputs.shape[-1]))
        batch = inputs.shape[0]
        if heatmaps.device.type == "cuda":  # the GPU works asynchronously: wait before timing
            torch.cuda.synchronize(heatmaps.device)
        return self.make_result(
            state,
            heatmaps=heatmaps,
            forward_passes=batch + saliency.forward_passes,
            backward_passes=(batch if self.needs_gradients else 0) + saliency.backward_passes,
            seconds=time.perf_counter() - start,
            extras=saliency.extras,
        )

    def forward(self, inputs: torch.Tensor, targets: Targets) -> ForwardState:
        """One pass with the layer captured; gradients of the target logits where needed.

        Without gradients the pass runs in inference mode, from the compiled graph of the layer
        and the logits where the network has one (:meth:`Network.layer_and_logits`), else with a
        hook on the eager model.
        """
        height, width = inputs.shape[-2:]
        if not self.needs_gradients:
            with torch.inference_mode():
                fast = self.network.layer_and_logits(self.layer_name, inputs)
                if fast is not None:  # a compiled graph: the layer's output in its own layout
                    layout = layout_of(self.model, self.layer, fast[0], height, width) or MAPS
                else:
                    with LayerCapture(self.model, self.layer, input_shape=(height, width)) as capture:
                        logits = self.network.eager(inputs)
                        fast, layout = (capture.output, logits), capture.layout
            if fast[0] is None:
                raise RuntimeError(f"Layer '{self.layer_name}' was not reached by the forward pass.")
            # clones outside inference mode: ordinary tensors for the steps after this one
            output, logits = (tensor.clone(memory_format=torch.contiguous_format) for tensor in fast)
            activations = layout.to_maps(output).contiguous()
            check_finite(activations, self.layer_name)
            return ForwardState(inputs, logits, activations, None, resolve_targets(targets, logits), layout,
                                None if layout.kind == "maps" else output)
        with LayerCapture(self.model, self.layer, differentiable=True, input_shape=(height, width)) as capture:
            with torch.enable_grad():
                logits = self.network.eager(inputs)
            if capture.activations is None:
                raise RuntimeError(f"Layer '{self.layer_name}' was not reached by the forward pass.")
            resolved = resolve_targets(targets, logits)
            gradients = capture.gradients(logits.gather(1, resolved[:, None])).detach()
            activations, output, layout = capture.activations.detach(), capture.output.detach(), capture.layout
        check_finite(activations, self.layer_name)
        return ForwardState(inputs, logits.detach(), activations, gradients, resolved, layout,
                            None if layout.kind == "maps" else output)

    def explain(self, state: ForwardState) -> Saliency:
        raise NotImplementedError

    def finalize(self, maps: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """Saliency maps → heatmaps: bilinear upsampling to ``size``, then ``max(x, 0) / max``."""
        return relu_max(upsample(maps, size))

    def make_result(self, state: ForwardState, **fields) -> CAMResult:
        return CAMResult(
            method=self.name,
            targets=state.targets,
            probabilities=state.logits.float().softmax(dim=1),
            **fields,
        )


def check_finite(activations: torch.Tensor, layer: str) -> None:
    if not torch.isfinite(activations).all():
        raise ValueError(f"The activations of layer '{layer}' contain NaN or infinite values.")


def weighted_maps(alpha: torch.Tensor, activations: torch.Tensor) -> torch.Tensor:
    """Eq. 1, ``ReLU(Σ_n α_n F_n)``: ``(B, N)`` weights × ``(B, N, h, w)`` maps → ``(B, h, w)``."""
    return torch.einsum("bn,bnhw->bhw", alpha.to(activations.dtype), activations).clamp_min(0)


@dataclass
class ChannelWeights:
    """What :meth:`WeightedCAM.weights` returns: the α of eq. 1 and what computing them cost.

    Attributes:
        alpha: ``(B, N)`` one weight per image and channel.
        forward_passes / backward_passes: extra passes beyond the template's own.
        extras: method-specific outputs handed on to the result's ``extras``.
    """

    alpha: torch.Tensor
    forward_passes: int = 0
    backward_passes: int = 0
    extras: dict = field(default_factory=dict)


class WeightedCAM(BaseCAM):
    """The CAM family of eq. 1: ``M_c = ReLU(Σ_n α_n^c F_n)``; a subclass defines α (:meth:`weights`)."""

    def weights(self, state: ForwardState) -> ChannelWeights:
        """The channel weights α and their cost (the one step a subclass writes)."""
        raise NotImplementedError

    def explain(self, state: ForwardState) -> Saliency:
        weights = self.weights(state)
        maps = weighted_maps(weights.alpha, state.activations)
        return Saliency(maps, weights.forward_passes, weights.backward_passes, weights.extras)
