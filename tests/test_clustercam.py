"""Cluster-CAM end to end on the embedded model and real photographs (eqs. 18–22)."""

from __future__ import annotations

import contextlib

import pytest
import torch

import clustercam
from clustercam.hooks import hook_count
from clustercam.maps import minmax, upsample
from clustercam.methods.cluster import PRESETS, ClusterCAM
from clustercam.methods.cognition import cognition_heatmaps

from .conftest import left_share


@contextlib.contextmanager
def counted_images(model: torch.nn.Module):
    """Count the images pushed through ``model`` (batched passes count their batch size)."""
    seen = {"images": 0}

    def pre_hook(_module, inputs):
        seen["images"] += inputs[0].shape[0]

    handle = model.register_forward_pre_hook(pre_hook)
    try:
        yield seen
    finally:
        handle.remove()


#: Eq. 22 with both maps divided by their maximum, negative parts cut (independent of the defaults).
EQ22_MAX = {"normalization": "max", "output": "relu", "combination": "difference"}


@pytest.fixture(scope="module")
def chelsea_result(spec, chelsea):
    x = spec.preprocess(chelsea)
    return x, clustercam.ClusterCAM(spec, q=6, beta=0.5, **EQ22_MAX)(x)


def test_result_has_every_intermediate_with_the_right_shapes(spec, chelsea_result):
    x, result = chelsea_result
    one = result[0]
    h, w = x.shape[-2:]
    assert one.heatmap.shape == (h, w)
    assert one.heatmap.min() >= 0 and one.heatmap.max() == pytest.approx(1.0)
    assert one.labels.shape == (1280,) and set(one.labels.tolist()) == set(range(6))
    assert sum(one.cluster_sizes) == 1280 and min(one.cluster_sizes) >= 1
    assert one.cluster_maps.shape == (6, 7, 11)
    assert one.masks.shape == (6, h, w) and one.masks.min() >= 0 and one.masks.max() <= 1
    assert one.scores.shape == (6,)
    assert one.base_index == int(one.scores.argmax()) and one.scissors_index == int(one.scores.argmin())
    assert one.forward_passes == 7 and one.backward_passes == 0
    assert spec.categories[one.top_classes[0]] == "Egyptian cat" and one.target == one.top_classes[0]
    assert len(one.top_probabilities) == 5 and one.top_probabilities == sorted(one.top_probabilities, reverse=True)


def test_cluster_maps_masks_and_scores_follow_eqs_18_and_19(spec, chelsea_result):
    """Recompute each step independently: means of the labelled maps, masks, one pass per mask."""
    x, result = chelsea_result
    one = result[0]
    with clustercam.LayerCapture(spec.model, "bn2") as capture, torch.inference_mode():
        spec.model(x)
        activations = capture.activations[0]
    for q in range(6):
        expected = activations[one.labels == q].mean(0)
        assert torch.allclose(one.cluster_maps[q], expected, atol=1e-5)
    assert torch.allclose(one.masks, minmax(upsample(one.cluster_maps, tuple(x.shape[-2:]))), atol=1e-6)
    with torch.inference_mode():
        direct = torch.stack([spec.model(x * one.masks[q]).softmax(1)[0, one.target] for q in range(6)])
    assert torch.allclose(one.scores, direct, atol=1e-5)


def base_and_scissors_maps(one, x):
    """The base and scissors cluster means (eq. 18) upsampled to the input size, in layer units."""
    return (upsample(one.cluster_maps[i], tuple(x.shape[-2:])) for i in (one.base_index, one.scissors_index))


def test_heatmap_is_eq_22_of_base_and_scissors(chelsea_result):
    """Default normalisation "max": each upsampled cluster mean divided by its maximum."""
    x, result = chelsea_result
    one = result[0]
    assert result.normalization == "max" and result.output == "relu"
    base, scissors = base_and_scissors_maps(one, x)
    combined = 0.5 * base / base.max() - 0.5 * scissors / scissors.max()
    expected = combined.clamp_min(0) / combined.clamp_min(0).max()
    assert torch.allclose(one.heatmap, expected, atol=1e-6)


@pytest.mark.parametrize("normalization", ["minmax", "none"])
def test_other_normalisations_of_eq_22(chelsea_result, normalization):
    x, result = chelsea_result
    one = result[0]
    if normalization == "minmax":  # the scored masks themselves
        base, scissors = one.masks[one.base_index], one.masks[one.scissors_index]
    else:  # the layer's own units
        base, scissors = base_and_scissors_maps(one, x)
    combined = 0.5 * base - 0.5 * scissors
    expected = combined.clamp_min(0) / combined.clamp_min(0).max()
    changed = result.recombine(normalization=normalization)
    assert changed.normalization == normalization and changed.beta == 0.5
    assert torch.allclose(changed.heatmaps[0], expected, atol=1e-6)


def normalised_by_max(maps: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    raw = upsample(maps, tuple(x.shape[-2:]))
    return raw / raw.abs().amax(dim=(-2, -1), keepdim=True)


@pytest.mark.parametrize("beta", [0.5, 0.8])
def test_the_combinations_beyond_eq_22_by_hand(chelsea_result, beta):
    """weighted, multibase and gated, recomputed from the cluster maps and scores by hand."""
    x, result = chelsea_result
    one = result[0]
    maps = normalised_by_max(one.cluster_maps, x)
    scores = one.scores.double()
    scissors = maps[one.scissors_index]
    weighted = (scores[:, None, None] * maps).sum(0) / scores.sum()
    above = [q for q in range(6) if (scores[q] >= scores.quantile(0.5) or q == one.base_index) and q != one.scissors_index]
    multibase = maps[above].mean(0)
    expected = {
        "weighted": beta * weighted - (1 - beta) * scissors,
        "multibase": beta * multibase - (1 - beta) * scissors,
        "gated": maps[one.base_index] * (1 - (1 - beta) * scissors.clamp(0, 1)),
    }
    for combination, combined in expected.items():
        relu = combined.double().clamp_min(0)
        heatmap = result.recombine(combination=combination, beta=beta).heatmaps[0]
        assert torch.allclose(heatmap.double(), relu / relu.max(), atol=1e-5), combination
    assert len(above) == 3  # Q = 6: the three clusters at or above the median score
    # β = 1 leaves the base term alone in every combination
    assert torch.allclose(result.recombine(combination="gated", beta=1.0).heatmaps, result.reweight(1.0).heatmaps)


def test_presets_and_their_overrides(spec, chelsea):
    paper = ClusterCAM(spec, preset="paper")
    for key in ("q", "beta", "normalization", "output", "combination", "clustering"):
        assert getattr(paper, key) == PRESETS["paper"][key]
    assert paper.normalization == "none" and paper.combination == "difference" and paper.preset == "paper"
    override = ClusterCAM(spec, preset="paper", q=4, beta=0.3)
    assert (override.q, override.beta, override.normalization) == (4, 0.3, "none")
    default = ClusterCAM(spec)
    assert default.preset == clustercam.DEFAULT_PRESET
    for key, value in PRESETS[clustercam.DEFAULT_PRESET].items():
        expected = value if key not in ("similarity", "normalize_rows", "n_eigenvectors") else None
        if expected is not None:
            assert getattr(default, key) == expected, key
    with pytest.raises(ValueError, match="Unknown preset 'best'"):
        ClusterCAM(spec, preset="best")
    x = spec.preprocess(chelsea.resize((160, 160)))
    literal = paper(x)[0]
    # eq. 22 as printed: raw cluster means, then min–max scaled
    base, scissors = (upsample(literal.cluster_maps[i], tuple(x.shape[-2:])) for i in (literal.base_index, literal.scissors_index))
    combined = paper.beta * base - (1 - paper.beta) * scissors
    assert torch.allclose(literal.heatmap, (combined - combined.min()) / (combined.max() - combined.min()), atol=1e-5)


def test_network_work_is_one_plus_q_passes_and_reweighting_is_free(spec, chelsea_result):
    x, result = chelsea_result
    cam = clustercam.ClusterCAM(spec, q=5)
    with counted_images(spec.model) as seen:
        fresh = cam(x)
    assert seen["images"] == 1 + 5 == fresh.forward_passes
    with counted_images(spec.model) as seen:
        reweighted = result.reweight(0.9)
        retargeted = result.retarget(spec.class_index("tabby"))
    assert seen["images"] == 0
    again = clustercam.ClusterCAM(spec, q=6, beta=0.9, **EQ22_MAX)(x)
    assert torch.allclose(reweighted.heatmaps, again.heatmaps, atol=1e-6)
    assert not torch.allclose(reweighted.heatmaps, result.heatmaps)
    tabby = clustercam.ClusterCAM(spec, q=6, beta=0.5, **EQ22_MAX)(x, spec.class_index("tabby"))
    assert torch.allclose(retargeted.scores, tabby.scores, atol=1e-6)
    assert torch.equal(retargeted.base_index, tabby.base_index)
    assert torch.allclose(retargeted.heatmaps, tabby.heatmaps, atol=1e-6)


def test_batches_equal_single_images(spec, chelsea, coffee):
    first, second = spec.preprocess(chelsea.resize((300, 300))), spec.preprocess(coffee.resize((300, 300)))
    cam = clustercam.ClusterCAM(spec, q=4, batch_size=3)  # chunks straddle images
    batch = cam(torch.cat([first, second]))
    assert batch.forward_passes == 2 * (1 + 4)
    for index, single in enumerate((cam(first), cam(second))):
        assert torch.equal(batch[index].labels, single[0].labels)
        assert torch.allclose(batch[index].heatmap, single[0].heatmap, atol=1e-4)


@pytest.mark.parametrize("clustering", ["kmeans", "spectral"])
def test_same_seed_same_explanation(spec, chelsea, clustering):
    x = spec.preprocess(chelsea)
    first = clustercam.ClusterCAM(spec, q=4, clustering=clustering, seed=3)(x)
    second = clustercam.ClusterCAM(spec, q=4, clustering=clustering, seed=3)(x)
    assert torch.equal(first[0].labels, second[0].labels)
    assert torch.equal(first.heatmaps, second.heatmaps)


def test_two_objects_base_and_scissors_follow_the_target(spec, cat_and_coffee):
    """The paper's Fig. 3 claim, measured: the heatmap moves to whichever object is asked for."""
    x = spec.preprocess(cat_and_coffee)
    cam = clustercam.ClusterCAM(spec, q=6, beta=0.5, **EQ22_MAX)
    cat = cam(x, spec.class_index("Egyptian cat"))
    cup = cam(x, spec.class_index("espresso"))
    assert left_share(cat.heatmaps[0]) >= 0.8
    assert 1 - left_share(cup.heatmaps[0]) >= 0.8
    assert (cat[0].base_index, cat[0].scissors_index) != (cup[0].base_index, cup[0].scissors_index)
    # the same clusters serve both targets; only the scores differ
    assert torch.equal(cat[0].labels, cup[0].labels)
    assert torch.allclose(cat.retarget(spec.class_index("espresso")).heatmaps, cup.heatmaps, atol=1e-6)


@pytest.mark.parametrize("combination", ["difference", "multibase", "gated"])
def test_all_equal_scores_fall_back_to_the_base_map(combination):
    masks = torch.rand(1, 3, 8, 8)
    scores = torch.full((1, 3), 0.25)  # argmax = argmin = cluster 0
    heatmap = cognition_heatmaps(masks, masks, scores, beta=0.2, combination=combination)
    if combination != "multibase":
        assert torch.allclose(heatmap[0], masks[0, 0] / masks[0, 0].max())
    assert torch.isfinite(heatmap).all() and heatmap.max() == pytest.approx(1.0)


def test_beta_zero_gives_an_all_zero_map_not_nan(chelsea_result):
    _, result = chelsea_result
    heatmap = result.reweight(0.0).heatmaps
    assert torch.isfinite(heatmap).all() and heatmap.max() == 0


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"q": 1}, "Q must be"),
        ({"q": 2.5}, "Q must be"),
        ({"beta": 1.5}, "β must be between 0 and 1"),
        ({"beta": -0.1}, "β must be between 0 and 1"),
        ({"clustering": "dbscan"}, "clustering must be"),
        ({"normalization": "zscore"}, "normalization must be"),
        ({"combination": "sum"}, "combination must be"),
        ({"output": "sigmoid"}, "output must be"),
    ],
)
def test_bad_parameters_are_refused(spec, options, message):
    with pytest.raises(ValueError, match=message):
        clustercam.ClusterCAM(spec, **options)


def test_unknown_clustering_option_is_refused(spec):
    with pytest.raises(TypeError, match="sigma"):
        clustercam.ClusterCAM(spec, clustering="kmeans", sigma=0.3)


def test_q_above_the_channel_count(spec, chelsea):
    x = spec.preprocess(chelsea.resize((64, 64)))
    with pytest.raises(ValueError, match="more than the 32 channels"):
        clustercam.ClusterCAM(spec, "conv_stem", q=33)(x)
    assert hook_count(spec.model) == 0


def test_constant_feature_maps_are_a_clear_error():
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(), torch.nn.Linear(8, 4),
    ).eval()
    with torch.no_grad():
        model[0].weight.zero_()  # every map is its (constant) bias
    with pytest.raises(ValueError, match="spatially constant"):
        clustercam.ClusterCAM(model, "1", q=2)(torch.rand(1, 3, 16, 16))


def test_fewer_distinct_maps_than_q_is_a_clear_error():
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 6, 3, padding=1), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten()).eval()
    with torch.no_grad():
        model[0].weight.copy_(model[0].weight[:1].expand(6, -1, -1, -1).clone())
        model[0].bias.zero_()
    with pytest.raises(ValueError, match="distinct"):
        clustercam.ClusterCAM(model, "0", q=3)(torch.rand(1, 3, 8, 8))


def test_nan_activations_are_a_clear_error():
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten()).eval()
    x = torch.rand(1, 3, 8, 8)
    x[0, 0, 2, 2] = float("nan")
    with pytest.raises(ValueError, match="NaN or infinite"):
        clustercam.ClusterCAM(model, "0", q=2)(x)


def test_multibase_takes_every_cluster_at_or_above_the_median_score():
    """Q = 3, scores 0.5, 0.3, 0.1: the bases are clusters 0 and 1 (the median one included)."""
    maps = torch.zeros(1, 3, 4, 4)
    maps[0, 0, 0, 0] = 1.0  # base
    maps[0, 1, 3, 3] = 1.0  # the median cluster
    maps[0, 2, 0, 3] = 1.0  # scissors
    heatmap = cognition_heatmaps(maps, maps, torch.tensor([[0.5, 0.3, 0.1]]), beta=0.9, combination="multibase")[0]
    assert heatmap[0, 0] == pytest.approx(1.0) and heatmap[3, 3] == pytest.approx(1.0)
    assert heatmap[0, 3] == 0 and heatmap.sum() == pytest.approx(2.0)
