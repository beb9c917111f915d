"""Property-based tests: clustering and normalisation on random, constant, NaN and inf inputs
either raise a clear ValueError or return finite results in range."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from clustercam.clustering import kmeans, spectral_clustering
from clustercam.maps import minmax, relu_max, upsample
from clustercam.methods.cognition import COMBINATIONS, cognition_heatmaps

SETTINGS = settings(max_examples=150, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
special = st.sampled_from([0.0, 1.0, -1.0, 1e30, -1e30, math.nan, math.inf, -math.inf, 1e-30])
values = st.one_of(st.floats(-1e6, 1e6, allow_nan=False, width=32), special)


def point_sets(max_points: int = 24, max_dim: int = 6):
    return st.tuples(st.integers(2, max_points), st.integers(1, max_dim)).flatmap(
        lambda shape: arrays(np.float32, shape, elements=values)
    )


@pytest.mark.parametrize("method", [kmeans, spectral_clustering])
@SETTINGS
@given(points=point_sets(), q=st.integers(1, 8), seed=st.integers(0, 3))
def test_clustering_returns_valid_labels_or_a_clear_error(method, points, q, seed):
    tensor = torch.from_numpy(points)
    try:
        result = method(tensor, q, seed=seed, n_init=2)
    except ValueError as error:
        message = str(error)
        assert any(word in message for word in ("between 2", "NaN", "distinct", "eigenvectors")), message
        return
    labels = result.labels
    assert labels.shape == (len(points),)
    assert labels.min() >= 0 and labels.max() < q
    assert torch.bincount(labels, minlength=q).min() >= 1  # no empty cluster


@SETTINGS
@given(points=arrays(np.float32, (12, 3), elements=st.floats(-50, 50, width=32)), seed=st.integers(0, 5))
def test_kmeans_is_deterministic_and_no_worse_than_its_start(points, seed):
    tensor = torch.from_numpy(points)
    assume(torch.unique(tensor, dim=0).shape[0] >= 3)
    first, second = kmeans(tensor, 3, seed=seed), kmeans(tensor, 3, seed=seed)
    assert torch.equal(first.labels, second.labels)
    assert first.inertia <= float((tensor - tensor.mean(0)).square().sum()) + 1e-3


@SETTINGS
@given(maps=arrays(np.float32, st.tuples(st.integers(1, 3), st.integers(1, 6), st.integers(1, 6)), elements=values))
def test_normalisations_are_finite_in_the_unit_interval_or_refuse_nan(maps):
    tensor = torch.from_numpy(maps)
    for normalise in (minmax, relu_max):
        if not torch.isfinite(tensor).all():
            with pytest.raises(ValueError, match="NaN or infinite"):
                normalise(tensor)
            continue
        out = normalise(tensor.double())  # float64: the huge-but-finite spans stay finite
        assert torch.isfinite(out).all()
        assert out.min() >= 0 and out.max() <= 1 + 1e-12


@SETTINGS
@given(
    maps=arrays(np.float32, (1, 4, 3, 3), elements=st.floats(-5, 5, width=32)),
    beta=st.floats(0, 1),
    scores=arrays(np.float32, (1, 4), elements=st.floats(0, 1, width=32)),
    normalization=st.sampled_from(["minmax", "max", "none"]),
    output=st.sampled_from(["relu", "minmax"]),
    combination=st.sampled_from(COMBINATIONS),
)
def test_cognition_heatmaps_are_finite_in_the_unit_interval(maps, beta, scores, normalization, output, combination):
    cluster_maps = torch.from_numpy(maps)
    masks = minmax(upsample(cluster_maps, (12, 12)))
    heatmap = cognition_heatmaps(masks, cluster_maps, torch.from_numpy(scores), beta, normalization, output, combination)
    assert heatmap.shape == (1, 12, 12)
    assert torch.isfinite(heatmap).all() and heatmap.min() >= 0 and heatmap.max() <= 1 + 1e-6


@given(beta=st.one_of(st.floats(allow_nan=True), st.just(math.inf)))
@SETTINGS
def test_beta_outside_the_unit_interval_is_refused(beta):
    masks = torch.rand(1, 2, 4, 4)
    scores = torch.tensor([[0.7, 0.1]])
    if 0 <= beta <= 1:
        assert torch.isfinite(cognition_heatmaps(masks, masks, scores, beta)).all()
    else:
        with pytest.raises(ValueError, match="β must be between 0 and 1"):
            cognition_heatmaps(masks, masks, scores, beta)
