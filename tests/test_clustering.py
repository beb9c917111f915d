"""K-means and spectral clustering (eqs. 10–17) on planted groups and on awkward inputs."""

from __future__ import annotations

import itertools

import pytest
import torch

from clustercam.clustering import (
    adjacency_matrix,
    correlation_similarity,
    graph_laplacian,
    kmeans,
    similarity_matrix,
    spectral_clustering,
    spectral_embedding,
    ssim_similarity,
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


def planted_two_block_adjacency(sizes=(18, 22), inside=0.9, across=0.08, seed=0) -> tuple[torch.Tensor, torch.Tensor]:
    """A weighted graph with two planted blocks: dense inside each block, sparse across."""
    generator = torch.Generator().manual_seed(seed)
    truth = torch.cat([torch.full((n,), b) for b, n in enumerate(sizes)])
    same = truth[:, None] == truth[None, :]
    probability = torch.where(same, torch.tensor(inside), torch.tensor(across))
    upper = (torch.rand(len(truth), len(truth), generator=generator) < probability).double().triu(1)
    weights = upper * (0.5 + torch.rand(len(truth), len(truth), generator=generator, dtype=torch.float64)).triu(1)
    return weights + weights.T, truth


@pytest.mark.parametrize("normalized", [True, False])
def test_a_planted_two_block_graph_splits_into_its_blocks(normalized):
    """Eqs. 13–16: the Fiedler vector u_2 alone separates the two blocks by its sign."""
    adjacency, truth = planted_two_block_adjacency()
    values, embedding = spectral_embedding(graph_laplacian(adjacency, normalized=normalized), 1)
    sign = embedding[:, 0] > 0
    assert same_partition(sign.long(), truth)
    assert values[0] == pytest.approx(0.0, abs=1e-9) and values[1] > 1e-3


@pytest.mark.parametrize("normalized", [True, False])
def test_the_embedding_is_u2_to_uK1_orthogonal_to_the_trivial_eigenvector(normalized):
    """B = [u_2 … u_{K+1}] (eq. 16): eigenvectors of L for λ_2…λ_{K+1}, orthogonal to u_1.

    u_1 is the constant vector for L = D − A and D^{1/2}·1 for L_N (eq. 14).
    """
    adjacency, _ = planted_two_block_adjacency(sizes=(10, 12, 14), seed=2)
    laplacian = graph_laplacian(adjacency, normalized=normalized)
    k = 3
    values, embedding = spectral_embedding(laplacian, k)
    degree = adjacency.sum(1)
    trivial = degree.sqrt() if normalized else torch.ones_like(degree)
    trivial = trivial / trivial.norm()
    assert torch.allclose(laplacian @ trivial, torch.zeros_like(trivial), atol=1e-9)  # u_1, λ_1 = 0
    assert torch.allclose(embedding.T @ trivial, torch.zeros(k, dtype=torch.float64), atol=1e-9)
    assert torch.allclose(laplacian @ embedding, embedding * values[1:], atol=1e-9)  # eigenpairs 2…K+1
    assert torch.allclose(embedding.T @ embedding, torch.eye(k, dtype=torch.float64), atol=1e-9)
    assert torch.all(values[1:] > 1e-6)  # none of them is the trivial one
    everything = torch.linalg.eigvalsh((laplacian + laplacian.T) / 2)
    assert torch.allclose(values, everything[: k + 1], atol=1e-9)  # the smoothest ones


def bump_maps(count: int, column: float, generator: torch.Generator) -> torch.Tensor:
    """7×7 maps with a bump around ``column``, amplitudes spread over two decades (0.1–10)."""
    rows, cols = torch.meshgrid(torch.arange(7.0), torch.arange(7.0), indexing="ij")
    maps = []
    for _ in range(count):
        amplitude = float(10 ** (2 * torch.rand(1, generator=generator) - 1))
        centre_col = column + 0.5 * float(torch.randn(1, generator=generator))
        centre_row = 3 + float(torch.randn(1, generator=generator))
        bump = torch.exp(-((cols - centre_col) ** 2 + (rows - centre_row) ** 2) / 2)
        maps.append(amplitude * (bump + 0.02 * torch.rand(7, 7, generator=generator)))
    return torch.stack(maps)


def test_maps_are_grouped_by_where_they_fire_with_ssim_or_correlation():
    """Why eq. 17 fails on real layers: Euclidean distance groups maps by *how strongly* they fire.

    Two planted groups fire on the left and on the right half, with amplitudes that vary a
    hundredfold inside each group. SSIM and correlation (shape) recover the groups; the
    Euclidean similarity of eq. 17, like K-means, sorts by amplitude instead.
    """
    from sklearn.metrics import adjusted_rand_score

    generator = torch.Generator().manual_seed(0)
    maps = torch.cat([bump_maps(30, 1.5, generator), bump_maps(30, 5.5, generator)])
    truth = torch.arange(2).repeat_interleave(30)
    points = maps.flatten(1)
    for similarity in ("ssim", "correlation"):
        for rows in (False, True):
            labels = spectral_clustering(points, 2, similarity=similarity, normalize_rows=rows, map_shape=(7, 7)).labels
            assert same_partition(labels, truth), (similarity, rows)
    euclidean = spectral_clustering(points, 2, similarity="euclidean").labels
    assert adjusted_rand_score(truth.numpy(), euclidean.numpy()) < 0.3


@pytest.mark.parametrize("size", [7, 14, 5])
def test_ssim_equals_scikit_image(size):
    from skimage.metrics import structural_similarity

    generator = torch.Generator().manual_seed(size)
    maps = torch.rand(6, size, size, generator=generator, dtype=torch.float64) ** 2
    maps[3] = maps[0] * 40 + 2  # same structure at another scale and offset: identical after scaling
    ours = ssim_similarity(maps)
    window = min(7, size) - (1 - min(7, size) % 2)
    for i in range(6):
        for j in range(6):
            x, y = (m.numpy() for m in minmax_rows(maps[[i, j]]))
            expected = max(0.0, structural_similarity(x, y, win_size=window, data_range=1.0))
            assert float(ours[i, j]) == pytest.approx(expected, abs=1e-9), (i, j)
    assert float(ours[0, 3]) == pytest.approx(1.0)


def minmax_rows(maps: torch.Tensor) -> torch.Tensor:
    flat = maps.flatten(1)
    low, high = flat.amin(1, keepdim=True), flat.amax(1, keepdim=True)
    return ((flat - low) / (high - low)).view_as(maps)


def test_correlation_similarity_is_pearson_and_treats_constant_maps_alike():
    generator = torch.Generator().manual_seed(1)
    points = torch.rand(5, 49, generator=generator, dtype=torch.float64)
    points[2] = -3 * points[0] + 1  # perfectly anti-correlated
    points[3] = 0.0
    points[4] = 2.5  # another constant map
    similarity = correlation_similarity(points)
    expected = (1 + torch.corrcoef(points[:3])) / 2
    assert torch.allclose(similarity[:3, :3], expected, atol=1e-12)
    assert float(similarity[0, 2]) == pytest.approx(0.0, abs=1e-12)
    assert float(similarity[3, 4]) == 1.0 and float(similarity[0, 3]) == 0.5


def test_spectral_similarity_checks():
    points, _ = planted()
    with pytest.raises(ValueError, match="similarity must be one of"):
        spectral_clustering(points, 3, similarity="cosine")
    with pytest.raises(ValueError, match="map_shape"):
        spectral_clustering(points, 3, similarity="ssim")


def test_kmeans_on_real_feature_maps_is_as_good_as_scikit_learn(spec, chelsea):
    """Inertia on the 1280 bn2 maps of a real photograph within 2 % of scikit-learn's K-means."""
    from sklearn.cluster import KMeans

    from clustercam.hooks import LayerCapture

    with LayerCapture(spec.model, "bn2") as capture, torch.inference_mode():
        spec.model(spec.preprocess(chelsea))
        points = capture.activations[0].flatten(1).float()
    for q in (3, 6):
        ours = kmeans(points, q)
        theirs = KMeans(q, n_init=4, random_state=0).fit(points.double().numpy())
        assert ours.inertia <= theirs.inertia_ * 1.02, q


def test_the_quick_distinct_check_never_counts_equal_rows_as_different():
    from clustercam.clustering import _distinct_at_least

    row = torch.rand(1, 77)
    same = row.expand(9, -1).clone()  # equal rows at different memory offsets
    assert not _distinct_at_least(same, 2)
    signed = torch.zeros(4, 5)
    signed[1:] = -0.0  # -0.0 equals 0.0
    assert not _distinct_at_least(signed, 2)
    assert _distinct_at_least(torch.arange(12.0).view(4, 3), 4)
    assert not _distinct_at_least(torch.arange(12.0).view(4, 3), 5)
