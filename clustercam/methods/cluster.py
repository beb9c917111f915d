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
7. heatmap ``β·B − (1 − β)·S`` (eq. 22), or one of the variants of
   :mod:`clustercam.methods.cognition` (``combination``), from the cluster maps normalised by
   ``normalization`` and scaled into ``[0, 1]`` by ``output`` (defaults: :data:`DEFAULTS`).

**Presets** (:mod:`clustercam.methods.presets`) name whole configurations, chosen on the tuning
part of the evaluation photographs by the rules of ``docs/protocol.md``. The default, ``"eq22"``,
is eq. 22 itself (K-means, the maps put on one scale, the negative part cut), so that β moves the
heatmap from the most faithful end (β = 1, the base alone) to the class-discriminative one; the
variants (``"gated"``, ``"weighted"``) are presets named for what they compute.

The result carries its combination (:attr:`ClusterCAMResult.cognition`): its
:attr:`Cognition.formula` and whether the paper has it (:attr:`Cognition.in_paper`) are read
from the explanation itself, never assumed from a preset's name.

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

from dataclasses import dataclass, field, replace
from typing import Literal

import torch
from torch import nn

from ..clustering import cluster_quality, kmeans, spectral_clustering
from ..maps import masked_probabilities, minmax, upsample
from .base import BaseCAM, CAMResult, Explanation, ForwardState, Saliency, Targets, resolve_targets
from .cognition import (
    COMBINATIONS,
    FORMULAS,
    NORMALIZATION_WORDS,
    NORMALIZATIONS,
    OUTPUT_WORDS,
    OUTPUTS,
    Combination,
    Normalization,
    OutputScaling,
    check_beta,
    check_choice,
    cognition_heatmaps,
)
from .presets import DEFAULT_PRESET, PRESETS, preset_name, preset_options

Clustering = Literal["kmeans", "spectral"]
_SPECTRAL_OPTIONS = {"n_eigenvectors", "sigma", "theta", "laplacian", "scale", "similarity", "normalize_rows"}
_KMEANS_OPTIONS = {"max_iter"}

DEFAULTS: dict = PRESETS[DEFAULT_PRESET]
DEFAULT_Q: int = DEFAULTS["q"]
DEFAULT_BETA: float = DEFAULTS["beta"]
DEFAULT_NORMALIZATION: Normalization = DEFAULTS["normalization"]
#: β values of :meth:`ClusterCAM.beta_tradeoff` when none are given.
BETA_GRID: tuple[float, ...] = tuple(round(0.1 * i, 1) for i in range(11))
#: A relative change of the heatmap below this between β = 0.5 and β = 1 (eq. 22: 0.14–0.55 on the
#: example photographs; the gated variant: 0.02–0.16)
#: (:meth:`ClusterCAMResult.beta_effect`) means β barely acts on that explanation.
INERT_BETA = 0.10


@dataclass(frozen=True)
class Cognition:
    """How scored cluster maps become a heatmap (:func:`~clustercam.methods.cognition.cognition_heatmaps`)."""

    beta: float = DEFAULT_BETA
    normalization: Normalization = DEFAULT_NORMALIZATION
    output: OutputScaling = DEFAULTS["output"]
    combination: Combination = DEFAULTS["combination"]

    def __post_init__(self) -> None:
        object.__setattr__(self, "beta", check_beta(self.beta))
        check_choice(self.normalization, NORMALIZATIONS, "normalization")
        check_choice(self.output, OUTPUTS, "output")
        check_choice(self.combination, COMBINATIONS, "combination")

    def heatmaps(self, masks: torch.Tensor, cluster_maps: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        return cognition_heatmaps(masks, cluster_maps, scores, self.beta, self.normalization, self.output, self.combination)

    @property
    def in_paper(self) -> bool:
        """Whether the combination is the paper's eq. 22 (``difference``) rather than a variant."""
        return FORMULAS[self.combination][1]

    @property
    def formula(self) -> str:
        """The combination as it is computed, e.g. ``"β·B − (1 − β)·S (eq. 22)"`` or
        ``"B ⊙ (1 − (1 − β)·S) (a variant, not in the paper)"``."""
        text, in_paper = FORMULAS[self.combination]
        return f"{text} ({'eq. 22' if in_paper else 'a variant, not in the paper'})"

    def describe(self) -> str:
        """The formula with what ``B`` and ``S`` are and how the result is scaled, in words."""
        return (f"{self.formula}; B, S: {NORMALIZATION_WORDS[self.normalization]}; "
                f"result: {OUTPUT_WORDS[self.output]}")

    def as_dict(self) -> dict:
        """What a summary records of the combination (``summary.json``)."""
        return {"beta": self.beta, "combination": self.combination, "normalization": self.normalization,
                "output": self.output, "formula": self.formula, "in_paper": self.in_paper}


class CognitionSettings:
    """``beta``, ``normalization``, ``output`` and ``combination`` read from ``self.cognition``."""

    cognition: Cognition

    @property
    def beta(self) -> float:
        return self.cognition.beta

    @property
    def normalization(self) -> str:
        return self.cognition.normalization

    @property
    def output(self) -> str:
        return self.cognition.output

    @property
    def combination(self) -> str:
        return self.cognition.combination


@dataclass(frozen=True)
class BetaTradeoff:
    """The explained class's probability on ``X ∘ H(β)`` across β (:meth:`ClusterCAM.beta_tradeoff`).

    Attributes:
        betas: the β values, in the order given.
        kept: ``(B, len(betas))`` probability of the explained class on each masked input.
        full: ``(B,)`` its probability on the unmasked input (``Y`` of the paper's eq. 23).
    """

    betas: tuple[float, ...]
    kept: torch.Tensor
    full: torch.Tensor

    def at(self, beta: float, image: int = 0) -> float:
        """The kept probability at one of :attr:`betas`."""
        for index, value in enumerate(self.betas):
            if abs(value - beta) < 1e-9:
                return float(self.kept[image, index])
        raise KeyError(f"β = {beta} is not among {self.betas}.")


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
    cognition: Cognition | None = None


@dataclass
class ClusterCAMResult(CognitionSettings, CAMResult):
    """Cluster-CAM on a batch: the heatmaps plus every intermediate, per image.

    Attributes (batched, ``B`` first):
        labels: ``(B, N)`` cluster of each channel.
        cluster_maps: ``(B, Q, h, w)`` eq. 18, at the layer's resolution.
        masks: ``(B, Q, H, W)`` ``H_q``, upsampled and min–max scaled to ``[0, 1]``.
        masked_probabilities: ``(B, Q, classes)`` probabilities of every masked input.
        scores: ``(B, Q)`` eq. 19, the target's probability for each masked input.
        base_index / scissors_index: ``(B,)`` eqs. 20–21.
        cognition: β, normalisation, output scaling and combination of the heatmaps.
        activations: ``(B, N, h, w)`` the clustered feature maps ``F_n``.
    """

    activations: torch.Tensor | None = None
    labels: torch.Tensor | None = None
    cluster_maps: torch.Tensor | None = None
    masks: torch.Tensor | None = None
    masked_probabilities: torch.Tensor | None = None
    scores: torch.Tensor | None = None
    base_index: torch.Tensor | None = None
    scissors_index: torch.Tensor | None = None
    cognition: Cognition = field(default_factory=Cognition)

    def recombine(self, **changes) -> ClusterCAMResult:
        """The same explanation with other ``beta``/``normalization``/``output``/``combination``
        (the heatmap step only; no network work)."""
        cognition = replace(self.cognition, **changes)
        return replace(self, cognition=cognition, heatmaps=cognition.heatmaps(self.masks, self.cluster_maps, self.scores))

    def reweight(self, beta: float) -> ClusterCAMResult:
        """The same explanation with another β (no network work)."""
        return self.recombine(beta=beta)

    def beta_effect(self, low: float = 0.5) -> torch.Tensor:
        """``(B,)`` how much β acts on each explanation: the relative change
        ``mean|H(low) − H(1)| / mean|H(1)|`` between the heatmap at β = ``low`` and at β = 1
        (0 when the map at β = 1 is empty). Below :data:`INERT_BETA`, β barely acts."""
        top = self.recombine(beta=1.0).heatmaps.float()
        bottom = self.recombine(beta=low).heatmaps.float()
        scale = top.abs().mean(dim=(-2, -1))
        change = (bottom - top).abs().mean(dim=(-2, -1))
        return torch.where(scale > 0, change / scale.clamp_min(torch.finfo(torch.float32).tiny), torch.zeros_like(scale))

    def retarget(self, targets: Targets) -> ClusterCAMResult:
        """Explain other classes: new scores, base/scissors and heatmaps, no network work.

        Valid because the clusters do not depend on the target and the masked passes already
        gave every class's probability.
        """
        resolved = resolve_targets(targets, self.probabilities)
        scores = self.masked_probabilities.gather(
            2, resolved.view(-1, 1, 1).expand(-1, self.masked_probabilities.shape[1], 1)
        ).squeeze(2)
        return replace(
            self, targets=resolved, scores=scores, base_index=scores.argmax(dim=1),
            scissors_index=scores.argmin(dim=1), heatmaps=self.cognition.heatmaps(self.masks, self.cluster_maps, scores),
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
            cognition=self.cognition,
        )


class ClusterCAM(CognitionSettings, BaseCAM):
    """Cluster-CAM: cluster the layer's maps, score each cluster's mean map, combine best and worst.

    Args:
        model: ``nn.Module`` (eval mode) or zoo ``ModelSpec``.
        layer: target layer; default the spec's default layer.
        preset: a name in :data:`PRESETS` (default :data:`DEFAULT_PRESET`); the arguments below
            that are given override it.
        q: number of clusters ``Q`` (2 ≤ Q ≤ channels).
        beta: balance β of eq. 22, in ``[0, 1]``.
        clustering: ``"kmeans"`` or ``"spectral"``.
        normalization / output / combination: how the scored cluster maps become the heatmap
            (:mod:`clustercam.methods.cognition`).
        seed: seed of the clustering (same seed, same labels).
        batch_size: masked inputs per forward pass.
        n_init: K-means restarts (also for the K-means step of spectral clustering).
        **clustering_options: spectral ``n_eigenvectors`` (K), ``sigma``, ``theta``,
            ``laplacian``, ``similarity``, ``normalize_rows``, ``scale``; K-means ``max_iter``.
    """

    name = "clustercam"
    title = "Cluster-CAM"

    @classmethod
    def option_names(cls) -> tuple[str, ...]:
        """The constructor's keyword options and the clustering options it passes on."""
        return (*super().option_names(), *sorted(_SPECTRAL_OPTIONS | _KMEANS_OPTIONS))

    def __init__(
        self,
        model,
        layer: str | nn.Module | None = None,
        *,
        preset: str | None = None,
        q: int | None = None,
        beta: float | None = None,
        clustering: Clustering | None = None,
        normalization: Normalization | None = None,
        output: OutputScaling | None = None,
        combination: Combination | None = None,
        seed: int = 0,
        batch_size: int = 64,
        n_init: int = 4,
        **clustering_options,
    ):
        super().__init__(model, layer, batch_size=batch_size)
        options = preset_options(preset)
        given = {"q": q, "beta": beta, "clustering": clustering, "normalization": normalization,
                 "output": output, "combination": combination}
        options.update({key: value for key, value in given.items() if value is not None})
        clustering, q = options.pop("clustering"), options.pop("q")
        if clustering not in ("kmeans", "spectral"):
            raise ValueError(f"clustering must be 'kmeans' or 'spectral'; got {clustering!r}.")
        if isinstance(q, bool) or int(q) != q or q < 2:
            raise ValueError(f"Q must be a whole number of clusters ≥ 2; got {q}.")
        self.cognition = Cognition(**{key: options.pop(key) for key in ("beta", "normalization", "output", "combination")})
        allowed = _SPECTRAL_OPTIONS if clustering == "spectral" else _KMEANS_OPTIONS
        unknown = set(clustering_options) - allowed
        if unknown:
            raise TypeError(f"Unknown {clustering} option(s): {', '.join(sorted(unknown))}; allowed: {', '.join(sorted(allowed))}.")
        self.preset = preset_name(preset)
        self.q = int(q)
        self.clustering = clustering
        self.seed = int(seed)
        self.n_init = int(n_init)
        # the preset's own clustering options apply where its clustering is used
        self.clustering_options = {**{k: v for k, v in options.items() if k in allowed}, **clustering_options}

    @classmethod
    def planned_passes(cls, channels: int, **options) -> tuple[int, int]:
        """``1 + Q`` forward passes (Q given or the preset's), no backward."""
        q = options.get("q")
        if q is None:
            q = preset_options(options.get("preset"))["q"]
        return 1 + int(q), 0

    @torch.inference_mode()
    def beta_tradeoff(
        self, inputs: torch.Tensor, result: ClusterCAMResult, betas: tuple[float, ...] | list[float] = BETA_GRID,
    ) -> BetaTradeoff:
        """What each β costs and buys: the network's probability of the explained class on
        ``X ∘ H(β)`` for every β in ``betas`` (one batched pass of ``B·len(betas)`` masked
        inputs; ``inputs`` are the ones ``result`` explained), beside its probability on ``X``.

        High kept probability: the map keeps what the network needs (faithful, the paper's
        average drop); lower β cuts the scissors away and makes the map sharper and more
        class-specific, usually at some cost in kept probability.
        """
        betas = tuple(check_beta(b) for b in betas)
        if not betas:
            raise ValueError("Give at least one β.")
        heatmaps = torch.stack([result.reweight(b).heatmaps for b in betas], dim=1)
        probabilities = masked_probabilities(self.network, inputs, heatmaps, batch_size=self.batch_size)
        targets = result.targets.to(probabilities.device)
        kept = probabilities.gather(2, targets.view(-1, 1, 1).expand(-1, len(betas), 1)).squeeze(2)
        full = result.probabilities.gather(1, result.targets.view(-1, 1)).squeeze(1)
        return BetaTradeoff(betas=betas, kept=kept.float().cpu(), full=full.float().cpu())

    def cluster(self, maps: torch.Tensor, q: int | None = None) -> torch.Tensor:
        """Labels ``(N,)`` for one image's ``(N, h, w)`` feature maps (into ``q`` clusters, default Q)."""
        q = self.q if q is None else int(q)
        points = maps.flatten(1).float()
        n = points.shape[0]
        if q > n:
            raise ValueError(f"Q = {q} is more than the {n} channels of layer '{self.layer_name}'; choose Q ≤ {n}.")
        if bool((points.amax(dim=1) == points.amin(dim=1)).all()):
            raise ValueError(
                f"Every feature map of layer '{self.layer_name}' is spatially constant for this "
                "image, so there is nothing to localise (is the image blank?)."
            )
        if self.clustering == "spectral":
            return spectral_clustering(
                points, q, seed=self.seed, n_init=self.n_init, map_shape=tuple(maps.shape[-2:]),
                **self.clustering_options,
            ).labels
        return kmeans(points, q, seed=self.seed, n_init=self.n_init, **self.clustering_options).labels

    def quality_by_q(self, maps: torch.Tensor, qs: range | list[int] = range(2, 9)) -> dict[int, dict[str, float]]:
        """Cluster quality (silhouette, Calinski–Harabasz; :func:`~clustercam.clustering.cluster_quality`)
        of one image's ``(N, h, w)`` maps clustered as this method clusters them, for each ``Q`` in ``qs``
        up to the number of distinct maps."""
        points = maps.flatten(1).float()
        distinct = torch.unique(points, dim=0).shape[0]
        return {q: cluster_quality(points, self.cluster(maps, q)) for q in qs if 2 <= q <= min(distinct, points.shape[0] - 1)}

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
        probabilities = masked_probabilities(self.network, state.inputs, masks, batch_size=self.batch_size)
        scores = probabilities.gather(2, state.targets.view(-1, 1, 1).expand(-1, self.q, 1)).squeeze(2)
        extras = {
            "activations": activations,
            "labels": labels,
            "cluster_maps": cluster_maps,
            "masks": masks,
            "masked_probabilities": probabilities,
            "scores": scores,
            "base_index": scores.argmax(dim=1),
            "scissors_index": scores.argmin(dim=1),
        }
        heatmaps = self.cognition.heatmaps(masks, cluster_maps, scores)
        return Saliency(heatmaps, forward_passes=batch * self.q, extras=extras)

    def finalize(self, maps: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        return maps  # already at the input size and scaled by cognition_heatmaps

    def make_result(self, state: ForwardState, **fields) -> ClusterCAMResult:
        extras = fields.pop("extras")
        return ClusterCAMResult(
            method=self.name,
            targets=state.targets,
            probabilities=state.logits.float().softmax(dim=1),
            cognition=self.cognition,
            **fields,
            **extras,
        )
