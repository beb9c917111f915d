"""Faithfulness metrics for any method's heatmaps (Feng et al., §4.5.1, eq. 23; Petsiuk et al., RISE).

**Masking.** Every metric here masks with the one convention of :mod:`clustercam.maps`:
``X ∘ H`` multiplies the *preprocessed* input tensor ``X`` by the heatmap ``H ∈ [0, 1]`` (broadcast
over the colour channels), so a pixel with ``H = 0`` takes the value 0 of the normalised space,
i.e. the preprocessing's mean colour. Cluster-CAM's own masked passes (eq. 19) use the very same
convention, and so does every method scored here: no method gets a baseline of its own.

With ``Y = S_c(X)`` (softmax probability of the target class ``c`` on the image) and
``O = S_c(X ∘ H)`` (on the image masked by its explanation):

- **average drop** ``100 · mean(max(0, Y − O) / Y)`` (Grad-CAM++'s metric, ↓);
- **confidence drop** ``100 · mean((Y − O) / Y)``, the paper's signed eq. 23 (↓; negative when the
  masked images are on average scored *higher*);
- **increase in confidence** ``100 · share of images with O > Y``, the paper's "increase number"
  (↑), as a percentage of the images;
- **deletion / insertion** AUC (RISE): pixels ordered by heatmap value, the top fraction ``f`` set
  to the baseline (deletion, ↓) or revealed on the baseline (insertion, ↑) for ``f`` in
  ``0, 1/n, …, 1``; the area under the target-probability curve by the trapezoid rule;
- **pair share** (↑): the class-discriminativeness check the paper lacks. Two images of different
  classes side by side; explaining the left image's class should put the heatmap's mass on the
  left half, and the right image's class on the right half.
- **ADCC** (↑; Poppi, Cornia, Baraldi & Cucchiara, "Revisiting the evaluation of class activation
  mapping for explainability", CVPRW 2021; :func:`adcc`): per image, the harmonic mean of
  *coherency* (the map of ``X ∘ H`` against ``H``: their Pearson correlation, mapped to ``[0, 1]``),
  one minus *complexity* (the map's mean, ``‖H‖₁ / (h·w)``) and one minus the average drop
  (``max(0, Y − O) / Y``): ``3 / (1/Cy + 1/(1 − Cx) + 1/(1 − AD))``. Coherency needs the method's
  map of the masked image: one more explanation per image, whose passes are counted.

All functions run on the model's device under ``torch.inference_mode`` and push at most
``batch_size`` images through the network at a time.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
from PIL import Image
from torch import nn

from .imaging import side_by_side
from .maps import apply_masks, masked_probabilities
from .methods.base import model_device
from .zoo import ModelSpec

#: ``explain(inputs (B, C, H, W), targets (B,)) → heatmaps (B, H, W)`` in ``[0, 1]``.
ExplainFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _check_batch(inputs: torch.Tensor, heatmaps: torch.Tensor, targets: torch.Tensor) -> None:
    if inputs.dim() != 4:
        raise ValueError(f"Expected a B×C×H×W input batch; got shape {tuple(inputs.shape)}.")
    if heatmaps.shape != (inputs.shape[0], *inputs.shape[2:]):
        raise ValueError(
            f"Expected heatmaps of shape {(inputs.shape[0], *inputs.shape[2:])} (one per image, at "
            f"the input size); got {tuple(heatmaps.shape)}."
        )
    if targets.shape != (inputs.shape[0],):
        raise ValueError(f"Expected one target per image ({inputs.shape[0]}); got {tuple(targets.shape)}.")


@torch.inference_mode()
def target_probabilities(
    model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor, *, batch_size: int = 64
) -> torch.Tensor:
    """``Y = S_c(X)``: softmax probability of each image's target class, ``(B,)``."""
    device = model_device(model)
    inputs, targets = inputs.to(device), torch.as_tensor(targets, device=device).long()
    chunks = [
        model(inputs[start : start + batch_size]).float().softmax(dim=1)
        for start in range(0, inputs.shape[0], batch_size)
    ]
    return torch.cat(chunks).gather(1, targets[:, None]).squeeze(1)


@torch.inference_mode()
def explanation_scores(
    model: nn.Module,
    inputs: torch.Tensor,
    heatmaps: torch.Tensor,
    targets: torch.Tensor,
    *,
    batch_size: int = 64,
    probabilities: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(Y, O)``: target probability on ``X`` and on ``X ∘ H`` (eqs. 8–9, 23), each ``(B,)``.

    Args:
        probabilities: ``Y`` when already known (e.g. :meth:`CAMResult.target_probabilities`);
            it saves one forward pass per image.
    """
    device = model_device(model)
    inputs, heatmaps = inputs.to(device), heatmaps.to(device)
    targets = torch.as_tensor(targets, device=device).long()
    _check_batch(inputs, heatmaps, targets)
    if probabilities is None:
        probabilities = target_probabilities(model, inputs, targets, batch_size=batch_size)
    masked = masked_probabilities(model, inputs, heatmaps[:, None], batch_size=batch_size)[:, 0]
    return probabilities.to(device).float(), masked.gather(1, targets[:, None]).squeeze(1)


def _relative_drop(y: torch.Tensor, o: torch.Tensor) -> torch.Tensor:
    y, o = torch.as_tensor(y, dtype=torch.float64), torch.as_tensor(o, dtype=torch.float64)
    if y.shape != o.shape or y.numel() == 0:
        raise ValueError(f"Y and O must be non-empty and of one shape; got {tuple(y.shape)} and {tuple(o.shape)}.")
    return (y - o) / y.clamp_min(torch.finfo(torch.float64).tiny)


def average_drop_per_image(y: torch.Tensor, o: torch.Tensor) -> torch.Tensor:
    """``100 · max(0, Y − O) / Y`` per image (in %)."""
    return 100.0 * _relative_drop(y, o).clamp_min(0)


def confidence_drop_per_image(y: torch.Tensor, o: torch.Tensor) -> torch.Tensor:
    """``100 · (Y − O) / Y`` per image (eq. 23, in %; negative when masking raises the score)."""
    return 100.0 * _relative_drop(y, o)


def average_drop(y: torch.Tensor, o: torch.Tensor) -> float:
    """Average drop ``100 · mean(max(0, Y − O) / Y)`` in % (lower is better)."""
    return float(average_drop_per_image(y, o).mean())


def confidence_drop(y: torch.Tensor, o: torch.Tensor) -> float:
    """The paper's confidence drop, eq. 23 averaged: ``100 · mean((Y − O) / Y)`` in % (lower is better)."""
    return float(confidence_drop_per_image(y, o).mean())


def increase_in_confidence(y: torch.Tensor, o: torch.Tensor) -> float:
    """The paper's "increase number": ``100 ·`` share of images with ``O > Y``, in % (higher is better)."""
    y, o = torch.as_tensor(y), torch.as_tensor(o)
    if y.shape != o.shape or y.numel() == 0:
        raise ValueError(f"Y and O must be non-empty and of one shape; got {tuple(y.shape)} and {tuple(o.shape)}.")
    return 100.0 * float((o > y).double().mean())


@dataclass
class Curve:
    """A deletion or insertion curve for a batch.

    Attributes:
        fractions: ``(S,)`` fractions of pixels deleted / inserted, ``0, 1/n, …, 1``.
        probabilities: ``(B, S)`` target probability at each fraction.
        auc: ``(B,)`` area under each curve (trapezoid rule over ``[0, 1]``).
    """

    kind: str
    fractions: torch.Tensor
    probabilities: torch.Tensor
    auc: torch.Tensor

    @property
    def mean_auc(self) -> float:
        return float(self.auc.mean())


def pixel_ranks(heatmaps: torch.Tensor, *, seed: int = 0) -> torch.Tensor:
    """Rank of every pixel in descending heatmap order, ``(B, H·W)`` (0 = most salient).

    Ties (the zeros of a ReLU'd map, above all) are broken by one fixed random permutation of
    the pixel positions, so equal pixels are removed in no spatial order (not row by row).
    """
    flat = heatmaps.flatten(1).float()
    generator = torch.Generator().manual_seed(seed)
    permutation = torch.randperm(flat.shape[1], generator=generator).to(flat.device)
    order = permutation[flat[:, permutation].argsort(dim=1, descending=True, stable=True)]
    ranks = torch.empty_like(order)
    ranks.scatter_(1, order, torch.arange(flat.shape[1], device=flat.device).expand_as(order))
    return ranks


@torch.inference_mode()
def deletion_insertion(
    model: nn.Module,
    inputs: torch.Tensor,
    heatmaps: torch.Tensor,
    targets: torch.Tensor,
    *,
    n_steps: int = 32,
    batch_size: int = 64,
    kinds: Sequence[str] = ("deletion", "insertion"),
) -> dict[str, Curve]:
    """Deletion and insertion curves (Petsiuk et al., RISE) with the baseline of :mod:`clustercam.maps`.

    At fraction ``f = k / n_steps`` the ``round(f·H·W)`` most salient pixels are set to 0 (the
    preprocessing's mean colour; deletion) or are the only ones kept (insertion): the masked input
    is ``X ∘ M`` with a binary mask ``M``. Every step of every image (``B · (n_steps + 1)`` inputs
    per curve) is evaluated in chunks of ``batch_size``. Returns ``{kind: Curve}``.
    """
    if n_steps < 1:
        raise ValueError(f"n_steps must be at least 1; got {n_steps}.")
    unknown = set(kinds) - {"deletion", "insertion"}
    if unknown or not kinds:
        raise ValueError(f"kinds must be 'deletion' and/or 'insertion'; got {list(kinds)}.")
    device = model_device(model)
    inputs, heatmaps = inputs.to(device), heatmaps.to(device)
    targets = torch.as_tensor(targets, device=device).long()
    _check_batch(inputs, heatmaps, targets)
    b, _, height, width = inputs.shape
    ranks = pixel_ranks(heatmaps)
    fractions = torch.linspace(0.0, 1.0, n_steps + 1, device=device)
    counts = torch.round(fractions * height * width).long()
    steps = n_steps + 1
    jobs = len(kinds) * b * steps  # job j: kind j // (b·steps), image (j // steps) % b, step j % steps
    probabilities = torch.empty(jobs, device=device)
    is_deletion = torch.tensor([kind == "deletion" for kind in kinds], device=device)
    for start in range(0, jobs, batch_size):
        job = torch.arange(start, min(start + batch_size, jobs), device=device)
        image, step = (job // steps) % b, job % steps
        deleting = is_deletion[job // (b * steps)]
        top = ranks[image] < counts[step][:, None]
        mask = (top ^ deleting[:, None]).view(-1, 1, height, width).to(inputs.dtype)
        scores = model(inputs[image] * mask).float().softmax(dim=1)
        probabilities[job] = scores.gather(1, targets[image][:, None]).squeeze(1)
    curves = probabilities.view(len(kinds), b, steps)
    return {
        kind: Curve(kind, fractions, curves[i], torch.trapezoid(curves[i], fractions, dim=1))
        for i, kind in enumerate(kinds)
    }


def make_pair(spec: ModelSpec, left: Image.Image, right: Image.Image, *, height: int | None = None) -> tuple[torch.Tensor, int]:
    """Two images side by side as one network input: ``(1×3×H×W tensor, split column)``.

    The two are put at a common height (default the spec's ``input_size``) with
    :func:`~clustercam.imaging.side_by_side`, then go through the spec's own preprocessing
    (``spec.prepare``, ``spec.to_tensor``); ``split`` is the first column of the right image in
    the tensor (tracked through the preprocessing's resize).
    """
    height = height or spec.input_size
    pair = side_by_side(left, right, height=height)
    left_width = max(1, round(left.width * height / left.height))
    prepared = spec.prepare(pair)
    split = round(left_width * prepared.width / pair.width)
    return spec.to_tensor(prepared), split


def make_pairs(spec: ModelSpec, lefts: Sequence[Image.Image], rights: Sequence[Image.Image]) -> tuple[torch.Tensor, list[int]]:
    """A batch of pairs (:func:`make_pair`); all pairs must come out at one size (e.g. square inputs)."""
    made = [make_pair(spec, left, right) for left, right in zip(lefts, rights, strict=True)]
    sizes = {tuple(tensor.shape) for tensor, _ in made}
    if len(sizes) > 1:
        raise ValueError(f"The pairs have different sizes {sorted(sizes)}; give images of one size to batch them.")
    return torch.cat([tensor for tensor, _ in made]), [split for _, split in made]


def half_shares(heatmaps: torch.Tensor, splits: int | Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """``(left, right)`` shares of each heatmap's mass on either side of its split column, ``(B,)`` each.

    An all-zero heatmap singles out nothing and counts as 0.5 on either side (chance).
    """
    heatmaps = heatmaps.float()
    b, _, width = heatmaps.shape
    split = torch.as_tensor(splits, device=heatmaps.device).long().expand(b)
    left_columns = torch.arange(width, device=heatmaps.device)[None, :] < split[:, None]
    columns = heatmaps.sum(dim=1)
    total = columns.sum(dim=1)
    left = (columns * left_columns).sum(dim=1)
    share = torch.where(total > 0, left / total.clamp_min(torch.finfo(torch.float32).tiny), torch.full_like(total, 0.5))
    return share, 1.0 - share


@dataclass
class PairShares:
    """Pair share per pair: mass on the left half when explaining the left class, and the right."""

    left: torch.Tensor
    right: torch.Tensor

    @property
    def per_pair(self) -> torch.Tensor:
        return (self.left + self.right) / 2

    @property
    def mean(self) -> float:
        return float(self.per_pair.mean())


def pair_share(
    explain: ExplainFn,
    inputs: torch.Tensor,
    left_targets: torch.Tensor,
    right_targets: torch.Tensor,
    splits: int | Sequence[int],
    *,
    batch_size: int = 16,
) -> PairShares:
    """Class-discriminativeness on two-object images (↑; 1 = perfect, 0.5 = blind to the class).

    For each pair (built by :func:`make_pair`) the left image's class is explained on the pair and
    the share of heatmap mass on the left half is taken; likewise the right class and the right
    half. ``explain`` is any method: ``explain(inputs, targets) → heatmaps (B, H, W)``.
    """
    n = inputs.shape[0]
    left_targets = torch.as_tensor(left_targets).long().reshape(-1)
    right_targets = torch.as_tensor(right_targets).long().reshape(-1)
    if left_targets.numel() != n or right_targets.numel() != n:
        raise ValueError(f"Expected one left and one right target per pair ({n}).")
    split = torch.as_tensor(splits).long().expand(n)
    lefts, rights = [], []
    for start in range(0, n, batch_size):
        rows = slice(start, start + batch_size)
        for targets, side, out in ((left_targets, 0, lefts), (right_targets, 1, rights)):
            heatmaps = explain(inputs[rows], targets[rows].to(inputs.device))
            if heatmaps.shape[-1] != inputs.shape[-1]:
                raise ValueError(f"explain returned heatmaps {tuple(heatmaps.shape)}, not at the input width {inputs.shape[-1]}.")
            out.append(half_shares(heatmaps.detach(), split[rows].to(heatmaps.device))[side].cpu())
    return PairShares(torch.cat(lefts), torch.cat(rights))


@dataclass
class ADCC:
    """ADCC and its parts, per image (each ``(B,)``, in ``[0, 1]``; see the module docstring).

    Attributes:
        average_drop: ``max(0, Y − O) / Y``.
        coherency: ``(ρ(H, H') + 1) / 2`` with ``H'`` the method's map of ``X ∘ H`` for the same class
            (0 where either map is constant: it has no correlation to speak of).
        complexity: the map's mean ``‖H‖₁ / (h·w)``.
        adcc: ``3 / (1/coherency + 1/(1 − complexity) + 1/(1 − average_drop))`` (0 where one term is 0).
        forward_passes / backward_passes: what the maps of the masked images cost (the method's
            own count for the batch).
    """

    average_drop: torch.Tensor
    coherency: torch.Tensor
    complexity: torch.Tensor
    adcc: torch.Tensor
    forward_passes: int = 0
    backward_passes: int = 0


def coherency(heatmaps: torch.Tensor, again: torch.Tensor) -> torch.Tensor:
    """``(B,)``: the Pearson correlation of each map ``heatmaps[i]`` with ``again[i]`` (the method's
    map of the image masked by it), mapped from ``[−1, 1]`` to ``[0, 1]`` as Poppi et al. do; 0 where
    either map is constant (the reference implementation leaves that case undefined)."""
    a = heatmaps.flatten(1).double()
    b = again.flatten(1).double().to(a.device)
    a, b = a - a.mean(dim=1, keepdim=True), b - b.mean(dim=1, keepdim=True)
    scale = a.norm(dim=1) * b.norm(dim=1)
    rho = torch.where(scale > 0, (a * b).sum(dim=1) / scale.clamp_min(torch.finfo(torch.float64).tiny), torch.zeros_like(scale))
    return torch.where(scale > 0, (rho.clamp(-1.0, 1.0) + 1.0) / 2.0, torch.zeros_like(scale))


def complexity(heatmaps: torch.Tensor) -> torch.Tensor:
    """``(B,)``: ``‖H‖₁ / (h·w)``, the mean absolute value of each map (lower: a simpler explanation)."""
    return heatmaps.flatten(1).double().abs().mean(dim=1)


def adcc_scores(average_drop_fraction: torch.Tensor, coherent: torch.Tensor, complex_: torch.Tensor) -> torch.Tensor:
    """``(B,)``: ``3 / (1/Cy + 1/(1 − Cx) + 1/(1 − AD))``, the harmonic mean of the three ``[0, 1]``
    scores where higher is better; 0 where one of them is 0 (the harmonic mean's limit)."""
    terms = torch.stack([coherent.double(), 1.0 - complex_.double(), 1.0 - average_drop_fraction.double()])
    positive = (terms > 0).all(dim=0)
    inverse = (1.0 / terms.clamp_min(torch.finfo(torch.float64).tiny)).sum(dim=0)
    return torch.where(positive, 3.0 / inverse, torch.zeros_like(inverse))


def adcc(
    explain: Callable[[torch.Tensor, torch.Tensor], Any],
    model: nn.Module,
    inputs: torch.Tensor,
    heatmaps: torch.Tensor,
    targets: torch.Tensor,
    *,
    batch_size: int = 64,
    probabilities: torch.Tensor | None = None,
    kept: torch.Tensor | None = None,
) -> ADCC:
    """ADCC of a method's ``heatmaps`` for ``targets`` (Poppi et al., CVPRW 2021), per image.

    ``explain(x, targets)`` is the method: it explains ``X ∘ H`` (masked as every metric here masks)
    for the same classes, and returns its heatmaps, or a result with ``.heatmaps`` (and
    ``.forward_passes`` / ``.backward_passes``, reported as the coherency's cost). ``probabilities``
    (``Y``) and ``kept`` (``O``) save their passes when already known.
    """
    targets = torch.as_tensor(targets, device=inputs.device).long()
    if probabilities is None or kept is None:
        y, o = explanation_scores(model, inputs, heatmaps, targets, batch_size=batch_size, probabilities=probabilities)
    else:
        y, o = probabilities, kept
    masked = apply_masks(inputs, heatmaps[:, None].to(inputs.device))
    again = explain(masked, targets)
    forward = int(getattr(again, "forward_passes", 0))
    backward = int(getattr(again, "backward_passes", 0))
    again = getattr(again, "heatmaps", again)
    drop = average_drop_per_image(y, o) / 100.0
    coherent, complex_ = coherency(heatmaps, again), complexity(heatmaps)
    return ADCC(drop.cpu(), coherent.cpu(), complex_.cpu(), adcc_scores(drop.cpu(), coherent.cpu(), complex_.cpu()),
                forward, backward)


@dataclass
class MethodMetrics:
    """Every figure of one method on one run (Tables 1 and 2 of the paper, plus RISE and pairs)."""

    method: str
    images: int
    average_drop: float
    confidence_drop: float
    increase: float
    deletion: float | None = None
    insertion: float | None = None
    pair_share: float | None = None
    pairs: int = 0
    adcc: float | None = None
    coherency: float | None = None
    complexity: float | None = None
    seconds_per_image: float | None = None
    forward_passes: float | None = None
    backward_passes: float | None = None
    coherency_forward_passes: float | None = None
    coherency_backward_passes: float | None = None

    def as_dict(self) -> dict:
        return asdict(self)


def summarize(
    method: str,
    y: torch.Tensor,
    o: torch.Tensor,
    *,
    curves: dict[str, Curve] | None = None,
    pairs: PairShares | None = None,
    seconds_per_image: float | None = None,
    forward_passes: float | None = None,
    backward_passes: float | None = None,
    adcc: ADCC | None = None,
) -> MethodMetrics:
    """All metrics of ``method`` from its scores ``(Y, O)``, curves, pair shares and ADCC (means of
    the per-image values, as percentages)."""
    curves = curves or {}
    images = max(1, int(torch.as_tensor(y).numel()))
    parts = {} if adcc is None else {
        "adcc": 100.0 * float(adcc.adcc.double().mean()), "coherency": 100.0 * float(adcc.coherency.double().mean()),
        "complexity": 100.0 * float(adcc.complexity.double().mean()),
        "coherency_forward_passes": adcc.forward_passes / images, "coherency_backward_passes": adcc.backward_passes / images,
    }
    return MethodMetrics(
        method=method,
        images=int(torch.as_tensor(y).numel()),
        average_drop=average_drop(y, o),
        confidence_drop=confidence_drop(y, o),
        increase=increase_in_confidence(y, o),
        deletion=curves["deletion"].mean_auc if "deletion" in curves else None,
        insertion=curves["insertion"].mean_auc if "insertion" in curves else None,
        pair_share=pairs.mean if pairs is not None and pairs.left.numel() else None,
        pairs=int(pairs.left.numel()) if pairs is not None else 0,
        seconds_per_image=seconds_per_image,
        forward_passes=forward_passes,
        backward_passes=backward_passes,
        **parts,
    )
