import warnings

import infomap
import numpy as np
import pytest
import scipy.sparse as sp

from calr_core.cluster.clusterers import (
    agglomerative,
    dbscan,
    densify,
    infomap_cluster,
    knn_graph,
    silhouette,
)
from calr_core.cluster.jaccard import jaccard_distance
from calr_core.cluster.knn import knn
from tests.cluster.helpers import clustered


def _same_partition(a, b):
    pairs_a = a[:, None] == a[None, :]
    pairs_b = b[:, None] == b[None, :]
    return (pairs_a == pairs_b).all()


@pytest.fixture(scope="module")
def jac():
    return jaccard_distance(clustered(200, n_clusters=8, noise=0.4, seed=3), k1=15, k2=4)


def test_dbscan_hand_made():
    # 0-1-2-3 chained within eps, 4 close only to 0, 5 isolated; min_samples=3 counts the point itself
    d = np.ones((6, 6), np.float32)
    np.fill_diagonal(d, 0)
    for i, j, v in [(0, 1, .2), (1, 2, .3), (2, 3, .1), (0, 2, .5), (1, 3, .4), (0, 4, .5), (1, 4, .9)]:
        d[i, j] = d[j, i] = v
    dist = sp.csr_matrix(np.where(d < 1, d, 0))
    dist.setdiag(0)
    labels = dbscan(dist, eps=0.6, min_samples=3)
    np.testing.assert_array_equal(labels, [0, 0, 0, 0, 0, -1])


def test_dbscan_matches_dense(jac):
    from sklearn.cluster import DBSCAN
    expect = DBSCAN(eps=0.6, min_samples=4, metric="precomputed").fit_predict(densify(jac))
    np.testing.assert_array_equal(dbscan(jac), expect)
    assert len(set(expect)) > 2


def _naive_average_linkage(d, k):
    clusters = [[i] for i in range(len(d))]
    while len(clusters) > k:
        best = min(((d[np.ix_(a, b)].mean(), x, y) for x, a in enumerate(clusters)
                    for y, b in enumerate(clusters) if x < y))
        _, x, y = best
        clusters[x] += clusters.pop(y)
    labels = np.empty(len(d), int)
    for c, members in enumerate(clusters):
        labels[members] = c
    return labels


def test_agglomerative_matches_naive():
    x = clustered(40, n_clusters=5, noise=0.8, seed=4)
    j = jaccard_distance(x, k1=8, k2=2)
    d = densify(j)
    d = (d + d.T) / 2
    labels = agglomerative(sp.csr_matrix(d), n_clusters=6)
    assert _same_partition(labels, _naive_average_linkage(d, 6))
    assert len(set(agglomerative(j))) == 40 // 5
    assert len(set(agglomerative(j, ratio=100))) == 1
    with pytest.raises(ValueError, match="n_clusters=41"):
        agglomerative(j, n_clusters=41)


def test_silhouette_matches_loop(jac):
    labels = dbscan(jac)
    d = densify(jac)
    scores = []
    for i in range(len(d)):
        same = (labels == labels[i]) & (np.arange(len(d)) != i)
        if not same.any():
            scores.append(0.0)
            continue
        a = d[i, same].mean()
        b = min(d[i, labels == c].mean() for c in set(labels) if c != labels[i])
        scores.append((b - a) / max(a, b))
    assert silhouette(jac, labels) == pytest.approx(np.mean(scores), abs=1e-5)


def test_silhouette_degenerate(jac):
    with pytest.warns(UserWarning, match="1 distinct labels"):
        assert silhouette(jac, np.zeros(200, np.int64)) == -1.0
    with pytest.raises(ValueError, match="labels"):
        silhouette(jac, np.zeros(3, np.int64))


def _loop_graph(sims, idx, eps):
    n, k = idx.shape
    d = 1 - sims
    d_mean = d.mean(dtype=np.float64)
    edges, density = [], np.zeros(n)
    for i in range(n):
        for a in range(k):
            j = idx[i, a]
            if j == i:
                continue
            if d[i, a] > 1 - eps:
                break
            edges.append((i, j, float(sims[i, a])))
            density[i] += 1 / (d[i, a] + d_mean)
    return edges, density


def _loop_infomap(x, k, eps, min_size, seed):
    sims, idx = knn(x, k)
    edges, density = _loop_graph(sims, idx, eps)
    im = infomap.Infomap(f"--two-level --directed --silent --seed {seed}")
    for i, j, w in edges:
        im.add_link(i, j, w)
    im.run()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        modules = im.get_modules()
    has_edge = {i for i, _, _ in edges}
    raw = [("m", modules[i]) if i in has_edge else ("s", i) for i in range(len(x))]
    sizes = {r: raw.count(r) for r in set(raw)}
    names, labels = {}, []
    for r in raw:
        if sizes[r] <= min_size:
            labels.append(-1)
        else:
            labels.append(names.setdefault(r, len(names)))
    return np.array(labels), density


def test_knn_graph_matches_loop():
    x = clustered(150, noise=0.6, seed=6)
    sims, idx = knn(x, 10)
    sims[5, 3] = 0.1  # a miss in the middle of a row ends the walk there
    src, dst, w, density = knn_graph(sims, idx, eps=0.5)
    edges, ref_density = _loop_graph(sims, idx, 0.5)
    assert list(zip(src.tolist(), dst.tolist(), w.tolist())) == edges
    np.testing.assert_allclose(density, ref_density, rtol=1e-6)
    assert 0 < len(edges) < 150 * 9


@pytest.mark.parametrize("eps,min_size", [(0.5, 4), (0.3, 2), (0.8, 0)])
def test_infomap_matches_loop(eps, min_size):
    x = clustered(200, n_clusters=10, noise=0.7, seed=7)
    res = infomap_cluster(x, k=15, eps=eps, min_size=min_size, seed=1)
    labels, density = _loop_infomap(x, 15, eps, min_size, 1)
    np.testing.assert_array_equal(res.labels, labels)
    np.testing.assert_allclose(res.density, density, rtol=1e-6)
    assert res.labels.dtype == np.int64 and res.density.dtype == np.float32
    sizes = np.bincount(res.labels[res.labels >= 0])
    assert (sizes > min_size).all()
    assert res.labels.max() + 1 == len(sizes) >= 3
