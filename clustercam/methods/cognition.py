"""From scored cluster maps to a heatmap: eq. 22 and the variants measured beside it.

Every combination works on the ``Q`` cluster maps ``F̃_q`` (eq. 18) and their scores ``y_q``
(eq. 19) and needs no network work, so :meth:`ClusterCAMResult.reweight` and ``retarget`` apply any
of them to a cached explanation. Each cluster map is first *normalised* (``normalization``):

- ``"max"``: upsampled ``F̃_q`` divided by its maximum |value| (each keeps its own zero level, all
  end on the same ``[0, 1]`` scale, so β alone sets the balance whatever the layer's units);
- ``"minmax"``: the masks ``H_q`` themselves, i.e. the very maps scored in eq. 19;
- ``"none"``: upsampled ``F̃_q`` in the layer's units.

With ``B`` the normalised base map (``q_max = argmax y``, eq. 20) and ``S`` the scissors map
(``q_min = argmin y``, eq. 21), the ``combination``:

- ``"difference"`` — eq. 22 as printed: ``β·B − (1 − β)·S``;
- ``"weighted"`` — the base replaced by the score-weighted mean of *all* cluster maps,
  ``B_w = Σ_q y_q N_q / Σ_q y_q`` (a Score-CAM over clusters, eq. 8 with ``Q`` maps), then
  ``β·B_w − (1 − β)·S``;
- ``"multibase"`` — the base replaced by the mean of every cluster map whose score is at least the
  median score (the scissors excepted): ``β·mean(N_q : y_q ≥ median y) − (1 − β)·S``;
- ``"gated"`` — the base kept where the scissors are weak: ``B ⊙ (1 − (1 − β)·clamp(S, 0, 1))``; the
  scissors can only remove what the base holds, never push it below zero.

β = 1 gives the base term alone in every combination. The combined map is then scaled into
``[0, 1]`` by ``output``: ``"relu"`` (``max(H, 0) / max H``: pixels where the scissors win are
removed; a map with nothing positive, e.g. β = 0 with ``"difference"``, is all zeros) or
``"minmax"`` (``(H − min) / (max − min)``). If all ``Q`` scores are equal, base and scissors coincide
and the heatmap is the base term alone (documented fallback).
"""

from __future__ import annotations

from typing import Literal

import torch

from ..maps import minmax, relu_max, upsample

Normalization = Literal["minmax", "max", "none"]
OutputScaling = Literal["relu", "minmax"]
Combination = Literal["difference", "weighted", "multibase", "gated"]
NORMALIZATIONS = ("max", "minmax", "none")
OUTPUTS = ("relu", "minmax")
COMBINATIONS = ("difference", "weighted", "multibase", "gated")
#: combination → (its formula in the notation of the module docstring, whether the paper has it).
FORMULAS: dict[str, tuple[str, bool]] = {
    "difference": ("β·B − (1 − β)·S", True),
    "weighted": ("β·Σ y_q·N_q / Σ y_q − (1 − β)·S", False),
    "multibase": ("β·mean(N_q : y_q ≥ median y) − (1 − β)·S", False),
    "gated": ("B ⊙ (1 − (1 − β)·S)", False),
}
#: normalisation → what ``B`` and ``S`` are, in words.
NORMALIZATION_WORDS: dict[str, str] = {
    "max": "each cluster map divided by its peak",
    "minmax": "the masks H_q that were scored",
    "none": "the raw cluster means",
}
#: output scaling → how the combined map is brought into [0, 1], in words.
OUTPUT_WORDS: dict[str, str] = {
    "relu": "negative part cut, divided by the peak",
    "minmax": "min–max scaled",
}


def check_beta(beta: float) -> float:
    beta = float(beta)
    if not 0.0 <= beta <= 1.0:
        raise ValueError(f"β must be between 0 and 1; got {beta}.")
    return beta


def check_choice(value: str, choices: tuple[str, ...], what: str) -> str:
    if value not in choices:
        raise ValueError(f"{what} must be one of {', '.join(repr(c) for c in choices)}; got {value!r}.")
    return value


def normalised_maps(masks: torch.Tensor, cluster_maps: torch.Tensor, normalization: Normalization) -> torch.Tensor:
    """``(B, Q, H, W)``: every cluster map normalised as the module docstring says."""
    check_choice(normalization, NORMALIZATIONS, "normalization")
    if normalization == "minmax":
        return masks
    raw = upsample(cluster_maps.float(), tuple(masks.shape[-2:]))
    if normalization == "none":
        return raw
    peak = raw.abs().amax(dim=(-2, -1), keepdim=True)
    return raw / torch.where(peak > 0, peak, torch.ones_like(peak))


def _pick(maps: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    return maps[torch.arange(maps.shape[0], device=maps.device), index]


def base_term(maps: torch.Tensor, scores: torch.Tensor, combination: Combination) -> torch.Tensor:
    """``(B, H, W)``: what stands for the cognition-base in ``combination``."""
    base_index = scores.argmax(dim=1)
    if combination in ("difference", "gated"):
        return _pick(maps, base_index)
    if combination == "weighted":
        weights = scores.float() / scores.float().sum(dim=1, keepdim=True).clamp_min(torch.finfo(torch.float32).tiny)
        return torch.einsum("bq,bqhw->bhw", weights, maps)
    median = scores.float().quantile(0.5, dim=1, keepdim=True)
    chosen = scores.float() >= median
    chosen[torch.arange(scores.shape[0], device=scores.device), scores.argmin(dim=1)] = False
    chosen[torch.arange(scores.shape[0], device=scores.device), base_index] = True
    chosen = chosen.to(maps.dtype)
    return torch.einsum("bq,bqhw->bhw", chosen, maps) / chosen.sum(dim=1)[:, None, None]


def cognition_heatmaps(
    masks: torch.Tensor,
    cluster_maps: torch.Tensor,
    scores: torch.Tensor,
    beta: float,
    normalization: Normalization = "max",
    output: OutputScaling = "relu",
    combination: Combination = "difference",
) -> torch.Tensor:
    """``(B, H, W)`` heatmaps in ``[0, 1]`` (see the module docstring).

    Args:
        masks: ``(B, Q, H, W)`` min–max scaled, upsampled cluster maps ``H_q``.
        cluster_maps: ``(B, Q, h, w)`` cluster means ``F̃_q`` (eq. 18).
        scores: ``(B, Q)`` ``y_q`` of eq. 19 for the explained class.
    """
    beta = check_beta(beta)
    check_choice(output, OUTPUTS, "output")
    check_choice(combination, COMBINATIONS, "combination")
    scissors_index = scores.argmin(dim=1)
    if combination in ("difference", "gated"):
        # only B and S are needed: normalise those two maps, not all Q (each map is upsampled and
        # scaled on its own, so the two are exactly what normalising all Q gives)
        chosen = torch.stack([scores.argmax(dim=1), scissors_index], dim=1)
        pick = torch.arange(scores.shape[0], device=scores.device)[:, None]
        maps = normalised_maps(masks[pick, chosen], cluster_maps[pick, chosen], normalization)
        base, scissors = maps[:, 0], maps[:, 1]
    else:
        maps = normalised_maps(masks, cluster_maps, normalization)
        base, scissors = base_term(maps, scores, combination), _pick(maps, scissors_index)
    if combination == "gated":
        combined = base * (1.0 - (1.0 - beta) * scissors.clamp(0.0, 1.0))
    else:
        combined = beta * base - (1.0 - beta) * scissors
    same = (scores.argmax(dim=1) == scores.argmin(dim=1)).view(-1, 1, 1)
    combined = torch.where(same, base, combined)
    return relu_max(combined) if output == "relu" else minmax(combined)
