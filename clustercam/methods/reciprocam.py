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

**Cost.** One full pass (the template's: the layer's maps and the logits, from the compiled graph
where the network has one) and a tail of ``h·w + 1`` rows per image: the positions and one
un-masked row whose logits must be the network's own, which validates the tail
(:class:`clustercam.tail.Tail`; where it does not hold, the rows are evaluated by full re-runs and
``extras["tail_mode"]`` says ``"full"``). Rows go through the tail ``batch_size`` at a time (the
layers before the target run once per chunk: ``extras["head_passes"]``); ``forward_passes`` counts
the full pass and every tail row, ``extras["tail_rows"]`` the rows alone. No gradient.
"""

from __future__ import annotations

import torch
from torch import nn

from ..maps import minmax
from ..tail import Tail, TailMismatchError
from .base import BaseCAM, ForwardState, Saliency

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


class ReciproCAM(BaseCAM):
    """Recipro-CAM: each position of the layer's maps kept alone, scored by the network's tail.

    Args:
        model: ``nn.Module`` (eval mode) or zoo ``ModelSpec``.
        layer: target layer; default the spec's default layer.
        batch_size: tail rows per forward pass.
        gaussian: the paper's smoothed variant (each kept position spread over its 3×3 neighbours).
        mode: ``"auto"`` (the tail, validated, with full re-runs as the fallback), ``"tail"`` (raise
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

    @torch.inference_mode()
    def explain(self, state: ForwardState) -> Saliency:
        batch, _, height, width = state.activations.shape
        tail = Tail(self.network, self.layer)
        positions = torch.arange(height * width, device=state.activations.device)
        chunks = positions.split(self.batch_size)
        maps = state.activations.new_empty(batch, height * width, dtype=torch.float32)
        full, reason, rows_run, head_passes = self.mode == "full", "", 0, 0
        for b in range(batch):
            image, own = state.inputs[b : b + 1], state.activations[b]
            for index, chunk in enumerate(chunks):
                rows = mosaic_rows(own, chunk, gaussian=self.gaussian)
                if b == 0 and index == 0 and not full:  # the tail checked once per call
                    check = tail.validated(image, own[None], state.logits[b], rows)
                    rows_run, head_passes = rows_run + check.rows_run, head_passes + 1
                    if check.logits is None and self.mode == "tail":
                        raise TailMismatchError(f"Recipro-CAM's tail failed validation: {check.reason}.")
                    full, reason, logits = check.logits is None, check.reason, check.logits
                    if logits is not None:
                        maps[b, chunk] = logits.softmax(dim=1)[:, state.targets[b]]
                        continue
                logits = tail.logits(image, rows, full=full)
                rows_run += rows.shape[0]
                head_passes += rows.shape[0] if full else 1
                maps[b, chunk] = logits.softmax(dim=1)[:, state.targets[b]]
        scaled = minmax(maps.view(batch, height, width))
        extras = {"tail_mode": "full" if full else "tail", "tail_fallback_reason": reason,
                  "tail_rows": rows_run, "head_passes": head_passes}
        return Saliency(scaled, forward_passes=rows_run, extras=extras)
