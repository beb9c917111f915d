"""Clustering of feature maps: K-means and spectral clustering (paper §3.1, eqs. 10–17).

Pure functions on tensors; they run on the device of their input. A feature map ``F_n`` is a
point: its ``h·w`` values flattened. Randomness comes from a seeded CPU generator, so the same
points and seed give the same labels.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch


@dataclass(frozen=True)
class KMeansResult:
    """Outcome of :func:`kmeans`.

    Attributes:
        labels: cluster of each point, ``(N,)`` int64 in ``[0, Q)``; every cluster is non-empty.
        centroids: ``(Q, D)`` cluster means.
        inertia: sum of squared distances of the points to their centroids.
        iterations: Lloyd iterations of the best restart.
    """

    labels: torch.Tensor
    centroids: torch.Tensor
    inertia: float
    iterations: int


@dataclass(frozen=True)
class SpectralResult:
    """Outcome of :func:`spectral_clustering`.

    Attributes:
        labels: cluster of each point, ``(N,)`` int64.
        embedding: ``B`` of eq. 16, the rows ``q_n = [u_n2 … u_n(K+1)]``, shape ``(N, K)``.
        eigenvalues: the ``K + 1`` smallest Laplacian eigenvalues (λ₁ ≤ … ≤ λ_{K+1}).
        scale: the distance scale used in eq. 17 (1 for the other similarities).
    """

    labels: torch.Tensor
    embedding: torch.Tensor
    eigenvalues: torch.Tensor
    scale: float


def _check_points(points: torch.Tensor, q: int) -> torch.Tensor:
    if points.dim() != 2:
        raise ValueError(f"Expected points as an N×D matrix, got shape {tuple(points.shape)}.")
    n = points.shape[0]
    if not 2 <= q <= n:
        raise ValueError(f"The number of clusters Q must be between 2 and the number of points ({n}); got {q}.")
    if not torch.isfinite(points).all():
        raise ValueError("The points contain NaN or infinite values.")
    distinct = q if _distinct_at_least(points, q) else torch.unique(points, dim=0).shape[0]
    if distinct < q:
        raise ValueError(
            f"Only {distinct} of the {n} points are distinct, so they cannot form Q = {q} "
            f"non-empty clusters; choose Q ≤ {distinct}."
        )
    points = points.float() if not points.is_floating_point() else points
    # Feature maps often come channels-last, making the N×D view a transposed one: matrix
    # products on it are ~10× slower than on a contiguous copy.
    return points.contiguous()


def _distinct_at_least(points: torch.Tensor, q: int) -> bool:
    """Whether there are surely ≥ ``q`` distinct rows, cheaply: a hash of each row's bits, in exact
    integer arithmetic (so equal rows always hash alike, whatever the memory layout; -0.0 is made
    0.0 first), and rows with different hashes are different rows. ≥ ``q`` distinct hashes suffice
    (a sort of N numbers instead of N rows); False only means "count exactly"."""
    canonical = (points.to(torch.float32) + 0.0).contiguous()  # float32: merging rows only undercounts
    bits = torch.remainder(canonical.view(torch.int32).to(torch.int64), 1_000_003)
    weights = torch.remainder(torch.arange(1, points.shape[1] + 1, device=points.device) * 7_919, 1_000_033) + 1
    return torch.unique((bits * weights).sum(1)).numel() >= q


def _wide_dtype(device: torch.device) -> torch.dtype:
    """float64 for numerically delicate steps, except on Apple's MPS, which has no float64."""
    return torch.float32 if device.type == "mps" else torch.float64


def squared_distances(
    points: torch.Tensor, centroids: torch.Tensor, point_norms: torch.Tensor | None = None
) -> torch.Tensor:
    """``(N, Q)`` squared Euclidean distances, ‖x‖² + ‖c‖² − 2x·c clamped at 0.

    ``point_norms`` (``‖x‖²`` as an ``(N, 1)`` column) saves recomputing them on every iteration.
    """
    if point_norms is None:
        point_norms = points.square().sum(1, keepdim=True)
    return torch.addmm(point_norms + centroids.square().sum(1), points, centroids.T, alpha=-2).clamp_min_(0)


def _kmeans_plus_plus(points: torch.Tensor, q: int, generator: torch.Generator) -> torch.Tensor:
    """k-means++ seeding (Arthur & Vassilvitskii, 2007): each new centre drawn ∝ D²."""
    n = points.shape[0]
    norms = points.square().sum(1, keepdim=True)
    first = int(torch.randint(n, (1,), generator=generator))
    centres = [points[first]]
    closest = squared_distances(points, points[first : first + 1], norms).squeeze(1)
    for _ in range(1, q):
        weights = closest.detach().to("cpu", torch.float64)
        if weights.sum() <= 0:  # remaining points coincide with centres
            weights = torch.ones(n, dtype=torch.float64)
        index = int(torch.multinomial(weights, 1, generator=generator))
        centres.append(points[index])
        closest = torch.minimum(closest, squared_distances(points, points[index : index + 1], norms).squeeze(1))
    return torch.stack(centres)


def _fill_empty_clusters(points: torch.Tensor, labels: torch.Tensor, centroids: torch.Tensor, q: int) -> torch.Tensor:
    """Re-seed empty clusters with the points farthest from their centroid (never emptying another)."""
    counts = torch.bincount(labels, minlength=q)
    empty = (counts == 0).nonzero().flatten().tolist()
    if not empty:
        return labels
    labels = labels.clone()
    far = (points - centroids[labels]).square().sum(1)
    for cluster in empty:
        movable = counts[labels] > 1
        candidates = torch.where(movable, far, torch.full_like(far, -1.0))
        index = int(candidates.argmax())
        counts[labels[index]] -= 1
        counts[cluster] += 1
        labels[index] = cluster
        far[index] = -1.0
    return labels


def _lloyd(points: torch.Tensor, starts: torch.Tensor, max_iter: int) -> list[KMeansResult]:
    """Lloyd's iterations for ``R`` restarts at once (``starts``: ``(R, Q, D)`` initial centroids).

    The restarts run side by side as batched tensor operations; each follows exactly the
    iterations it would follow alone (one that has converged sits at its fixed point).
    """
    restarts, q, dim = starts.shape
    norms = points.square().sum(1)
    offsets = (torch.arange(restarts, device=points.device) * q)[:, None]
    stacked = points.repeat(restarts, 1)

    def assign(centroids: torch.Tensor) -> torch.Tensor:  # (R, Q, D) → (R, N) nearest centroid
        # one N × (R·Q) product rather than R broadcast ones (which copy the points R times);
        # the same labels on 900 clusterings of ILSVRC photographs (Lite0 bn2 / blocks.4, Q 3, 6, 8)
        cross = (points @ centroids.reshape(restarts * q, dim).T).view(-1, restarts, q).transpose(0, 1)
        return (norms[None, :, None] + centroids.square().sum(2)[:, None, :] - 2 * cross).argmin(2)

    centroids = starts
    labels = assign(centroids)
    iterations = [max_iter] * restarts
    running = list(range(restarts))
    for iteration in range(1, max_iter + 1):
        flat = (labels + offsets).flatten()
        counts = torch.bincount(flat, minlength=restarts * q)
        emptied = (counts.view(restarts, q) == 0).any(1).nonzero().flatten().tolist()
        for restart in emptied:
            labels[restart] = _fill_empty_clusters(points, labels[restart], centroids[restart], q)
        if emptied:  # counted again only when a re-seed moved points
            flat = (labels + offsets).flatten()
            counts = torch.bincount(flat, minlength=restarts * q)
        counts = counts.to(points.dtype)
        sums = torch.zeros(restarts * q, dim, dtype=points.dtype, device=points.device).index_add_(0, flat, stacked)
        centroids = (sums / counts[:, None]).view(restarts, q, dim)
        new_labels = assign(centroids)
        changed = (new_labels != labels).any(1).tolist()
        for restart in [r for r in running if not changed[r]]:
            iterations[restart] = iteration
            running.remove(restart)
        if not running or iteration == max_iter:
            break  # ``labels`` stay those the centroids were computed from: none is empty
        labels = new_labels
    nearest = centroids.gather(1, labels[:, :, None].expand(-1, -1, dim))
    inertias = (points[None] - nearest).square().sum((1, 2)).tolist()
    return [KMeansResult(labels[r], centroids[r], inertias[r], iterations[r]) for r in range(restarts)]


def kmeans(
    points: torch.Tensor,
    q: int,
    *,
    seed: int = 0,
    n_init: int = 4,
    max_iter: int = 100,
) -> KMeansResult:
    """K-means of ``N`` points into ``Q`` clusters (the paper's §3.1, with k-means++ seeding).

    Lloyd's algorithm: assign each point to its nearest mean, recompute the means, repeat until no
    point changes cluster. A cluster that empties is re-seeded with the point farthest from its
    centroid. ``n_init`` seeded restarts (run side by side as batched tensor operations); the
    lowest inertia wins.

    Raises:
        ValueError: ``Q`` outside ``[2, N]``, NaN/inf points, or fewer than ``Q`` distinct points.
    """
    points = _check_points(points, q)
    if n_init < 1 or max_iter < 1:
        raise ValueError("n_init and max_iter must be at least 1.")
    # Work in float64, centred and in units of the largest |value|: labels are invariant to both,
    # the squared distances of any float32 input can neither overflow nor underflow, and
    # centring keeps ‖x‖² + ‖c‖² − 2x·c from cancelling away the differences between points.
    wide = _wide_dtype(points.device)
    centre = points.to(wide).mean(0)
    centred = points.to(wide) - centre
    unit = centred.abs().max().clamp_min(torch.finfo(wide).tiny)
    scaled = centred / unit
    starts = torch.stack([
        _kmeans_plus_plus(scaled, q, torch.Generator().manual_seed(seed * 1_000_003 + restart))
        for restart in range(n_init)
    ])
    results = _lloyd(scaled, starts, max_iter)
    best = min(results, key=lambda result: result.inertia)  # the first of equals, as one by one
    centroids = (best.centroids * unit + centre).to(points.dtype)
    return KMeansResult(best.labels, centroids, best.inertia * float(unit) ** 2, best.iterations)


def pairwise_distances(points: torch.Tensor) -> torch.Tensor:
    """``d(i, j) = ‖F_i − F_j‖`` for all pairs, ``(N, N)``."""
    return squared_distances(points, points).sqrt()


def similarity_matrix(distances: torch.Tensor, scale: float) -> torch.Tensor:
    """Eq. 17 with a distance scale: ``S(i, j) = exp(−‖F_i − F_j‖ / scale)``.

    The paper's ``exp(−‖F_i − F_j‖)`` is ``scale = 1``; for feature maps with norms in the tens or
    hundreds it is 0 for every pair, so :func:`spectral_clustering` divides distances by their
    median by default (``S`` is then ``1/e`` at the median distance, whatever the layer's units).
    """
    if scale <= 0:
        raise ValueError(f"The distance scale must be positive; got {scale}.")
    return torch.exp(-distances / scale)


def euclidean_similarity(points: torch.Tensor, scale: float | None = None) -> tuple[torch.Tensor, float]:
    """Eq. 17 on ``(N, D)`` points: ``(S, scale)``; ``scale`` defaults to the median distance."""
    distances = pairwise_distances(points)
    if scale is None:
        n = points.shape[0]
        off_diagonal = distances[~torch.eye(n, dtype=torch.bool, device=distances.device)]
        median = float(off_diagonal.median())
        scale = median if median > 0 else 1.0
    return similarity_matrix(distances, scale), float(scale)


def _standardised(points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows centred and scaled to unit norm, and which rows were constant (left at 0)."""
    centred = points - points.mean(1, keepdim=True)
    norms = centred.norm(dim=1, keepdim=True)
    constant = norms.squeeze(1) <= 1e-12 * points.abs().amax(1).clamp_min(1e-30)
    return torch.where(constant[:, None], torch.zeros_like(centred), centred / norms.clamp_min(1e-300)), constant


def correlation_similarity(points: torch.Tensor) -> torch.Tensor:
    """``S(i, j) = (1 + r_ij) / 2`` with ``r_ij`` the Pearson correlation of maps ``i`` and ``j``.

    A similarity by *shape*: it ignores each map's magnitude and offset, so two maps that fire on
    the same region are similar however strongly they fire. In ``[0, 1]`` like SSIM (eq. 10).
    Spatially constant maps (e.g. the all-zero maps after a ReLU) have no shape: they are
    identical to each other (``S = 1``) and uncorrelated with every other map (``S = 1/2``).
    """
    unit, constant = _standardised(points)
    r = (unit @ unit.T).clamp(-1.0, 1.0)
    r = torch.where(constant[:, None] & constant[None, :], torch.ones_like(r), r)
    return (1.0 + r) / 2.0


#: SSIM's stabilising constants for data in [0, 1] (Wang et al. 2004): (0.01·L)², (0.03·L)², L = 1.
SSIM_C1, SSIM_C2 = 0.01**2, 0.03**2
SSIM_WINDOW = 7


def ssim_similarity(maps: torch.Tensor, window: int = SSIM_WINDOW) -> torch.Tensor:
    """Pairwise mean SSIM of ``(N, h, w)`` maps, each min–max scaled to ``[0, 1]`` first, clamped at 0.

    Eq. 10 with the structural similarity index (Wang et al. 2004) as the paper suggests: for every
    ``window × window`` patch lying wholly inside the map (a 7×7 map is one patch),
    ``SSIM = (2μ_iμ_j + C1)(2σ_ij + C2) / ((μ_i² + μ_j² + C1)(σ_i² + σ_j² + C2))`` with sample
    (co)variances, averaged over the patches: the same figure as
    ``skimage.metrics.structural_similarity(x, y, win_size=window, data_range=1)``. Scaling each
    map to ``[0, 1]`` first makes SSIM compare where maps fire, not how strongly. The window
    shrinks to the largest odd size that fits smaller maps. Negative SSIM (anti-correlated
    structure) counts as no similarity (0), so ``S ∈ [0, 1]`` as eq. 11 assumes.
    """
    n, height, width = maps.shape
    window = min(window, height, width)
    window -= 1 - window % 2  # odd
    if window < 1:
        raise ValueError("SSIM needs maps of at least 1×1 pixel.")
    flat = maps.flatten(1)
    low, high = flat.amin(1, keepdim=True), flat.amax(1, keepdim=True)
    span = high - low
    scaled = torch.where(span > 0, (flat - low) / span.clamp_min(1e-300), torch.zeros_like(flat)).view(n, height, width)
    patches = scaled[:, None].unfold(2, window, 1).unfold(3, window, 1).reshape(n, -1, window * window)  # (N, P, W²)
    size = window * window
    correction = size / (size - 1) if size > 1 else 1.0  # sample (co)variances, as skimage
    means = patches.mean(2)  # (N, P)
    variances = (patches.square().mean(2) - means.square()) * correction
    total = torch.zeros(n, n, dtype=maps.dtype, device=maps.device)
    step = max(1, 20_000_000 // max(1, n * n))
    for start in range(0, patches.shape[1], step):
        part = slice(start, start + step)
        mu, var = means[:, part].T, variances[:, part].T  # (p, N)
        cross = torch.einsum("ipk,jpk->pij", patches[:, part], patches[:, part]) / size
        covariance = (cross - mu[:, :, None] * mu[:, None, :]) * correction
        numerator = (2 * mu[:, :, None] * mu[:, None, :] + SSIM_C1) * (2 * covariance + SSIM_C2)
        denominator = (mu[:, :, None].square() + mu[:, None, :].square() + SSIM_C1) * (var[:, :, None] + var[:, None, :] + SSIM_C2)
        total += (numerator / denominator).sum(0)
    return (total / patches.shape[1]).clamp(0.0, 1.0)


Similarity = Literal["euclidean", "ssim", "correlation"]
SIMILARITIES = ("euclidean", "ssim", "correlation")


def adjacency_matrix(similarity: torch.Tensor, *, sigma: float, theta: float) -> torch.Tensor:
    """Eq. 11: ``A(i, j) = exp(−(1 − S(i, j)) / σ)`` where ``S(i, j) > θ``, else 0; no self-loops."""
    if sigma <= 0:
        raise ValueError(f"σ must be positive; got {sigma}.")
    weights = torch.exp(-(1.0 - similarity) / sigma)
    adjacency = torch.where(similarity > theta, weights, torch.zeros_like(weights))
    return adjacency.fill_diagonal_(0.0)


def graph_laplacian(adjacency: torch.Tensor, *, normalized: bool = True) -> torch.Tensor:
    """Eq. 13 ``L = D − A`` or eq. 14 ``L_N = I − D^{-1/2} A D^{-1/2}``.

    An isolated vertex (degree 0) gets ``D^{-1/2} = 0``: its row of ``L_N`` is the identity row,
    an eigenvector of its own with eigenvalue 1, so disconnected graphs cause no division by 0.
    """
    degree = adjacency.sum(1)
    if not normalized:
        return torch.diag(degree) - adjacency
    inv_sqrt = torch.where(degree > 0, degree.clamp_min(1e-300).rsqrt(), torch.zeros_like(degree))
    identity = torch.eye(adjacency.shape[0], dtype=adjacency.dtype, device=adjacency.device)
    return identity - inv_sqrt[:, None] * adjacency * inv_sqrt[None, :]


def spectral_embedding(laplacian: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Eqs. 15–16: the ``K`` smoothest non-trivial eigenvectors ``u_2 … u_{K+1}`` as columns.

    Returns ``(eigenvalues[:K+1], B)``; ``u_1`` (constant for a connected graph) is dropped.
    """
    n = laplacian.shape[0]
    if not 1 <= k <= n - 1:
        raise ValueError(f"The number of eigenvectors K must be between 1 and N − 1 = {n - 1}; got {k}.")
    symmetric = (laplacian + laplacian.T) / 2
    eigenvalues, eigenvectors = torch.linalg.eigh(symmetric)
    return eigenvalues[: k + 1], eigenvectors[:, 1 : k + 1]


def spectral_clustering(
    points: torch.Tensor,
    q: int,
    *,
    n_eigenvectors: int | None = None,
    sigma: float = 0.2,
    theta: float = 0.0,
    laplacian: Literal["normalized", "unnormalized"] = "normalized",
    similarity: Similarity = "euclidean",
    normalize_rows: bool = False,
    map_shape: tuple[int, int] | None = None,
    scale: float | None = None,
    seed: int = 0,
    n_init: int = 4,
) -> SpectralResult:
    """Spectral clustering of feature maps following the paper's eqs. 10–17.

    1. the similarity ``S`` (eq. 10): ``"euclidean"``, eq. 17's ``exp(−‖F_i − F_j‖ / scale)``;
       ``"ssim"``, the structural similarity the paper names under eq. 10
       (:func:`ssim_similarity`); or ``"correlation"``, ``(1 + r_ij) / 2`` with the Pearson
       correlation of the two maps (:func:`correlation_similarity`);
    2. adjacency ``A`` with threshold θ and σ (eq. 11);
    3. Laplacian ``L = D − A`` (eq. 13) or its normalised form ``L_N`` (eq. 14);
    4. the ``K`` smoothest non-trivial eigenvectors ``u_2 … u_{K+1}`` as the rows ``q_n`` of ``B``
       (eqs. 15–16), with ``normalize_rows`` each row scaled to unit length first (the
       normalised spectral clustering of Ng, Jordan & Weiss, 2001);
    5. K-means of the rows ``q_n`` into ``Q`` clusters.

    **Why the similarity matters.** Eq. 17 compares maps by Euclidean distance, which on a real
    layer is dominated by how *strongly* a map fires: the graph's smoothest eigenvectors then sort
    the maps by magnitude (strong, weak, silent) and each cluster mixes every region of the image,
    so base and scissors stop following the target class. ``"ssim"`` and ``"correlation"``
    compare maps by *where* they fire (both are blind to a map's scale), which is what a
    cognition-base and -scissors need.

    Args:
        n_eigenvectors: ``K``; default ``Q − 1`` (for ``Q = 2`` the Fiedler vector alone).
        sigma: σ of eq. 11. Smaller σ sharpens the contrast between near and far maps.
        theta: θ of eq. 11, in ``[0, 1)``; pairs with ``S ≤ θ`` get no edge.
        laplacian: ``"normalized"`` (eq. 14, default) or ``"unnormalized"`` (eq. 13).
        similarity: ``"euclidean"`` (eq. 17), ``"ssim"`` or ``"correlation"``.
        normalize_rows: scale the rows of ``B`` to unit length before K-means.
        map_shape: ``(h, w)`` of each map (the points are the flattened maps); needed by
            ``"ssim"``, which compares local patches.
        scale: distance scale of eq. 17; default the median pairwise distance (1 if that is 0).

    Raises:
        ValueError: bad ``Q``/``K``/σ/θ/similarity, NaN/inf points, or fewer than ``Q`` distinct points.
    """
    points = _check_points(points, q)
    n = points.shape[0]
    k = q - 1 if n_eigenvectors is None else n_eigenvectors
    if not 1 <= k <= n - 1:
        raise ValueError(f"The number of eigenvectors K must be between 1 and N − 1 = {n - 1}; got {k}.")
    if not 0.0 <= theta < 1.0:
        raise ValueError(f"θ must be in [0, 1); got {theta}.")
    if laplacian not in ("normalized", "unnormalized"):
        raise ValueError(f"laplacian must be 'normalized' or 'unnormalized'; got {laplacian!r}.")
    if similarity not in SIMILARITIES:
        raise ValueError(f"similarity must be one of {', '.join(SIMILARITIES)}; got {similarity!r}.")
    wide = points.to(_wide_dtype(points.device))
    used_scale = 1.0
    if similarity == "euclidean":
        similarities, used_scale = euclidean_similarity(wide, scale)
    elif similarity == "correlation":
        similarities = correlation_similarity(wide)
    else:
        if map_shape is None or map_shape[0] * map_shape[1] != points.shape[1]:
            raise ValueError(f"SSIM needs map_shape=(h, w) with h·w = {points.shape[1]}; got {map_shape}.")
        similarities = ssim_similarity(wide.view(n, *map_shape))
    adjacency = adjacency_matrix(similarities, sigma=sigma, theta=theta)
    lap = graph_laplacian(adjacency, normalized=laplacian == "normalized")
    eigenvalues, embedding = spectral_embedding(lap, k)
    if normalize_rows:
        embedding = embedding / embedding.norm(dim=1, keepdim=True).clamp_min(1e-12)
    embedding = embedding.to(points.dtype)
    # Rows of B may coincide (e.g. vertices of a disconnected component): cluster on the distinct
    # rows' geometry but never ask for more clusters than there are distinct rows.
    labels = _cluster_rows(embedding, points, q, seed=seed, n_init=n_init)
    return SpectralResult(labels, embedding, eigenvalues.to(points.dtype), float(used_scale))


def _cluster_rows(embedding: torch.Tensor, points: torch.Tensor, q: int, *, seed: int, n_init: int) -> torch.Tensor:
    distinct_rows = torch.unique(embedding, dim=0).shape[0]
    if distinct_rows >= q:
        return kmeans(embedding, q, seed=seed, n_init=n_init).labels
    # Degenerate spectrum (fewer distinct spectral vectors than clusters): append the raw maps,
    # scaled down so the spectral coordinates still dominate, to break the ties.
    spread = points.std().clamp_min(1e-12)
    augmented = torch.cat([embedding, 1e-3 * points / spread], dim=1)
    return kmeans(augmented, q, seed=seed, n_init=n_init).labels


def cluster_quality(points: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    """How well ``labels`` separate ``points`` (scikit-learn's ``sklearn.metrics``).

    - ``silhouette`` in ``[−1, 1]``: mean over points of ``(b − a) / max(a, b)``, ``a`` the mean
      distance to the own cluster, ``b`` to the nearest other cluster (higher: better separated);
    - ``calinski_harabasz`` ≥ 0: between-cluster over within-cluster dispersion, each divided by
      its degrees of freedom (higher: better separated).

    The paper leaves ``Q`` to the user; these scores, computed for ``Q = 2…8`` on one image's
    feature maps (each map a point, as clustered), are what the CLI summary and the app's Q sweep
    show. Whether they pick a *good* ``Q`` for the heatmap is measured in ``docs/benchmarks.md``.
    Both are ``nan`` when there is a single cluster or every point is its own cluster.
    """
    from sklearn.metrics import calinski_harabasz_score, silhouette_score

    x = points.detach().flatten(1).double().cpu().numpy()
    y = labels.detach().cpu().numpy()
    clusters = len(set(y.tolist()))
    if not 2 <= clusters <= len(y) - 1:
        return {"silhouette": float("nan"), "calinski_harabasz": float("nan")}
    return {"silhouette": float(silhouette_score(x, y)), "calinski_harabasz": float(calinski_harabasz_score(x, y))}
