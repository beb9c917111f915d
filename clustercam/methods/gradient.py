"""Gradient-based baselines of the CAM family (Feng et al., §2.1, eqs. 3–6).

Every method here is an instance of eq. 1, ``M_c = ReLU(Σ_n α_n^c F_n)``; they differ only in the
channel weights ``α``, computed from ``g = ∂s_c/∂F``: the gradient of the target class's *logit*
``s_c`` with respect to the target layer's feature maps ``F``, back-propagated through the layers
after the target layer only (:meth:`~clustercam.methods.base.BaseCAM.forward`). The logit, not the
softmax probability, is differentiated, as in pytorch-grad-cam and the original papers.

Network cost per image: one forward and one backward pass, except Smooth Grad-CAM++, which adds
``M`` noisy copies of the input (``1 + M`` forward, ``M`` backward passes).
"""

from __future__ import annotations

import torch
from torch import nn

from ..hooks import LayerCapture
from .base import ChannelWeights, ForwardState, WeightedCAM

#: Guards the division of eq. 4 where the gradients vanish (pytorch-grad-cam's value).
GRADCAM_PP_EPS = 1e-6
#: Guards the division of eq. 6 for all-zero maps (pytorch-grad-cam's value).
XGRADCAM_EPS = 1e-7


def spatial_sum(maps: torch.Tensor) -> torch.Tensor:
    """``Σ_{i,j}`` over the last two dimensions: ``(B, N, h, w) → (B, N)``."""
    return maps.sum(dim=(-2, -1))


def gradcam_plus_plus_weights(
    activations: torch.Tensor,
    first: torch.Tensor,
    second: torch.Tensor,
    third: torch.Tensor,
    eps: float = GRADCAM_PP_EPS,
) -> torch.Tensor:
    """Grad-CAM++ channel weights from the first three derivatives of the class score (eqs. 4–5).

    The closed form of Chattopadhyay et al. (their eq. 19) for an exponential score
    ``S = exp(s_c)``, where the second and third derivatives are powers of the first
    (``D2 = g²``, ``D3 = g³``), as pytorch-grad-cam computes it::

        a_ij = D2_ij / (2·D2_ij + Σ_ab F(a,b) · D3_ij + eps),   a_ij = 0 where D1_ij = 0
        α_n  = Σ_ij ReLU(D1_ij) · a_ij

    Args:
        activations: ``(B, N, h, w)`` feature maps ``F``.
        first, second, third: ``(B, N, h, w)`` ``D1, D2, D3``: for Grad-CAM++ ``g, g², g³`` of one
            input; for Smooth Grad-CAM++ (eq. 5) each averaged over the noisy copies.

    Returns:
        ``(B, N)`` weights ``α``.
    """
    activation_sums = spatial_sum(activations)[..., None, None]
    alpha = second / (2 * second + activation_sums * third + eps)
    alpha = torch.where(first != 0, alpha, torch.zeros_like(alpha))
    return spatial_sum(first.clamp_min(0) * alpha)


def _gradients(state: ForwardState) -> torch.Tensor:
    if state.gradients is None:
        raise RuntimeError("This method needs the gradients of the target layer (needs_gradients).")
    return state.gradients.float()


class GradCAM(WeightedCAM):
    """Grad-CAM (Selvaraju et al.; eq. 3): ``α_n = mean_ij ∂s_c/∂F_n(i, j)``.

    Eq. 3 writes a sum over the ``h·w`` positions; the mean (as in the Grad-CAM paper and
    pytorch-grad-cam) differs by the constant factor ``h·w``, which the final ``[0, 1]`` scaling
    removes. Cost: 1 forward + 1 backward pass per image.
    """

    name = "gradcam"
    title = "Grad-CAM"
    needs_gradients = True

    def weights(self, state: ForwardState) -> ChannelWeights:
        return ChannelWeights(_gradients(state).mean(dim=(-2, -1)))


class GradCAMPlusPlus(WeightedCAM):
    """Grad-CAM++ (Chattopadhyay et al.; eq. 4) in the closed form of
    :func:`gradcam_plus_plus_weights` with ``D1, D2, D3 = g, g², g³``.

    Cost: 1 forward + 1 backward pass per image.
    """

    name = "gradcam++"
    title = "Grad-CAM++"
    needs_gradients = True

    def weights(self, state: ForwardState) -> ChannelWeights:
        gradients = _gradients(state)
        squared = gradients.pow(2)
        alpha = gradcam_plus_plus_weights(
            state.activations.float(), gradients, squared, squared * gradients
        )
        return ChannelWeights(alpha)


class SmoothGradCAMPlusPlus(WeightedCAM):
    """Smooth Grad-CAM++ (Omeiza et al.; eq. 5): Grad-CAM++ with ``D1, D2, D3`` averaged over ``M``
    noisy copies of the input.

    The copies ``X + ε_m``, ``ε_m ~ N(0, σ²)`` with ``σ = noise_level · (max X − min X)`` per image,
    are drawn from a generator seeded with ``seed`` (same seed, same map) and pushed through the
    network in one batched forward and backward pass (split only by ``batch_size``). For each copy
    ``g_m = ∂s_c/∂F`` of the *clean* image's target class; ``D1, D2, D3`` are the means of
    ``g_m, g_m², g_m³`` over the copies and ``F`` in eq. 5 is the clean image's feature maps.

    Args:
        n_samples: ``M``, the number of noisy copies (default 16).
        noise_level: ``σ`` as a fraction of the input's value range (default 0.15).
        seed: seed of the noise.

    Cost per image: ``1 + M`` forward passes (the clean one needs no gradient) and ``M`` backward.
    """

    name = "smoothgradcam++"
    title = "Smooth Grad-CAM++"
    needs_gradients = False  # the clean pass only fixes F and the target class

    def __init__(
        self,
        model,
        layer: str | nn.Module | None = None,
        *,
        n_samples: int = 16,
        noise_level: float = 0.15,
        seed: int = 0,
        batch_size: int = 64,
    ):
        super().__init__(model, layer, batch_size=batch_size)
        if isinstance(n_samples, bool) or int(n_samples) != n_samples or n_samples < 1:
            raise ValueError(f"n_samples must be a whole number ≥ 1; got {n_samples}.")
        if not noise_level >= 0:
            raise ValueError(f"noise_level must be ≥ 0; got {noise_level}.")
        self.n_samples = int(n_samples)
        self.noise_level = float(noise_level)
        self.seed = int(seed)

    @classmethod
    def planned_passes(cls, channels: int, **options) -> tuple[int, int]:
        """``1 + M`` forward and ``M`` backward passes."""
        samples = int(options.get("n_samples", 16))
        return 1 + samples, samples

    def noisy_copies(self, inputs: torch.Tensor) -> torch.Tensor:
        """``(B·M, C, H, W)``: ``M`` consecutive noisy copies of each image."""
        generator = torch.Generator(device=inputs.device).manual_seed(self.seed)
        copies = inputs.repeat_interleave(self.n_samples, dim=0)
        low = inputs.flatten(1).amin(dim=1)
        high = inputs.flatten(1).amax(dim=1)
        sigma = (self.noise_level * (high - low)).repeat_interleave(self.n_samples)
        noise = torch.randn(copies.shape, generator=generator, device=inputs.device, dtype=inputs.dtype)
        return copies + noise * sigma.view(-1, 1, 1, 1)

    def noisy_gradients(self, state: ForwardState) -> torch.Tensor:
        """``(B, M, N, h, w)``: ``∂s_c/∂F`` of every noisy copy, for the clean image's class ``c``."""
        copies = self.noisy_copies(state.inputs)
        classes = state.targets.repeat_interleave(self.n_samples)
        chunks = []
        for start in range(0, copies.shape[0], self.batch_size):
            rows = slice(start, start + self.batch_size)
            with LayerCapture(self.model, self.layer, differentiable=True, input_shape=tuple(copies.shape[-2:])) as capture, torch.enable_grad():
                logits = self.network.eager(copies[rows])
                chunks.append(capture.gradients(logits.gather(1, classes[rows, None])).float())
        gradients = torch.cat(chunks)
        return gradients.view(state.inputs.shape[0], self.n_samples, *gradients.shape[1:])

    def weights(self, state: ForwardState) -> ChannelWeights:
        gradients = self.noisy_gradients(state)
        first = gradients.mean(dim=1)
        second = gradients.pow(2).mean(dim=1)
        third = gradients.pow(3).mean(dim=1)
        alpha = gradcam_plus_plus_weights(state.activations.float(), first, second, third)
        passes = state.inputs.shape[0] * self.n_samples
        return ChannelWeights(alpha, passes, passes)


class XGradCAM(WeightedCAM):
    """XGrad-CAM (Fu et al.; eq. 6): ``α_n = Σ_ij F_n(i,j) / (Σ_ab F_n(a,b) + eps) · ∂s_c/∂F_n(i,j)``.

    Cost: 1 forward + 1 backward pass per image.
    """

    name = "xgradcam"
    title = "XGrad-CAM"
    needs_gradients = True

    def weights(self, state: ForwardState) -> ChannelWeights:
        activations = state.activations.float()
        normalised = activations / (spatial_sum(activations)[..., None, None] + XGRADCAM_EPS)
        return ChannelWeights(spatial_sum(normalised * _gradients(state)))
