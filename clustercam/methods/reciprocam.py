"""Recipro-CAM (Byun & Lee, "ReciproCAM: Lightweight Gradient-free CAM for Post-hoc Explanations",
CVPR 2024 XAI4CV workshop; arXiv 2209.14074): one *position* of the layer's maps kept at a time.

Cluster-CAM groups the layer's *channels* and masks the input image with each group's mean map;
Recipro-CAM is its mirror: it keeps the layer's maps at one *position* ``(i, j)`` across all
channels, sets every other position to zero, and runs the rest of the network (the *tail*) on
that feature map. With ``F`` the layer's ``(C, h, w)`` maps and ``M^{ij}`` the mosaic that keeps
position ``(i, j)``:

    ``S_c(i, j) = softmax(f_tail(F ∘ M^{ij}))_c``,  ``map = (S_c − min S_c) / (max S_c − min S_c)``

one tail row per position, ``h·w`` in all. With ``gaussian=True`` (the paper's smoothed variant)
the kept vector ``F[:, i, j]`` is spread over its 3×3 neighbourhood with the kernel
``[[1, 2, 1], [2, 4, 2], [1, 2, 1]] / 16`` (cut at the border), instead of kept at ``(i, j)`` alone.
The map is then upsampled to the input size and scaled like every other map of the library
(:meth:`~clustercam.methods.base.BaseCAM.finalize`).

**One pass, as the authors run it.** Each image goes through the network once: a hook on the
layer hands the rest of the network ``1 + k`` rows instead of the layer's output, the output itself
and ``k`` mosaics made from it (:func:`clustercam.tail.expanded_output`), so the layers before the
target run once and those after it ``1 + k`` times; row 0 is the image's own pass (its logits and
the class to explain). Positions beyond the first ``batch_size − 1`` go through the tail in further
chunks (:class:`clustercam.tail.Tail`, one more head pass each). That the tail may stand for the
network is checked once per network, layer and input shape against a plain pass
(:func:`clustercam.tail.tail_holds`); where it does not hold, every row is a full re-run
(``extras["tail_mode"] == "full"``).

**Cost.** One full pass and a tail of ``h·w + 1`` rows per image (the row of the untouched maps
and one per position); ``forward_passes`` counts the full pass and every tail row,
``extras["tail_rows"]`` the rows alone, ``extras["head_passes"]`` how often the layers before the
target ran. No gradient, no compiled graph (a graph cannot be hooked; the tail is eager).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..hooks import LayerCapture
from ..layouts import MAPS, Layout, layout_of
from ..maps import minmax
from ..tail import Tail, TailMismatchError, expanded_output, tail_holds
from .base import BaseCAM, ForwardState, Saliency, Targets, check_finite, resolve_targets

#: The paper's 3×3 smoothing kernel of the Gaussian variant.
GAUSSIAN_KERNEL = torch.tensor([[1.0, 2.0, 1.0], [2.0, 4.0, 2.0], [1.0, 2.0, 1.0]]) / 16.0


def mosaic_rows(maps: torch.Tensor, positions: torch.Tensor, *, gaussian: bool = False) -> torch.Tensor:
    """``(k, C, h, w)``: one row per flat position ``p = i·w + j`` of ``positions`` holding ``maps``
    ``(C, h, w)`` at ``(i, j)`` only and zeros elsewhere (``gaussian``: ``maps[:, i, j]`` spread
    over the 3×3 neighbourhood with :data:`GAUSSIAN_KERNEL`)."""
    channels, height, width = maps.shape
    rows = maps.new_zeros(positions.shape[0], channels, height, width)
    index = torch.arange(positions.shape[0], device=maps.device)
    i, j = positions // width, positions % width
    kept = maps[:, i, j].T  # (k, C): the vector at each row's position
    if not gaussian:
        rows[index, :, i, j] = kept
        return rows
    kernel = GAUSSIAN_KERNEL.to(maps.device, maps.dtype)
    for di in (-1, 0, 1):
        for dj in (-1, 0, 1):
            y, x = i + di, j + dj
            inside = (y >= 0) & (y < height) & (x >= 0) & (x < width)
            rows[index[inside], :, y[inside], x[inside]] = kept[inside] * kernel[di + 1, dj + 1]
    return rows


class _FirstRows:
    """Makes the mosaics that ride along in an image's own pass from the layer's output (in its
    own layout): the first ``batch_size − 1`` positions, as the layer would output them."""

    def __init__(self, cam: ReciproCAM, height: int, width: int):
        self.cam, self.height, self.width, self.layout = cam, int(height), int(width), MAPS

    def __call__(self, output: torch.Tensor) -> torch.Tensor:
        self.layout = layout_of(self.cam.model, self.cam.layer, output, self.height, self.width) or MAPS
        maps = self.layout.to_maps(output)
        count = min(self.cam.batch_size - 1, maps.shape[-2] * maps.shape[-1])
        rows = self.cam._mosaics(maps[0], torch.arange(count, device=maps.device))
        return self.layout.to_output(rows, output)


@dataclass
class PositionScores(ForwardState):
    """The forward state with every position's class probabilities ``(B, h·w, classes)`` and how
    they were had."""

    scores: torch.Tensor | None = None
    tail_mode: str = "tail"
    reason: str = ""
    tail_rows: int = 0
    head_passes: int = 0


class ReciproCAM(BaseCAM):
    """Recipro-CAM: each position of the layer's maps kept alone, scored by the network's tail.

    Args:
        model: ``nn.Module`` (eval mode) or zoo ``ModelSpec``.
        layer: target layer; default the spec's default layer.
        batch_size: rows per pass through the tail (the first pass carries the image's own row).
        gaussian: the paper's smoothed variant (each kept position spread over its 3×3 neighbours).
        mode: ``"auto"`` (the tail, checked, with full re-runs as the fallback), ``"tail"`` (raise
            if the tail does not reproduce the network) or ``"full"`` (always re-run the network).

    Cost per image: ``1 + h·w + 1`` forward passes of which ``h·w + 1`` are tail rows (``1 + h·w``
    with ``mode="full"``), no backward.
    """

    name = "reciprocam"
    title = "Recipro-CAM"

    def __init__(self, model, layer: str | nn.Module | None = None, *, batch_size: int = 64,
                 gaussian: bool = False, mode: str = "auto"):
        super().__init__(model, layer, batch_size=batch_size)
        if mode not in ("auto", "tail", "full"):
            raise ValueError(f"mode must be 'auto', 'tail' or 'full'; got {mode!r}.")
        self.gaussian, self.mode = bool(gaussian), mode

    @classmethod
    def planned_passes(cls, channels: int, *, height: int | None = None, width: int | None = None,
                       **options) -> tuple[int, int]:
        """``1`` full pass and ``h·w + 1`` tail rows (``h·w`` with ``mode="full"``): the layer's
        height and width are needed."""
        if height is None or width is None:
            raise ValueError("Recipro-CAM's passes depend on the layer's height and width; give them.")
        return 1 + int(height) * int(width) + int(options.get("mode", "auto") != "full"), 0

    def _mosaics(self, maps: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        return mosaic_rows(maps, positions, gaussian=self.gaussian)

    @torch.inference_mode()
    def forward(self, inputs: torch.Tensor, targets: Targets) -> PositionScores:
        """Each image once through the network, its first positions riding in the same pass; the
        rest through the tail in chunks (module docstring)."""
        first_rows = _FirstRows(self, *inputs.shape[-2:])
        full, reason = self.mode == "full", ""
        if not full:
            holds, reason = tail_holds(self.network, self.layer, self.layer_name, inputs[:1], first_rows)
            if not holds and self.mode == "tail":
                raise TailMismatchError(f"Recipro-CAM's tail failed its check: {reason}.")
            full = not holds
        tail = Tail(self.network, self.layer)
        logits, maps, scores, rows_run, head_passes = [], [], [], 0, 0
        for b in range(inputs.shape[0]):
            image = inputs[b : b + 1]
            if full:
                own_logits, own_output, layout = self._plain_pass(image)
                first: list[torch.Tensor] = []
            else:
                with expanded_output(self.layer, first_rows) as seen:
                    out = self.network.eager(image).float()
                own_logits, own_output, layout, first = out[:1], seen.output.clone(), first_rows.layout, [out[1:]]
                rows_run += out.shape[0]
            head_passes += 1
            own_maps = layout.to_maps(own_output)
            check_finite(own_maps, self.layer_name)
            done = sum(part.shape[0] for part in first)
            positions = torch.arange(done, own_maps.shape[-2] * own_maps.shape[-1], device=own_maps.device)
            rest = []
            for chunk in positions.split(self.batch_size):
                rows = layout.to_output(self._mosaics(own_maps[0], chunk), own_output)
                rest.append(tail.logits(image, rows, full=full))
                rows_run += chunk.shape[0]
                head_passes += chunk.shape[0] if full else 1
            logits.append(own_logits)
            maps.append(own_maps)
            scores.append(torch.cat(first + rest).softmax(dim=1))
        logits_all = torch.cat(logits)
        return PositionScores(
            inputs, logits_all, torch.cat(maps), None, resolve_targets(targets, logits_all),
            scores=torch.stack(scores), tail_mode="full" if full else "tail", reason=reason,
            tail_rows=rows_run, head_passes=head_passes,
        )

    def _plain_pass(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, Layout]:
        """One image's logits and layer output (in its own layout), by a plain pass."""
        with LayerCapture(self.model, self.layer, input_shape=tuple(image.shape[-2:])) as capture:
            logits = self.network.eager(image).float()
            return logits, capture.output.clone(), capture.layout

    def explain(self, state: ForwardState) -> Saliency:
        assert isinstance(state, PositionScores) and state.scores is not None
        batch, _, height, width = state.activations.shape
        picked = state.scores.gather(2, state.targets.view(-1, 1, 1).expand(-1, height * width, 1)).squeeze(2)
        scaled = minmax(picked.view(batch, height, width))
        extras = {"tail_mode": state.tail_mode, "tail_fallback_reason": state.reason,
                  "tail_rows": state.tail_rows, "head_passes": state.head_passes}
        return Saliency(scaled, forward_passes=state.tail_rows, extras=extras)
