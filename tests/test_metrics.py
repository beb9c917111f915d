"""Faithfulness metrics: hand-computed values on tiny classifiers, then the real embedded model."""

from __future__ import annotations

import math

import pytest
import torch
from PIL import Image
from torch import nn

import clustercam
from clustercam import metrics


class LinearClassifier(nn.Module):
    """Two classes on a 1×1×4×4 input: logits ``(w·x, 0)``, so ``P(class 0) = sigmoid(w·x)``.

    ``w = ln 9 / 8`` on the left two columns and ``−ln 3 / 8`` on the right two. On an all-ones
    image ``w·x = ln 9 − ln 3 = ln 3`` → ``P = 3/4``; masked to zero → ``P = 1/2``; with only the
    left half kept → ``w·x = ln 9`` → ``P = 9/10``.
    """

    def __init__(self) -> None:
        super().__init__()
        weight = torch.empty(4, 4)
        weight[:, :2] = math.log(9) / 8
        weight[:, 2:] = -math.log(3) / 8
        self.register_buffer("weight", weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = (x[:, 0] * self.weight).sum(dim=(1, 2))
        return torch.stack([z, torch.zeros_like(z)], dim=1)


class LinearProbability(nn.Module):
    """Logits ``(ln s, ln(1 − s))`` with ``s = Σ w·x``: the softmax *is* ``(s, 1 − s)``, linear in the pixels.

    ``w = 1/4`` on the top-left 2×2 pixels and 0 elsewhere, so on an all-ones image ``s = 1`` and
    every one of those four pixels removed costs exactly 0.25.
    """

    def __init__(self) -> None:
        super().__init__()
        weight = torch.zeros(4, 4)
        weight[:2, :2] = 0.25
        self.register_buffer("weight", weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = (x[:, 0] * self.weight).sum(dim=(1, 2)).clamp(1e-7, 1 - 1e-7)
        return torch.stack([s.log(), (1 - s).log()], dim=1)


def ones(batch: int = 1) -> torch.Tensor:
    return torch.ones(batch, 1, 4, 4)


def test_perfect_empty_and_raising_masks_by_hand() -> None:
    model = LinearClassifier()
    left_half = torch.zeros(4, 4)
    left_half[:, :2] = 1
    heatmaps = torch.stack([torch.ones(4, 4), torch.zeros(4, 4), left_half])
    y, o = metrics.explanation_scores(model, ones(3), heatmaps, torch.zeros(3, dtype=torch.long))
    assert y.tolist() == pytest.approx([0.75, 0.75, 0.75])
    assert o.tolist() == pytest.approx([0.75, 0.5, 0.9])

    # Perfect mask (all ones): O = Y, no drop, no increase.
    assert metrics.average_drop(y[:1], o[:1]) == pytest.approx(0.0, abs=1e-9)
    assert metrics.confidence_drop(y[:1], o[:1]) == pytest.approx(0.0, abs=1e-9)
    assert metrics.increase_in_confidence(y[:1], o[:1]) == 0.0
    # Empty mask: (3/4 − 1/2) / (3/4) = 1/3.
    assert metrics.average_drop(y[1:2], o[1:2]) == pytest.approx(100 / 3, abs=1e-4)
    assert metrics.confidence_drop(y[1:2], o[1:2]) == pytest.approx(100 / 3, abs=1e-4)
    # A mask that raises the score: an increase, no average drop, a negative eq. 23: (0.75 − 0.9) / 0.75.
    assert metrics.increase_in_confidence(y[2:], o[2:]) == 100.0
    assert metrics.average_drop(y[2:], o[2:]) == pytest.approx(0.0, abs=1e-9)
    assert metrics.confidence_drop(y[2:], o[2:]) == pytest.approx(-20.0, abs=1e-4)

    # The three together: means over the images.
    assert metrics.average_drop(y, o) == pytest.approx((0 + 100 / 3 + 0) / 3, abs=1e-4)
    assert metrics.confidence_drop(y, o) == pytest.approx((0 + 100 / 3 - 20) / 3, abs=1e-4)
    assert metrics.increase_in_confidence(y, o) == pytest.approx(100 / 3)


def test_scores_use_the_target_and_given_probabilities() -> None:
    model = LinearClassifier()
    y, o = metrics.explanation_scores(model, ones(), torch.zeros(1, 4, 4), torch.tensor([1]))
    assert (y.item(), o.item()) == pytest.approx((0.25, 0.5))  # class 1 = 1 − sigmoid
    given = torch.tensor([0.6])
    y, _ = metrics.explanation_scores(model, ones(), torch.zeros(1, 4, 4), torch.tensor([0]), probabilities=given)
    assert y.item() == pytest.approx(0.6)


def test_bad_shapes_are_refused() -> None:
    model = LinearClassifier()
    with pytest.raises(ValueError, match="heatmaps of shape"):
        metrics.explanation_scores(model, ones(2), torch.ones(2, 3, 3), torch.zeros(2, dtype=torch.long))
    with pytest.raises(ValueError, match="one target per image"):
        metrics.explanation_scores(model, ones(2), torch.ones(2, 4, 4), torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match="n_steps"):
        metrics.deletion_insertion(model, ones(), torch.ones(1, 4, 4), torch.zeros(1, dtype=torch.long), n_steps=0)
    with pytest.raises(ValueError, match="non-empty"):
        metrics.average_drop(torch.tensor([]), torch.tensor([]))


def salient_top_left() -> torch.Tensor:
    """A heatmap ranking the four weighted pixels first; all 16 values distinct (no ties)."""
    heatmap = torch.arange(16, dtype=torch.float32).view(4, 4) / 40  # 0 … 0.375
    heatmap[:2, :2] = torch.tensor([[1.0, 0.95], [0.9, 0.85]])
    return heatmap


def test_deletion_and_insertion_auc_by_hand() -> None:
    """16 pixels, 8 steps: 2 pixels per step, each weighted pixel worth 0.25 of probability.

    Good map: deletion 1, ½, 0, 0, … → AUC = ⅛·(¾ + ¼) = 0.125; insertion 0, ½, 1, 1, … → 0.875.
    Inverted map: the weighted pixels go last → deletion 0.875, insertion 0.125.
    """
    model = LinearProbability()
    good = salient_top_left()
    heatmaps = torch.stack([good, 1 - good])
    curves = metrics.deletion_insertion(model, ones(2), heatmaps, torch.zeros(2, dtype=torch.long), n_steps=8)
    deletion, insertion = curves["deletion"], curves["insertion"]
    assert deletion.fractions.tolist() == pytest.approx([k / 8 for k in range(9)])
    assert deletion.probabilities[0].tolist() == pytest.approx([1, 0.5, 0, 0, 0, 0, 0, 0, 0], abs=1e-6)
    assert insertion.probabilities[0].tolist() == pytest.approx([0, 0.5, 1, 1, 1, 1, 1, 1, 1], abs=1e-6)
    assert deletion.auc.tolist() == pytest.approx([0.125, 0.875], abs=1e-6)
    assert insertion.auc.tolist() == pytest.approx([0.875, 0.125], abs=1e-6)
    assert deletion.mean_auc == pytest.approx(0.5, abs=1e-6)

    # Chunking changes nothing: one input per forward pass gives the same curves.
    single = metrics.deletion_insertion(model, ones(2), heatmaps, torch.zeros(2, dtype=torch.long), n_steps=8, batch_size=1)
    assert torch.allclose(single["deletion"].probabilities, deletion.probabilities)
    assert torch.allclose(single["insertion"].probabilities, insertion.probabilities)


def test_pixel_ranks_order_and_ties() -> None:
    ranks = metrics.pixel_ranks(salient_top_left()[None])[0].view(4, 4)
    assert ranks[:2, :2].tolist() == [[0, 1], [2, 3]]
    assert sorted(ranks.flatten().tolist()) == list(range(16))
    flat = metrics.pixel_ranks(torch.zeros(1, 8, 8))[0]
    assert sorted(flat.tolist()) == list(range(64))
    # Ties are broken in no spatial order: the first 32 ranks are not simply the top half's rows.
    assert (flat.view(8, 8)[:4] < 32).sum() < 32


def side_heatmaps(targets: torch.Tensor, width: int, split: int, *, on_target_side: bool, left_class: int) -> torch.Tensor:
    heatmaps = torch.zeros(targets.shape[0], 2, width)
    for i, target in enumerate(targets.tolist()):
        left = (target == left_class) == on_target_side
        if left:
            heatmaps[i, :, :split] = 1
        else:
            heatmaps[i, :, split:] = 1
    return heatmaps


def test_pair_share_with_known_heatmaps() -> None:
    inputs = torch.zeros(3, 3, 2, 10)
    left_targets, right_targets = torch.tensor([3, 3, 3]), torch.tensor([7, 7, 7])

    def oracle(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return side_heatmaps(t, 10, 4, on_target_side=True, left_class=3)

    def contrary(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return side_heatmaps(t, 10, 4, on_target_side=False, left_class=3)

    def all_left(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        heatmaps = torch.zeros(x.shape[0], 2, 10)
        heatmaps[:, :, :4] = 0.7
        return heatmaps

    assert metrics.pair_share(oracle, inputs, left_targets, right_targets, 4).mean == pytest.approx(1.0)
    assert metrics.pair_share(contrary, inputs, left_targets, right_targets, 4).mean == pytest.approx(0.0)
    shares = metrics.pair_share(all_left, inputs, left_targets, right_targets, 4, batch_size=2)
    assert shares.left.tolist() == pytest.approx([1.0] * 3)  # all the mass on the left
    assert shares.right.tolist() == pytest.approx([0.0] * 3)
    assert shares.mean == pytest.approx(0.5)  # blind to the class: chance

    # Uniform map with the split at column 4 of 10: 40 % left; an empty map counts as chance.
    left, right = metrics.half_shares(torch.stack([torch.ones(2, 10), torch.zeros(2, 10)]), [4, 4])
    assert left.tolist() == pytest.approx([0.4, 0.5])
    assert right.tolist() == pytest.approx([0.6, 0.5])


def test_summary_collects_every_figure() -> None:
    y, o = torch.tensor([0.75, 0.75]), torch.tensor([0.5, 0.9])
    summary = metrics.summarize("m", y, o, seconds_per_image=0.1, forward_passes=7, backward_passes=0)
    assert summary.images == 2
    assert summary.average_drop == pytest.approx(100 / 6)
    assert summary.confidence_drop == pytest.approx((100 / 3 - 20) / 2)
    assert summary.increase == 50.0
    assert summary.deletion is None and summary.pair_share is None
    assert summary.as_dict()["forward_passes"] == 7


def test_make_pair_keeps_both_images(spec) -> None:
    size = spec.input_size
    left = Image.new("RGB", (size, size), (250, 10, 10))
    right = Image.new("RGB", (size, size), (10, 10, 250))
    tensor, split = metrics.make_pair(spec, left, right)
    assert tensor.shape == (1, 3, size, 2 * size) and split == size
    assert torch.allclose(tensor[..., :split], spec.to_tensor(left))
    assert torch.allclose(tensor[..., split:], spec.to_tensor(right))
    # Images of other sizes: the split follows the left image through both resizes.
    tensor, split = metrics.make_pair(spec, left.resize((300, 100)), right.resize((50, 200)))
    assert tensor.shape[2] == size
    red_columns = (tensor[0, 0] > tensor[0, 2]).all(dim=0)
    assert red_columns[: split - 1].all() and not red_columns[split + 1 :].any()
    batch, splits = metrics.make_pairs(spec, [left, left], [right, right])
    assert batch.shape == (2, 3, size, 2 * size) and splits == [size, size]


@pytest.mark.slow
def test_cluster_cam_metrics_on_the_real_model(spec) -> None:
    """Real faithfulness sanity check on scikit-image's coffee cup (the model says espresso).

    The metrics' masking is Cluster-CAM's own (eq. 19): O of the cognition-base mask equals the
    base's score. And the Cluster-CAM heatmap must beat its own inverse, ``1 − H``, on average
    drop, deletion and insertion.
    """
    from skimage import data

    x = spec.preprocess(data.coffee())
    result = clustercam.ClusterCAM(spec)(x)
    targets = result.targets
    base_mask = result.masks[0, result.base_index[0]][None]
    y, o_base = metrics.explanation_scores(spec.model, x, base_mask, targets)
    assert torch.allclose(y, result.target_probabilities(), atol=1e-5)
    assert o_base.item() == pytest.approx(result.scores[0, result.base_index[0]].item(), abs=1e-5)

    heatmap = result.heatmaps
    _, o = metrics.explanation_scores(spec.model, x, heatmap, targets)
    _, o_inverse = metrics.explanation_scores(spec.model, x, 1 - heatmap, targets)
    assert metrics.average_drop(y, o) < metrics.average_drop(y, o_inverse)
    curves = metrics.deletion_insertion(spec.model, x, heatmap, targets, n_steps=8)
    inverse = metrics.deletion_insertion(spec.model, x, 1 - heatmap, targets, n_steps=8)
    assert curves["deletion"].mean_auc < inverse["deletion"].mean_auc
    assert curves["insertion"].mean_auc > inverse["insertion"].mean_auc
    assert curves["deletion"].probabilities[0, 0].item() == pytest.approx(y.item(), abs=1e-5)


def test_adcc_parts_by_hand() -> None:
    """Coherency is the Pearson correlation mapped to [0, 1] (scipy's value), complexity the map's
    mean, ADCC their harmonic mean with 1 − average drop; a constant map and a zero term give 0."""
    from scipy import stats

    generator = torch.Generator().manual_seed(3)
    a = torch.rand(2, 6, 7, generator=generator)
    b = 0.6 * a + 0.4 * torch.rand(2, 6, 7, generator=generator)
    for i in range(2):
        rho = stats.pearsonr(a[i].flatten().numpy(), b[i].flatten().numpy())[0]
        assert float(metrics.coherency(a, b)[i]) == pytest.approx((rho + 1) / 2, abs=1e-6)
    assert float(metrics.coherency(a, -a)[0]) == pytest.approx(0.0, abs=1e-9)  # perfectly anti-correlated
    assert float(metrics.coherency(torch.ones(1, 4, 4), a[:1, :4, :4])[0]) == 0.0  # a constant map: no correlation
    half = torch.zeros(1, 4, 4)
    half[:, :2] = 1.0
    assert float(metrics.complexity(half)[0]) == 0.5
    scores = metrics.adcc_scores(torch.tensor([0.2, 1.0, 0.2]), torch.tensor([0.9, 0.9, 0.0]), torch.tensor([0.3, 0.3, 0.3]))
    assert float(scores[0]) == pytest.approx(3 / (1 / 0.9 + 1 / 0.7 + 1 / 0.8)) and scores[1:].tolist() == [0.0, 0.0]


def test_adcc_agrees_with_the_reference_definition_on_the_real_model(spec, chelsea) -> None:
    """ADCC of Grad-CAM on a photograph, computed the way Poppi et al.'s code does (the explanation
    map X·A, A's map of it, scipy's Pearson correlation, ‖A‖₁ / (h·w), the harmonic mean)."""
    from scipy import stats

    x = spec.preprocess(chelsea)
    gradcam = clustercam.get_method("gradcam")(spec)
    result = gradcam(x)
    got = metrics.adcc(gradcam, spec.model, x, result.heatmaps, result.targets)
    with torch.no_grad():
        out = spec.model(x).softmax(dim=1)
        saliency = result.heatmaps[0]
        explanation_map = x * saliency  # the masked image: X ∘ A
        on_map = spec.model(explanation_map).softmax(dim=1)
    c = int(out.argmax())
    drop = max(0.0, float(out[0, c]) - float(on_map[0, c])) / float(out[0, c])
    again = gradcam(explanation_map, torch.tensor([c])).heatmaps[0]
    coherent = (stats.pearsonr(saliency.flatten().numpy(), again.flatten().numpy())[0] + 1) / 2
    complex_ = float(saliency.abs().sum()) / (saliency.shape[-1] * saliency.shape[-2])
    expected = 3 / (1 / coherent + 1 / (1 - complex_) + 1 / (1 - drop))
    assert float(got.average_drop[0]) == pytest.approx(drop, abs=1e-5)
    assert float(got.coherency[0]) == pytest.approx(coherent, abs=1e-5)
    assert float(got.complexity[0]) == pytest.approx(complex_, abs=1e-6)
    assert float(got.adcc[0]) == pytest.approx(expected, abs=1e-5)
    assert (got.forward_passes, got.backward_passes) == (1, 1)  # Grad-CAM's own passes, for the coherency
