"""Score-CAM (Wang et al.; Feng et al. eqs. 8–9), with constant and duplicate masks evaluated once.

For each feature map ``F_n`` of the target layer:

* ``H_n = s(U_p(F_n))`` (eq. 9): bilinear upsampling to the input size, then min–max scaling to
  ``[0, 1]`` (a constant map gives the all-zero mask);
* the masked input ``X ∘ H_n`` (the masking convention of :mod:`clustercam.maps`: masked-out
  pixels take the preprocessing's mean colour) is scored, hooks inactive and under
  ``torch.inference_mode``, ``batch_size`` inputs per pass;
* ``α_n`` (eq. 8) is, with ``weighting="probability"`` (default, the paper's), the softmax
  probability of the target class for ``X ∘ H_n``, minus that of the baseline ``X_b = X ∘ 0`` when
  ``subtract_baseline=True``; with ``weighting="softmax"``, pytorch-grad-cam's variant: the softmax
  *across channels* of the masked inputs' target *logits*;
* the map is eq. 1, ``ReLU(Σ_n α_n F_n)``.

**Speed.** The mask depends only on ``minmax(F_n)`` at the layer's resolution (upsampling is
linear and commutes with the affine min–max scaling), so channels whose normalised maps are
identical share one mask and one masked pass: in particular every spatially constant channel
(often many after a ReLU6: all-zero or saturated maps) gives the same all-baseline image, scored
once. The reported forward passes are the masked inputs actually evaluated;
``extras["unique_masks"]`` gives their number per image.

**pytorch-grad-cam.** Its ``ScoreCAM`` upsamples with ``UpsamplingBilinear2d``, i.e.
``align_corners=True``, and scales with ``(x − min) / (max − min + 1e-8)``; this class upsamples with
``align_corners=False`` like every other map in this library unless ``align_corners=True`` is
passed (the reference-agreement test does, together with ``weighting="softmax"``).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from ..maps import apply_masks, minmax
from .base import ChannelWeights, ForwardState, WeightedCAM

Weighting = Literal["probability", "softmax"]


def unique_maps(maps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(distinct maps (U, h, w), index of each input map's distinct map (N,))``."""
    distinct, inverse = torch.unique(maps.flatten(1), dim=0, return_inverse=True)
    return distinct.view(-1, *maps.shape[1:]), inverse


class ScoreCAM(WeightedCAM):
    """Score-CAM (eqs. 8–9): each map weighted by the class score of the input it masks.

    Args:
        model: ``nn.Module`` (eval mode) or zoo ``ModelSpec``.
        layer: target layer; default the spec's default layer.
        batch_size: masked inputs per forward pass.
        weighting: ``"probability"`` (eq. 8 with the softmax probability as ``S_c``) or
            ``"softmax"`` (pytorch-grad-cam: softmax across channels of the target logits).
        subtract_baseline: with ``"probability"``, subtract ``S_c(X_b)`` of the all-baseline
            input ``X_b = X ∘ 0`` (eq. 8's baseline term; one more pass unless some mask is
            already all-zero).
        align_corners: how masks are upsampled (``True`` reproduces pytorch-grad-cam).

    Cost per image: ``1 + U`` forward passes, ``U ≤ N`` the number of distinct masks; no backward.
    """

    name = "scorecam"
    title = "Score-CAM"
    slow_on_cpu = True

    def __init__(
        self,
        model,
        layer: str | nn.Module | None = None,
        *,
        batch_size: int = 64,
        weighting: Weighting = "probability",
        subtract_baseline: bool = False,
        align_corners: bool = False,
    ):
        super().__init__(model, layer, batch_size=batch_size)
        if weighting not in ("probability", "softmax"):
            raise ValueError(f"weighting must be 'probability' or 'softmax'; got {weighting!r}.")
        if subtract_baseline and weighting != "probability":
            raise ValueError("subtract_baseline applies to weighting='probability' only.")
        self.weighting: Weighting = weighting
        self.subtract_baseline = bool(subtract_baseline)
        self.align_corners = bool(align_corners)

    @classmethod
    def planned_passes(cls, channels: int, **options) -> tuple[int, int]:
        """``1 + N`` (``2 + N`` with ``subtract_baseline``): an upper bound, duplicate masks are
        scored once."""
        return 1 + int(channels) + int(bool(options.get("subtract_baseline", False))), 0

    def masks(self, maps: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """Eq. 9 for ``(U, h, w)`` maps: ``(U, H, W)`` masks in ``[0, 1]``."""
        upsampled = F.interpolate(
            maps[:, None].float(), size=size, mode="bilinear", align_corners=self.align_corners
        )
        return minmax(upsampled[:, 0])

    def masked_logits(self, image: torch.Tensor, maps: torch.Tensor) -> torch.Tensor:
        """Logits of ``X ∘ H_u`` for one ``(1, C, H, W)`` image and the masks of ``(U, h, w)`` maps:
        ``(U, classes)``; masks are built ``batch_size`` at a time, never all at once."""
        size = (image.shape[-2], image.shape[-1])
        chunks = []
        for start in range(0, maps.shape[0], self.batch_size):
            masks = self.masks(maps[start : start + self.batch_size], size)
            chunks.append(self.network(apply_masks(image, masks[None])).float())
        return torch.cat(chunks)

    @torch.inference_mode()
    def weights(self, state: ForwardState) -> ChannelWeights:
        """α of eq. 8 per image and channel; ``extras["unique_masks"]``: distinct masks scored."""
        alphas, passes, unique_counts = [], 0, []
        for b in range(state.inputs.shape[0]):
            normalised = minmax(state.activations[b].float())
            distinct, inverse = unique_maps(normalised)
            zero = (distinct.flatten(1) == 0).all(dim=1)
            extra_baseline = self.subtract_baseline and not bool(zero.any())
            if extra_baseline:  # score the all-baseline input X ∘ 0 too
                distinct = torch.cat([distinct, distinct.new_zeros(1, *distinct.shape[1:])])
                zero = torch.cat([zero, zero.new_ones(1)])
            logits = self.masked_logits(state.inputs[b : b + 1], distinct)
            passes += distinct.shape[0]
            unique_counts.append(distinct.shape[0] - int(extra_baseline))
            target = state.targets[b]
            if self.weighting == "softmax":
                alphas.append(logits[inverse, target].softmax(dim=0))
                continue
            probabilities = logits.softmax(dim=1)[:, target]
            alpha = probabilities[inverse]
            if self.subtract_baseline:
                alpha = alpha - probabilities[torch.nonzero(zero)[0, 0]]
            alphas.append(alpha)
        return ChannelWeights(torch.stack(alphas), passes, 0, {"unique_masks": unique_counts})
