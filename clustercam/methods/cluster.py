"""Cluster-CAM (Feng et al., §3.2, eqs. 17–22).

For each image:

1. capture the ``N`` feature maps ``F_n`` (``h×w``) of the target layer in one forward pass;
2. cluster them into ``Q`` groups ``𝒬_q`` with K-means or spectral clustering (eqs. 10–17);
3. average each group: ``F̃_q = mean{F_n : n ∈ 𝒬_q}`` (eq. 18, the *cluster maps*);
4. upsample each ``F̃_q`` bilinearly to the input size and min–max scale it to ``[0, 1]``: the
   *masks* ``H_q`` (a constant ``F̃_q`` gives an all-zero mask);
5. score the ``Q`` masked inputs ``X ∘ H_q`` in one batched forward pass (chunked only by
   ``batch_size``): ``y_q`` = softmax probability of the target class (eq. 19). ``X`` is the
   *preprocessed* input tensor, so masked-out pixels take the preprocessing's mean colour (see
   :mod:`clustercam.maps`);
6. cognition-base ``q_max = argmax y`` and cognition-scissors ``q_min = argmin y`` (eqs. 20–21);
7. heatmap ``β·B − (1 − β)·S`` (eq. 22), where ``B`` and ``S`` are the base and scissors maps
   normalised by ``normalization``:

   - ``"max"`` (default): upsampled ``F̃`` divided by its maximum |value|. Both maps end on the
     same ``[0, 1]`` scale, so β alone sets their balance whatever the layer's units, and each
     keeps its own zero level: a region the scissors map barely touches is barely cut. On
     ImageNet it gave the lowest average drop at equal pair share (``docs/benchmarks.md``);
   - ``"minmax"``: the masks ``H_base`` and ``H_scissors`` themselves, i.e. the very maps that
     were scored in step 5 (stretched to ``[0, 1]``);
   - ``"none"``: upsampled ``F̃`` in the layer's units (the literal eq. 22).

   and then scaled into ``[0, 1]`` by ``output``:

   - ``"relu"`` (default): ``max(H, 0) / max(H)``. Pixels where the scissors outweigh the base
     are *removed* (0), not merely darkened: this is what makes the map class-discriminative on
     multi-object images, and it matches the ReLU of the CAM family. A map with nothing
     positive (β = 0) is all zeros.
   - ``"minmax"``: ``(H − min) / (max − min)``.

Network cost per image: ``1 + Q`` forward passes and no backward pass. The clustering does not
depend on the target class and the masked passes return every class's probability, so
:meth:`ClusterCAMResult.retarget` explains another class and :meth:`ClusterCAMResult.reweight`
applies another β with no network work at all.

If all ``Q`` scores are equal, base and scissors coincide and the heatmap is the (normalised,
scaled) base map alone, whatever β (documented fallback). Degenerate layers raise ``ValueError``:
NaN/inf activations, maps that are all spatially constant (nothing to localise), ``Q`` above the
channel count, or fewer distinct maps than ``Q``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

import torch
from torch import nn

from ..clustering import kmeans, spectral_clustering
from ..maps import masked_probabilities, minmax, relu_max, upsample
from .base import BaseCAM, CAMResult, Explanation, ForwardState, Saliency, Targets, resolve_targets

#: Defaults chosen by ``benchmarks/sweep_defaults.py`` (see ``docs/benchmarks.md``): among the
#: settings that beat Grad-CAM on both average drop and increase in confidence, the one with the
#: highest pair share (200 ImageNet photographs, 100 pairs, EfficientNet-Lite0 at ``bn2``).
DEFAULT_Q = 3
DEFAULT_BETA = 0.8
DEFAULT_NORMALIZATION = "max"
Normalization = Literal["minmax", "max", "none"]
OutputScaling = Literal["relu", "minmax"]
_SPECTRAL_OPTIONS = {"n_eigenvectors", "sigma", "theta", "laplacian", "scale"}
_KMEANS_OPTIONS = {"max_iter"}


def check_beta(beta: float) -> float:
    beta = float(beta)
    if not 0.0 <= beta <= 1.0:
        raise ValueError(f"β must be between 0 and 1; got {beta}.")
    return beta


def cognition_heatmaps(
    masks: torch.Tensor,
    cluster_maps: torch.Tensor,
    base_index: torch.Tensor,
    scissors_index: torch.Tensor,
    beta: float,
    normalization: Normalization = DEFAULT_NORMALIZATION,
    output: OutputScaling = "relu",
) -> torch.Tensor:
    """Eq. 22 for a batch: ``(B, H, W)`` heatmaps in ``[0, 1]`` (see the module docstring).

    Args:
        masks: ``(B, Q, H, W)`` min–max scaled, upsampled cluster maps ``H_q``.
        cluster_maps: ``(B, Q, h, w)`` cluster means ``F̃_q`` (eq. 18).
        base_index / scissors_index: ``(B,)`` from eqs. 20–21.
    """
    beta = check_beta(beta)
    rows = torch.arange(masks.shape[0], device=masks.device)

    def normalised(index: torch.Tensor) -> torch.Tensor:
        if normalization == "minmax":
            return masks[rows, index]
        raw = upsample(cluster_maps[rows, index].float(), tuple(masks.shape[-2:]))
        if normalization == "none":
            return raw
        if normalization == "max":
            peak = raw.abs().amax(dim=(-2, -1), keepdim=True)
            return raw / torch.where(peak > 0, peak, torch.ones_like(peak))
        raise ValueError(f"normalization must be 'minmax', 'max' or 'none'; got {normalization!r}.")

    base = normalised(base_index)
    scissors = normalised(scissors_index)
    combined = beta * base - (1.0 - beta) * scissors
    same = (base_index == scissors_index).view(-1, 1, 1)
    combined = torch.where(same, base, combined)
    if output == "relu":
        return relu_max(combined)
    if output == "minmax":
        return minmax(combined)
    raise ValueError(f"output must be 'relu' or 'minmax'; got {output!r}.")


@dataclass
class ClusterExplanation(Explanation):
    """One image's Cluster-CAM explanation with every intermediate."""

    labels: torch.Tensor
    cluster_sizes: list[int]
    cluster_maps: torch.Tensor
    masks: torch.Tensor
    scores: torch.Tensor
    base_index: int
    scissors_index: int
    beta: float


@dataclass
class ClusterCAMResult(CAMResult):
    """Cluster-CAM on a batch: the heatmaps plus every intermediate, per image.

    Attributes (batched, ``B`` first):
        labels: ``(B, N)`` cluster of each channel.
        cluster_maps: ``(B, Q, h, w)`` eq. 18, at the layer's resolution.
        masks: ``(B, Q, H, W)`` ``H_q``, upsampled and min–max scaled to ``[0, 1]``.
        masked_probabilities: ``(B, Q, classes)`` probabilities of every masked input.
        scores: ``(B, Q)`` eq. 19, the target's probability for each masked input.
        base_index / scissors_index: ``(B,)`` eqs. 20–21.
    """

    labels: torch.Tensor | None = None
    cluster_maps: torch.Tensor | None = None
    masks: torch.Tensor | None = None
    masked_probabilities: torch.Tensor | None = None
    scores: torch.Tensor | None = None
    base_index: torch.Tensor | None = None
    scissors_index: torch.Tensor | None = None
    beta: float = DEFAULT_BETA
    normalization: Normalization = DEFAULT_NORMALIZATION
    output: OutputScaling = "relu"

    def reweight(self, beta: float) -> ClusterCAMResult:
        """The same explanation with another β (eq. 22 only; no network work)."""
        heatmaps = cognition_heatmaps(
            self.masks, self.cluster_maps, self.base_index, self.scissors_index,
            beta, self.normalization, self.output,
        )
        return replace(self, heatmaps=heatmaps, beta=check_beta(beta))

    def retarget(self, targets: Targets) -> ClusterCAMResult:
        """Explain other classes: new scores, base/scissors and heatmaps, no network work.

        Valid because the clusters do not depend on the target and the masked passes already
        gave every class's probability.
        """
        resolved = resolve_targets(targets, self.probabilities)
        scores = self.masked_probabilities.gather(
            2, resolved.view(-1, 1, 1).expand(-1, self.masked_probabilities.shape[1], 1)
        ).squeeze(2)
        base, scissors = scores.argmax(dim=1), scores.argmin(dim=1)
        heatmaps = cognition_heatmaps(
            self.masks, self.cluster_maps, base, scissors, self.beta, self.normalization, self.output
        )
        return replace(
            self, targets=resolved, scores=scores, base_index=base, scissors_index=scissors, heatmaps=heatmaps
        )

    def __getitem__(self, index: int) -> ClusterExplanation:
        q = self.cluster_maps.shape[1]
        return ClusterExplanation(
            **self._common(index),
            labels=self.labels[index],
            cluster_sizes=torch.bincount(self.labels[index], minlength=q).tolist(),
            cluster_maps=self.cluster_maps[index],
            masks=self.masks[index],
            scores=self.scores[index],
            base_index=int(self.base_index[index]),
            scissors_index=int(self.scissors_index[index]),
            beta=self.beta,
        )


class ClusterCAM(BaseCAM):
    """Cluster-CAM: cluster the layer's maps, score each cluster's mean map, combine best and worst.

    Args:
        model: ``nn.Module`` (eval mode) or zoo ``ModelSpec``.
        layer: target layer; default the spec's default layer.
        q: number of clusters ``Q`` (2 ≤ Q ≤ channels).
        beta: balance β of eq. 22, in ``[0, 1]``.
        clustering: ``"kmeans"`` or ``"spectral"``.
        seed: seed of the clustering (same seed, same labels).
        batch_size: masked inputs per forward pass.
        n_init: K-means restarts (also for the K-means step of spectral clustering).
        normalization / output: how eq. 22's inputs and result are scaled (module docstring).
        **clustering_options: spectral ``n_eigenvectors`` (K), ``sigma``, ``theta``,
            ``laplacian``, ``scale``; K-means ``max_iter``.
    """

    name = "clustercam"

    def __init__(
        self,
        model,
        layer: str | nn.Module | None = None,
        *,
        q: int = DEFAULT_Q,
        beta: float = DEFAULT_BETA,
        clustering: Literal["kmeans", "spectral"] = "kmeans",
        seed: int = 0,
        batch_size: int = 64,
        n_init: int = 4,
        normalization: Normalization = DEFAULT_NORMALIZATION,
        output: OutputScaling = "relu",
        **clustering_options,
    ):
        super().__init__(model, layer, batch_size=batch_size)
        if isinstance(q, bool) or int(q) != q or q < 2:
            raise ValueError(f"Q must be a whole number of clusters ≥ 2; got {q}.")
        if clustering not in ("kmeans", "spectral"):
            raise ValueError(f"clustering must be 'kmeans' or 'spectral'; got {clustering!r}.")
        allowed = _SPECTRAL_OPTIONS if clustering == "spectral" else _KMEANS_OPTIONS
        unknown = set(clustering_options) - allowed
        if unknown:
            raise TypeError(f"Unknown {clustering} option(s): {', '.join(sorted(unknown))}; allowed: {', '.join(sorted(allowed))}.")
        if normalization not in ("minmax", "max", "none"):
            raise ValueError(f"normalization must be 'minmax', 'max' or 'none'; got {normalization!r}.")
        if output not in ("relu", "minmax"):
            raise ValueError(f"output must be 'relu' or 'minmax'; got {output!r}.")
        self.q = int(q)
        self.beta = check_beta(beta)
        self.clustering = clustering
        self.seed = int(seed)
        self.n_init = int(n_init)
        self.normalization: Normalization = normalization
        self.output: OutputScaling = output
        self.clustering_options = dict(clustering_options)

    def cluster(self, maps: torch.Tensor) -> torch.Tensor:
        """Labels ``(N,)`` for one image's ``(N, h, w)`` feature maps."""
        points = maps.flatten(1).float()
        n = points.shape[0]
        if self.q > n:
            raise ValueError(f"Q = {self.q} is more than the {n} channels of layer '{self.layer_name}'; choose Q ≤ {n}.")
        if bool((points.amax(dim=1) == points.amin(dim=1)).all()):
            raise ValueError(
                f"Every feature map of layer '{self.layer_name}' is spatially constant for this "
                "image, so there is nothing to localise (is the image blank?)."
            )
        if self.clustering == "spectral":
            return spectral_clustering(points, self.q, seed=self.seed, n_init=self.n_init, **self.clustering_options).labels
        return kmeans(points, self.q, seed=self.seed, n_init=self.n_init, **self.clustering_options).labels

    def explain(self, state: ForwardState) -> Saliency:
        activations = state.activations
        batch, channels = activations.shape[:2]
        labels = torch.stack([self.cluster(maps) for maps in activations])
        cluster_maps = torch.zeros(batch, self.q, *activations.shape[2:], device=activations.device)
        counts = torch.zeros(batch, self.q, device=activations.device)
        for b in range(batch):  # eq. 18: mean of each cluster's maps
            cluster_maps[b].index_add_(0, labels[b], activations[b].float())
            counts[b].index_add_(0, labels[b], torch.ones(channels, device=activations.device))
        cluster_maps /= counts[:, :, None, None]
        masks = minmax(upsample(cluster_maps, tuple(state.inputs.shape[-2:])))
        probabilities = masked_probabilities(self.model, state.inputs, masks, batch_size=self.batch_size)
        scores = probabilities.gather(2, state.targets.view(-1, 1, 1).expand(-1, self.q, 1)).squeeze(2)
        base, scissors = scores.argmax(dim=1), scores.argmin(dim=1)
        heatmaps = cognition_heatmaps(masks, cluster_maps, base, scissors, self.beta, self.normalization, self.output)
        extras = {
            "labels": labels,
            "cluster_maps": cluster_maps,
            "masks": masks,
            "masked_probabilities": probabilities,
            "scores": scores,
            "base_index": base,
            "scissors_index": scissors,
        }
        return Saliency(heatmaps, forward_passes=batch * self.q, extras=extras)

    def finalize(self, maps: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        return maps  # already at the input size and scaled by cognition_heatmaps

    def make_result(self, state: ForwardState, **fields) -> ClusterCAMResult:
        extras = fields.pop("extras")
        return ClusterCAMResult(
            method=self.name,
            targets=state.targets,
            probabilities=state.logits.float().softmax(dim=1),
            beta=self.beta,
            normalization=self.normalization,
            output=self.output,
            **fields,
            **extras,
        )
