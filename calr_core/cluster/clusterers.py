"""Clustering on the Jaccard distance or on the kNN graph
(docs/method.md "Phase 1: intra-camera training", steps 3 and 5;
docs/method.md "Phase 2: inter-camera training", steps 2-4; and the Cluster-Contrast DBSCAN baseline)."""
from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from calr_core.cluster.knn import Backend, KnnIndex, knn
from calr_core.progress import progress

log = logging.getLogger(__name__)


def _check_square(dist: sp.spmatrix) -> int:
    if not sp.issparse(dist) or dist.ndim != 2 or dist.shape[0] != dist.shape[1]:
        raise ValueError(f"dist: expected a square scipy sparse matrix, got {type(dist).__name__} "
                         f"with shape {getattr(dist, 'shape', None)}")
    return dist.shape[0]


def _check_labels(labels: np.ndarray, n: int) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.shape != (n,) or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels: expected an integer array of shape ({n},), got {labels.dtype} {labels.shape}")
    return labels


def densify(dist: sp.spmatrix) -> np.ndarray:
    """Dense (N, N) float32 distance with 1 for every pair not stored."""
    n = _check_square(dist)
    coo = dist.tocoo()
    dense = np.ones((n, n), np.float32)
    dense[coo.row, coo.col] = coo.data
    return dense


def dbscan(dist: sp.spmatrix, eps: float = 0.6, min_samples: int = 4) -> np.ndarray:
    """DBSCAN on the sparse precomputed distance (only stored entries can be neighbours);
    labels (N,) int64, -1 = outlier. Cluster-Contrast's baseline clustering."""
    _check_square(dist)
    if eps <= 0 or min_samples < 1:
        raise ValueError(f"dbscan: expected eps > 0 and min_samples >= 1, got eps={eps}, min_samples={min_samples}")
    from sklearn.cluster import DBSCAN  # imported here: Infomap runs never pay for sklearn.cluster

    model = DBSCAN(eps=eps, min_samples=min_samples, metric="precomputed")
    return model.fit_predict(sp.csr_matrix(dist)).astype(np.int64)


def agglomerative(dist: sp.spmatrix, n_clusters: int | None = None, ratio: int = 5) -> np.ndarray:
    """Average-linkage agglomerative clustering on the Jaccard matrix densified with 1 for missing
    pairs (phase 1 step 3). n_clusters defaults to N // ratio (at least 1). No outliers."""
    n = _check_square(dist)
    if n_clusters is None:
        if ratio < 1:
            raise ValueError(f"ratio={ratio}: expected >= 1")
        n_clusters = max(1, n // ratio)
    if not 1 <= n_clusters <= n:
        raise ValueError(f"n_clusters={n_clusters}: expected 1 <= n_clusters <= N={n}")
    if n_clusters == n:
        return np.arange(n, dtype=np.int64)
    from sklearn.cluster import AgglomerativeClustering

    model = AgglomerativeClustering(n_clusters=n_clusters, metric="precomputed", linkage="average")
    return model.fit_predict(densify(dist)).astype(np.int64)


def silhouette(dist: sp.spmatrix, labels: np.ndarray) -> float:
    """Silhouette score of ``labels`` on the precomputed distance densified with 1 (phase 1 step 5).

    Every label value, -1 included, is one group. The score needs 2 <= n_labels <= N - 1: outside
    that range it is undefined, so this returns -1.0 (the worst score, never selected) and warns.
    """
    n = _check_square(dist)
    labels = _check_labels(labels, n)
    n_labels = len(np.unique(labels))
    if not 2 <= n_labels <= n - 1:
        warnings.warn(f"silhouette: {n_labels} distinct labels for N={n}; undefined, returning -1.0", stacklevel=2)
        return -1.0
    dense = densify(dist)
    np.fill_diagonal(dense, 0.0)
    from sklearn.metrics import silhouette_score

    return float(silhouette_score(dense, labels, metric="precomputed"))


@dataclass(frozen=True)
class InfomapResult:
    labels: np.ndarray  # (N,) int64, clusters 0..K-1 ordered by their lowest member index, -1 outlier
    density: np.ndarray  # (N,) float32 density score of each node (phase 2 step 3)


def knn_graph(sims: np.ndarray, idx: np.ndarray, eps: float = 0.5) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Directed edges and density of phase 2 step 3 from a self-first kNN list (N, k).

    Each i walks its neighbours by increasing d = 1 - cos, skipping itself, while d <= 1 - eps:
    edge i->j with weight cos_ij, and density_i += 1 / (d_ij + d_mean), d_mean the mean of the
    whole (N, k) distance matrix. Returns (src, dst, weight, density).
    """
    n = len(idx)
    d = 1 - sims  # (N, k)
    d_mean = d.mean(dtype=np.float64)
    not_self = idx != np.arange(n)[:, None]
    ok = np.cumprod((d <= 1 - eps) | ~not_self, axis=1).astype(bool) & not_self  # the walk stops at the first miss
    density = np.where(ok, 1 / (d.astype(np.float64) + d_mean), 0).sum(1).astype(np.float32)
    src = np.broadcast_to(np.arange(n)[:, None], idx.shape)[ok]
    return src, idx[ok], sims[ok].astype(np.float64), density


def _relabel(labels: np.ndarray, min_size: int) -> np.ndarray:
    """Clusters with <= min_size members -> -1, the rest 0..K-1 by lowest member index."""
    _, first, inverse, counts = np.unique(labels, return_index=True, return_inverse=True, return_counts=True)
    big = counts > min_size
    new_id = np.full(len(counts), -1, np.int64)
    order = np.argsort(first[big], kind="stable")
    new_id[np.flatnonzero(big)[order]] = np.arange(int(big.sum()))
    return new_id[inverse.ravel()]


def infomap_cluster(features: np.ndarray, k: int = 15, eps: float = 0.5, min_size: int = 4,
                    seed: int = 1, backend: Backend = "auto", knn_index: KnnIndex = "exact",
                    nprobe: int = 16, ef: int = 128) -> InfomapResult:
    """Infomap clustering of the thresholded kNN graph (phase 2 steps 2-4): ``knn`` of the
    features, then ``infomap_on_knn``. knn_index: ``exact``, or an approximate faiss ``ivf`` /
    ``hnsw`` index (``nprobe``, ``ef``) for a million images; features may then be float16."""
    if not isinstance(features, np.ndarray) or features.ndim != 2 or not all(
            np.isfinite(features[a:a + 16384]).all() for a in range(0, len(features), 16384)):
        raise ValueError(f"features: expected a finite 2-d (N, D) array, got shape {getattr(features, 'shape', None)}")
    if not 1 <= k <= len(features):
        raise ValueError(f"k={k}: expected 1 <= k <= N={len(features)}")
    sims, idx = knn(features, k, backend=backend, index=knn_index, nprobe=nprobe, ef=ef, seed=seed)  # (N, k)
    return infomap_on_knn(sims, idx, eps=eps, min_size=min_size, seed=seed)


def infomap_on_knn(sims: np.ndarray, idx: np.ndarray, eps: float = 0.5, min_size: int = 4,
                   seed: int = 1) -> InfomapResult:
    """Two-level directed Infomap on the edges of ``knn_graph`` of a self-first kNN list (N, k);
    a node with no outgoing edge is a singleton (its own cluster, whatever module Infomap put it
    in as a target); clusters with <= min_size members become outliers (-1); the others are
    numbered 0..K-1 by lowest member. ``seed``: Infomap's --seed. The CALR reference never sets
    it, so it runs with Infomap's default 123; calr's default is 1 (cluster.seed), kept so that
    results stay comparable across versions: on a noisy graph the two seeds' partitions agree
    with ARI 0.95 (pass seed=123 for the reference's)."""
    import infomap

    n = len(idx)
    with progress(f"infomap of {n} features", 2, unit="step", step="graph") as bar:
        src, dst, weight, density = knn_graph(sims, idx, eps)
        im = infomap.Infomap(f"--two-level --directed --silent --seed {int(seed)}")
        im.add_links(zip(src.tolist(), dst.tolist(), weight.tolist()))
        bar.advance(1, step="infomap (holds the GIL: no line until it ends)")
        raw = np.zeros(n, np.int64)
        if len(src):
            im.run()
            with warnings.catch_warnings():  # get_modules is deprecated in infomap 2.16, but its Result.modules()
                warnings.simplefilter("ignore")  # iterator crashes when faiss's SWIG module is loaded too
                nodes, modules = zip(*im.get_modules().items())
            raw[list(nodes)] = modules
        bar.advance(1, step="done")
    singleton = np.ones(n, bool)
    singleton[src] = False
    raw[singleton] = -1 - np.flatnonzero(singleton)  # negative ids never clash with Infomap modules
    labels = _relabel(raw, min_size)
    log.info("infomap: N=%d edges=%d clusters=%d outliers=%d", n, len(src), labels.max() + 1, (labels < 0).sum())
    return InfomapResult(labels=labels, density=density)
