"""Operations on saliency maps and masks shared by every method and metric.

**The one masking convention.** ``X ∘ H`` (eqs. 8–9, 19, 23) multiplies the *preprocessed* input
tensor ``X`` by a mask ``H ∈ [0, 1]``, broadcast over the colour channels. A pixel with ``H = 0``
becomes 0 in the normalised space, which is the preprocessing's mean colour (mid-grey for
EfficientNet-Lite, the ImageNet mean for torchvision models): the same baseline as Score-CAM's
reference implementation. Cluster-CAM, Score-CAM and the metrics all use :func:`apply_masks`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def minmax(maps: torch.Tensor) -> torch.Tensor:
    """Scale each map (over its last two dimensions) to ``[0, 1]``: ``(x − min) / (max − min)``.

    A constant map (``max = min``) becomes all zeros: it singles out no region. Non-finite values
    raise a ``ValueError`` instead of spreading NaN.
    """
    if not torch.isfinite(maps).all():
        raise ValueError("The maps contain NaN or infinite values.")
    low = maps.amin(dim=(-2, -1), keepdim=True)
    span = maps.amax(dim=(-2, -1), keepdim=True) - low
    safe = torch.where(span > 0, span, torch.ones_like(span))
    return torch.where(span > 0, (maps - low) / safe, torch.zeros_like(maps))


def relu_max(maps: torch.Tensor) -> torch.Tensor:
    """``max(x, 0) / max(x)`` per map; a map with nothing positive becomes all zeros."""
    if not torch.isfinite(maps).all():
        raise ValueError("The maps contain NaN or infinite values.")
    positive = maps.clamp_min(0)
    peak = positive.amax(dim=(-2, -1), keepdim=True)
    safe = torch.where(peak > 0, peak, torch.ones_like(peak))
    return torch.where(peak > 0, positive / safe, torch.zeros_like(maps))


def upsample(maps: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear upsampling (``align_corners=False``) of ``(..., h, w)`` maps to ``size``."""
    if tuple(maps.shape[-2:]) == tuple(size):
        return maps
    leading = maps.shape[:-2]
    flat = maps.reshape(-1, 1, *maps.shape[-2:]).float()
    resized = F.interpolate(flat, size=size, mode="bilinear", align_corners=False)
    return resized.reshape(*leading, *size)


def apply_masks(inputs: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """``X ∘ H`` for every mask of every image: ``(B, C, H, W) × (B, M, H, W) → (B·M, C, H, W)``."""
    return (inputs.unsqueeze(1) * masks.unsqueeze(2).to(inputs.dtype)).flatten(0, 1)


@torch.inference_mode()
def masked_probabilities(
    model: nn.Module,
    inputs: torch.Tensor,
    masks: torch.Tensor,
    *,
    batch_size: int = 64,
    baseline: torch.Tensor | None = None,
) -> torch.Tensor:
    """Class probabilities of every masked input, ``(B, M, classes)``.

    The ``B·M`` masked inputs are built and evaluated ``batch_size`` at a time (never all in
    memory at once). With ``baseline`` (a ``(B, C, H, W)`` tensor), masked-out pixels take the
    baseline's values instead of 0: ``X ∘ H + X_b ∘ (1 − H)`` (Group-CAM's blurred baseline).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1; got {batch_size}.")
    b, m = masks.shape[:2]
    flat_masks = masks.flatten(0, 1)
    image_of = torch.arange(b, device=masks.device).repeat_interleave(m)
    chunks = []
    for start in range(0, b * m, batch_size):
        rows = slice(start, start + batch_size)
        images = inputs[image_of[rows]]
        mask = flat_masks[rows].unsqueeze(1).to(inputs.dtype)
        batch = images * mask
        if baseline is not None:
            batch = batch + baseline[image_of[rows]] * (1 - mask)
        chunks.append(model(batch).float().softmax(dim=1))
    return torch.cat(chunks).view(b, m, -1)
