"""Group-CAM (Zhang, Rao & Yang 2021, arXiv:2103.13859), following their official implementation.

The paper this library implements (Feng et al.) compares against Group-CAM as the earlier attempt
to cut the forward passes of gradient-free CAMs by splitting the feature maps into groups
*without* any regard to their semantics (§1), the motivation for Cluster-CAM's clustering
(eqs. 10–18). For each image:

1. Grad-CAM's channel weights ``w_n = mean_ij ∂s_c/∂F_n(i, j)`` (eq. 3, one backward pass);
2. the weighted maps ``w_n F_n`` are split into ``G`` contiguous channel groups (default 32; fewer
   when there are fewer channels; ``torch.tensor_split``, which equals the official
   ``torch.chunk`` whenever ``G`` divides the channel count);
3. each group map ``M_g = ReLU(Σ_{n∈g} w_n F_n)`` is de-noised as in the official code: values not
   above the group map's ``denoise_percentile``-th percentile (70) are set to 0
   (``denoise_percentile=None`` skips this); it is upsampled bilinearly to the input size and
   min–max scaled to ``[0, 1]``; groups whose map is constant are skipped (as officially);
4. the blurred baseline ``X_b`` is a Gaussian blur of the (preprocessed) input, kernel 51 and σ 50
   (the kernel shrinks for inputs under 26 pixels, where reflection padding needs it);
5. ``score_g = p_c(X ∘ M_g + X_b ∘ (1 − M_g)) − p_c(X_b)`` with ``p_c`` the softmax probability
   of the target, all groups and ``X_b`` itself (the all-zero mask) in one batched pass
   (:func:`clustercam.maps.masked_probabilities` with ``baseline=X_b``);
6. the saliency map is ``ReLU(Σ_g score_g · M_g)``, then min–max scaled.

As in the official code the scores enter the sum with their sign (a group whose information
*lowers* the class probability is subtracted); only the final sum is rectified.

Network cost per image: ``1 + 1 + G'`` forward passes (the original, the blurred baseline, the
``G' ≤ G`` non-constant groups; ``extras["groups_scored"]`` lists ``G'``) and 1 backward pass.
"""

from __future__ import annotations

import torch
from torch import nn
from torchvision.transforms.functional import gaussian_blur

from ..maps import masked_probabilities, minmax, upsample
from .base import BaseCAM, ForwardState, Saliency

BLUR_KERNEL = 51
BLUR_SIGMA = 50.0


def blurred(inputs: torch.Tensor, kernel: int = BLUR_KERNEL, sigma: float = BLUR_SIGMA) -> torch.Tensor:
    """Group-CAM's baseline: a Gaussian blur of each image (kernel clipped to the image size)."""
    limit = min(inputs.shape[-2], inputs.shape[-1])
    kernel = min(kernel, 2 * ((limit - 1) // 2) + 1)  # reflection padding needs kernel // 2 < size
    if kernel < 3:
        return inputs.clone()
    return gaussian_blur(inputs, kernel_size=[kernel, kernel], sigma=[sigma, sigma])


def group_maps(weighted: torch.Tensor, groups: int, denoise_percentile: float | None) -> torch.Tensor:
    """``(G, h, w)`` de-noised group maps of one image's ``(N, h, w)`` weighted feature maps."""
    maps = torch.stack([part.sum(dim=0) for part in torch.tensor_split(weighted, groups)]).clamp_min(0)
    if denoise_percentile is None:
        return maps
    threshold = torch.quantile(maps.flatten(1), denoise_percentile / 100.0, dim=1)
    return torch.where(maps > threshold[:, None, None], maps, torch.zeros_like(maps))


class GroupCAM(BaseCAM):
    """Group-CAM: Grad-CAM-weighted channel groups, each scored by a blur-baseline masked pass.

    Args:
        model: ``nn.Module`` (eval mode) or zoo ``ModelSpec``.
        layer: target layer; default the spec's default layer.
        groups: ``G`` (default 32; capped at the channel count).
        denoise_percentile: the official de-noising threshold (70), or ``None``.
        blur_kernel / blur_sigma: the Gaussian blur of the baseline (51, 50).
        batch_size: masked inputs per forward pass.
    """

    name = "groupcam"
    title = "Group-CAM"
    needs_gradients = True

    def __init__(
        self,
        model,
        layer: str | nn.Module | None = None,
        *,
        groups: int = 32,
        denoise_percentile: float | None = 70.0,
        blur_kernel: int = BLUR_KERNEL,
        blur_sigma: float = BLUR_SIGMA,
        batch_size: int = 64,
    ):
        super().__init__(model, layer, batch_size=batch_size)
        if isinstance(groups, bool) or int(groups) != groups or groups < 1:
            raise ValueError(f"groups must be a whole number ≥ 1; got {groups}.")
        if denoise_percentile is not None and not 0 <= denoise_percentile < 100:
            raise ValueError(f"denoise_percentile must be in [0, 100) or None; got {denoise_percentile}.")
        if int(blur_kernel) != blur_kernel or blur_kernel < 1 or blur_kernel % 2 == 0:
            raise ValueError(f"blur_kernel must be an odd whole number; got {blur_kernel}.")
        self.groups = int(groups)
        self.denoise_percentile = denoise_percentile
        self.blur_kernel = int(blur_kernel)
        self.blur_sigma = float(blur_sigma)

    @classmethod
    def planned_passes(cls, channels: int, **options) -> tuple[int, int]:
        """``2 + G'`` forward (the original, the blurred baseline, ``G' = min(G, N)`` groups; an
        upper bound, constant group maps are skipped) and one backward pass."""
        return 2 + min(int(options.get("groups", 32)), int(channels)), 1

    def explain(self, state: ForwardState) -> Saliency:
        if state.gradients is None:
            raise RuntimeError("Group-CAM needs the gradients of the target layer.")
        activations = state.activations.float()
        weighted = state.gradients.float().mean(dim=(-2, -1))[..., None, None] * activations
        groups = min(self.groups, activations.shape[1])
        size = (state.inputs.shape[-2], state.inputs.shape[-1])
        baseline = blurred(state.inputs, self.blur_kernel, self.blur_sigma)
        saliency, scored, all_scores = [], [], []
        for b in range(state.inputs.shape[0]):
            maps = upsample(group_maps(weighted[b], groups, self.denoise_percentile), size)
            keep = maps.flatten(1).amax(dim=1) > maps.flatten(1).amin(dim=1)
            masks = minmax(maps[keep])
            with_baseline = torch.cat([masks, masks.new_zeros(1, *size)])  # last row: X_b itself
            probabilities = masked_probabilities(
                self.network, state.inputs[b : b + 1], with_baseline[None],
                batch_size=self.batch_size, baseline=baseline[b : b + 1],
            )[0, :, state.targets[b]]
            scores = probabilities[:-1] - probabilities[-1]
            saliency.append(torch.einsum("g,ghw->hw", scores, masks).clamp_min(0))
            scored.append(int(keep.sum()))
            all_scores.append(torch.zeros(groups, device=scores.device).masked_scatter(keep, scores))
        extras = {"groups_scored": scored, "group_scores": torch.stack(all_scores), "baseline": baseline}
        return Saliency(torch.stack(saliency), sum(scored) + len(scored), 0, extras)

    def finalize(self, maps: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """Already at the input size and rectified: min–max scaling, as officially."""
        return minmax(upsample(maps, size))
