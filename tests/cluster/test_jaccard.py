import numpy as np
import pytest

from calr_core.cluster.jaccard import jaccard_distance
from calr_core.cluster.knn import knn
from tests.cluster.helpers import clustered
from tests.cluster.reference import reference_jaccard


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
