"""K-means and spectral clustering (eqs. 10–17) on planted groups and on awkward inputs."""

from __future__ import annotations

import itertools

import pytest
import torch

from clustercam.clustering import (
    adjacency_matrix,
    graph_laplacian,
    kmeans,
    similarity_matrix,
    spectral_clustering,
    spectral_embedding,
)


def planted(groups: int = 4, per_group: int = 30, dim: int = 49, spread: float = 12.0, seed: int = 3):
    generator = torch.Generator().manual_seed(seed)
    centres = torch.randn(groups, dim, generator=generator) * spread
    truth = torch.arange(groups).repeat_interleave(per_group)
    points = centres[truth] + torch.randn(groups * per_group, dim, generator=generator)
    order = torch.randperm(len(truth), generator=generator)
    return points[order], truth[order]


def same_partition(labels: torch.Tensor, truth: torch.Tensor) -> bool:
    """Equal up to renaming the clusters."""
    pairs = {(int(a), int(b)) for a, b in zip(labels, truth, strict=True)}
    return len(pairs) == len(set(labels.tolist())) == len(set(truth.tolist()))


@pytest.mark.parametrize("method", [kmeans, spectral_clustering])
def test_recovers_planted_groups(method):
    points, truth = planted()
    result = method(points, 4)
    assert same_partition(result.labels, truth)


@pytest.mark.parametrize("method", [kmeans, spectral_clustering])
def test_same_seed_same_labels(method):
    points, _ = planted(groups=5, spread=2.0)  # overlapping: the seed matters
    first = method(points, 5, seed=7).labels
    assert torch.equal(first, method(points, 5, seed=7).labels)


def test_kmeans_matches_scikit_learn_inertia():
    sklearn_cluster = pytest.importorskip("sklearn.cluster")
    points, _ = planted(groups=6, spread=1.5, seed=11)
    ours = kmeans(points, 6, n_init=8)
    theirs = sklearn_cluster.KMeans(6, n_init=8, random_state=0).fit(points.double().numpy())
    assert ours.inertia <= theirs.inertia_ * 1.02
    centroid_of = torch.stack([points[ours.labels == q].mean(0) for q in range(6)])
    assert torch.allclose(centroid_of, ours.centroids, atol=1e-4)


def test_kmeans_has_no_empty_cluster_even_with_an_outlier_heavy_start():
    # 3 tight distinct points repeated many times plus duplicates: Q equal to the distinct count
    points = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]]).repeat(20, 1)
    result = kmeans(points, 3, n_init=5)
    assert torch.bincount(result.labels, minlength=3).min() == 20
    assert result.inertia == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("method", [kmeans, spectral_clustering])
def test_clear_errors(method):
    points, _ = planted()
    with pytest.raises(ValueError, match="between 2"):
        method(points, 1)
    with pytest.raises(ValueError, match="between 2"):
        method(points, len(points) + 1)
    bad = points.clone()
    bad[3, 4] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        method(bad, 3)
    duplicates = torch.ones(10, 5)
    duplicates[:5] = 0
    with pytest.raises(ValueError, match="Only 2 of the 10 points are distinct"):
        method(duplicates, 3)


def test_similarity_and_adjacency_follow_eqs_11_and_17():
    distances = torch.tensor([[0.0, 1.0, 4.0], [1.0, 0.0, 3.0], [4.0, 3.0, 0.0]], dtype=torch.float64)
    similarity = similarity_matrix(distances, scale=2.0)
    assert similarity[0, 1] == pytest.approx(torch.exp(torch.tensor(-0.5)).item())
    adjacency = adjacency_matrix(similarity, sigma=0.5, theta=0.2)
    # S(0,2) = e^-2 ≈ 0.135 ≤ θ: no edge; S(0,1) = e^-0.5: weight exp(-(1 - S)/σ)
    assert adjacency[0, 2] == 0 and adjacency[2, 0] == 0
    assert adjacency[0, 1] == pytest.approx(torch.exp(-(1 - similarity[0, 1]) / 0.5).item())
    assert torch.equal(adjacency, adjacency.T) and torch.all(adjacency.diagonal() == 0)


def test_laplacians_follow_eqs_13_and_14():
    adjacency = torch.tensor([[0, 1, 1, 0], [1, 0, 1, 0], [1, 1, 0, 1], [0, 0, 1, 0]], dtype=torch.float64)
    plain = graph_laplacian(adjacency, normalized=False)
    assert torch.allclose(plain.sum(1), torch.zeros(4, dtype=torch.float64))
    normalised = graph_laplacian(adjacency)
    degree = adjacency.sum(1)
    expected = torch.eye(4, dtype=torch.float64) - adjacency / torch.sqrt(degree[:, None] * degree[None, :])
    assert torch.allclose(normalised, expected)
    values, vectors = spectral_embedding(normalised, 2)
    assert values[0] == pytest.approx(0.0, abs=1e-10)  # connected graph: one zero eigenvalue
    assert torch.all(values >= -1e-10) and torch.all(values <= 2 + 1e-10)
    assert vectors.shape == (4, 2)


def test_disconnected_graphs_and_isolated_vertices_do_not_crash():
    points, truth = planted(groups=3, spread=50.0)
    outlier = torch.full((1, points.shape[1]), 1e4)
    points = torch.cat([points, outlier])
    # a high θ cuts the graph into components and isolates the outlier
    result = spectral_clustering(points, 4, theta=0.5)
    assert torch.isfinite(result.embedding).all()
    assert same_partition(result.labels[:-1], truth)
    assert len(set(result.labels.tolist())) == 4
    for laplacian, k in itertools.product(("normalized", "unnormalized"), (1, 3, 6)):
        labels = spectral_clustering(points, 4, theta=0.9, laplacian=laplacian, n_eigenvectors=k).labels
        assert labels.shape == (len(points),) and len(set(labels.tolist())) == 4


def test_spectral_parameter_checks():
    points, _ = planted()
    with pytest.raises(ValueError, match="θ"):
        spectral_clustering(points, 3, theta=1.0)
    with pytest.raises(ValueError, match="σ"):
        spectral_clustering(points, 3, sigma=0.0)
    with pytest.raises(ValueError, match="eigenvectors"):
        spectral_clustering(points, 3, n_eigenvectors=len(points))
    with pytest.raises(ValueError, match="laplacian"):
        spectral_clustering(points, 3, laplacian="random-walk")


def test_nearly_identical_points_far_from_the_origin_still_split():
    """‖x‖² + ‖c‖² − 2x·c cancels for points whose differences are tiny next to their norms."""
    points = torch.tensor([[1e-30, 1.0], [0.0, 1.0]])
    assert sorted(kmeans(points, 2).labels.tolist()) == [0, 1]
    shifted = torch.randn(40, 3, generator=torch.Generator().manual_seed(0)) * 1e-3 + 1e3
    labels = kmeans(shifted, 4).labels
    assert torch.bincount(labels, minlength=4).min() >= 1


def test_labels_match_the_reported_centroids():
    points, _ = planted(groups=5, spread=1.0, seed=5)
    result = kmeans(points, 5, max_iter=2)  # stopped early: still consistent and non-empty
    means = torch.stack([points[result.labels == q].mean(0) for q in range(5)])
    assert torch.allclose(means, result.centroids, atol=1e-4)
