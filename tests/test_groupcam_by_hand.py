"""Group-CAM against a computation by hand on a tiny network (blur baseline, 70th-percentile
de-noising, the signed sum of group scores), independent of the library's helpers."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.ndimage import correlate1d

from clustercam.methods import GroupCAM

SIZE, CHANNELS, CLASSES = 32, 4, 3


def tiny_model(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, CHANNELS, 3, padding=1), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(), torch.nn.Linear(CHANNELS, CLASSES),
    ).double().eval()
    with torch.no_grad():
        model[4].weight.mul_(8.0)  # class scores that masking can move both ways
        model[4].weight[1].abs_()  # class 1: every channel counts for it, so no group map is empty
    return model


def blur_by_hand(image: np.ndarray, kernel: int, sigma: float) -> np.ndarray:
    """Separable Gaussian blur, reflection at the borders (torchvision's padding)."""
    offsets = np.arange(kernel) - kernel // 2
    weights = np.exp(-(offsets**2) / (2 * sigma**2))
    weights /= weights.sum()
    rows = correlate1d(image, weights, axis=-1, mode="mirror")
    return correlate1d(rows, weights, axis=-2, mode="mirror")


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


def group_cam_by_hand(model: torch.nn.Module, x: torch.Tensor, target: int) -> tuple[np.ndarray, np.ndarray]:
    conv, linear = model[0], model[4]
    with torch.no_grad():
        activations = torch.relu(conv(x))[0].numpy()  # (N, H, W)

    def probabilities(images: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return softmax(model(torch.from_numpy(images)).numpy())

    # 1. Grad-CAM weights: avg pool then linear, so ∂s_c/∂A_n(i, j) = W[c, n] / (H·W) everywhere
    weights = linear.weight[target].detach().numpy() / (SIZE * SIZE)
    weighted = weights[:, None, None] * activations
    # 2.–3. two groups of two channels; ReLU of each sum; values not above the 70th percentile → 0
    groups = [np.maximum(weighted[0:2].sum(0), 0), np.maximum(weighted[2:4].sum(0), 0)]
    masks = []
    for group in groups:
        group = np.where(group > np.percentile(group, 70), group, 0.0)
        masks.append((group - group.min()) / (group.max() - group.min()))
    # 4. blurred baseline: kernel 51 clipped to the largest odd size under 32, σ 50
    image = x[0].numpy()
    baseline = blur_by_hand(image, 31, 50.0)
    # 5. score of each group against the baseline's own score
    mixed = np.stack([image * m + baseline * (1 - m) for m in masks])
    scores = probabilities(mixed)[:, target] - probabilities(baseline[None])[0, target]
    # 6. signed sum, rectified, min–max scaled
    saliency = np.maximum(sum(s * m for s, m in zip(scores, masks, strict=True)), 0)
    return (saliency - saliency.min()) / (saliency.max() - saliency.min()), scores


@pytest.mark.parametrize("seed", [1, 2])
def test_groupcam_equals_the_computation_by_hand(seed):
    model = tiny_model(seed)
    x = torch.rand(1, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * 2 - 1
    target = 1
    expected, scores = group_cam_by_hand(model, x, target)
    result = GroupCAM(model, "1", groups=2)(x, target)
    assert np.allclose(result.heatmaps[0].numpy(), expected, atol=1e-6)
    assert np.allclose(result.extras["group_scores"][0].numpy(), scores, atol=1e-9)
    assert result.forward_passes == 1 + 1 + 2 and result.backward_passes == 1


def colour_model() -> torch.nn.Module:
    """Channels 0–1 see red, 2–3 green; class 1 likes red a lot and green a little, class 2 green."""
    model = tiny_model(0)
    with torch.no_grad():
        model[0].weight.zero_()
        model[0].bias.zero_()
        for channel, (colour, gain) in enumerate(((0, 1.0), (0, 0.5), (1, 1.0), (1, 0.5))):
            model[0].weight[channel, colour, 1, 1] = gain
        model[4].weight.copy_(torch.tensor([[0.0, 0, 0, 0], [4, 4, 0.5, 0.5], [0, 0, 8, 8]], dtype=torch.float64))
        model[4].bias.zero_()
    return model


def test_a_negative_group_score_is_subtracted():
    """The signed sum: the green group lowers class 1's probability, so its mask is subtracted."""
    generator = torch.Generator().manual_seed(0)
    x = 0.2 * torch.rand(1, 3, SIZE, SIZE, generator=generator, dtype=torch.float64)
    x[0, 0, :, : SIZE // 2] += 1.0  # red on the left
    x[0, 1, :, SIZE // 2 :] += 1.0  # green on the right
    model = colour_model()
    expected, scores = group_cam_by_hand(model, x, 1)
    assert scores[0] > 0 > scores[1]
    heatmap = GroupCAM(model, "1", groups=2)(x, 1).heatmaps[0].numpy()
    assert np.allclose(heatmap, expected, atol=1e-6)
    assert heatmap[:, SIZE // 2 + 2 :].max() == 0  # where only the subtracted group fires
    assert heatmap[:, : SIZE // 2].max() == pytest.approx(1.0)
