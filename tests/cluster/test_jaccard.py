import importlib

import numpy as np
import pytest
import scipy.sparse as sp

from calr_core.cluster.jaccard import jaccard_distance
from calr_core.cluster.knn import knn
from tests.cluster.helpers import clustered
from tests.cluster.reference import reference_jaccard

jaccard = importlib.import_module("calr_core.cluster.jaccard")  # the package re-exports a function of that name


def _dense(j):
    d = np.ones(j.shape, np.float32)
    c = j.tocoo()
    d[c.row, c.col] = c.data
    return d


@pytest.mark.parametrize("n,k1,k2,noise", [(300, 20, 6, 0.5), (250, 15, 4, 0.7), (200, 10, 1, 0.5),
                                           (220, 13, 3, 0.3), (200, 7, 20, 0.5), (240, 30, 6, 1.0)])
def test_matches_reference(n, k1, k2, noise):
    x = clustered(n, noise=noise, seed=n + k1)
    j = jaccard_distance(x, k1=k1, k2=k2)
    ref = reference_jaccard(x, k1=k1, k2=k2)  # its own brute-force kNN: continuous data has no ties
    np.testing.assert_allclose(_dense(j), ref, atol=1e-5)
    assert j.dtype == np.float32 and j.shape == (n, n)
    j.sum_duplicates()
    assert j.nnz == len(j.data)  # no duplicate entries
    np.testing.assert_array_equal(j.diagonal(), 0)
    assert (j.tocsr().data < 1).all()
    stored = np.zeros(j.shape, bool)
    c = j.tocoo()
    stored[c.row, c.col] = True  # explicit zeros included
    assert ((ref < 1) == stored).all()  # stored = exactly the pairs with distance < 1


@pytest.mark.parametrize("k1,k2", [(20, 6), (10, 1)])
def test_matches_reference_with_duplicates(k1, k2):
    x = clustered(300, dup=60, seed=5)
    x[100:130] = x[100]  # a block of 30 identical rows, more than k1
    rank = knn(x, k1)[1]  # shared kNN list: ties among duplicates are broken the same way
    np.testing.assert_allclose(_dense(jaccard_distance(x, k1=k1, k2=k2)), reference_jaccard(x, k1, k2, rank=rank),
                               atol=1e-5)


def _dense_sum_of_min(v: np.ndarray) -> np.ndarray:
    """Brute force steps 6-7 on a dense V: m_ij = sum_c min(V_ic, V_jc), d = 1 - m / (2 - m)."""
    n = len(v)
    d = np.ones((n, n), np.float32)
    for i in range(n):
        for j in range(n):
            if i == j:
                d[i, j] = 0
            elif ((v[i] > 0) & (v[j] > 0)).any():
                m = np.minimum(v[i], v[j]).sum()
                d[i, j] = max(0.0, 1 - m / (2 - m))
    return d


def test_sum_of_min_matches_dense_and_drops_pairs_at_one():
    rng = np.random.default_rng(3)
    v = np.where(rng.random((60, 60)) < 0.1, rng.random((60, 60)), 0)
    v[np.arange(60), np.arange(60)] = 1
    v[:2] = 0  # rows 0 and 1 share only column 2 (with row 2 too), with a weight so small
    v[:, :2] = 0  # that d is 1 in float32
    v[0, [0, 2]] = [1 - 1e-9, 1e-9]
    v[1, [1, 2]] = [1 - 1e-9, 1e-9]
    v /= v.sum(1, keepdims=True)
    got = jaccard._sum_of_min_distance(sp.csr_matrix(v), n_tasks=32)
    want = _dense_sum_of_min(v)
    np.testing.assert_allclose(_dense(got), want, atol=1e-6)
    stored = np.zeros(want.shape, bool)
    c = got.tocoo()
    stored[c.row, c.col] = True
    np.testing.assert_array_equal(stored, want < 1)  # the diagonal stays; (0, 1) and (0, 2) go
    assert not stored[0, 1] and not stored[0, 2] and stored[0, 0]


def test_independent_of_thread_count():
    x = clustered(400, noise=0.6, seed=9)
    one, two = (jaccard_distance(x, k1=20, k2=6, workers=w) for w in (1, 2))
    one.sort_indices()
    two.sort_indices()
    for a, b in zip((one.indptr, one.indices, one.data), (two.indptr, two.indices, two.data)):
        np.testing.assert_array_equal(a, b)


def test_bad_input():
    x = clustered(50)
    bad = x.copy()
    bad[3, 2] = np.nan
    with pytest.raises(ValueError, match="row 3"):
        jaccard_distance(bad, k1=5)
    with pytest.raises(ValueError, match="L2-normalised"):
        jaccard_distance(x * 1.01, k1=5)
    with pytest.raises(ValueError, match="k1=50"):
        jaccard_distance(x, k1=50)
    with pytest.raises(ValueError, match="float32"):
        jaccard_distance(x.astype(np.float64), k1=5)
    with pytest.raises(ValueError, match="2-d"):
        jaccard_distance(x[0], k1=5)
    with pytest.raises(ValueError, match="k2=0"):
        jaccard_distance(x, k1=5, k2=0)
