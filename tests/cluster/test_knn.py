import numpy as np
import pytest
import torch

from calr_core.cluster.knn import knn
from tests.cluster.helpers import clustered

BACKENDS = ["faiss", "torch"] + (["faiss-gpu"] if torch.cuda.is_available() else [])


@pytest.mark.parametrize("backend", BACKENDS + ["auto"])
def test_knn_matches_brute_force(backend):
    x = clustered(300, seed=1)
    sims, idx = knn(x, 12, backend=backend, chunk=64)
    assert sims.dtype == np.float32 and idx.dtype == np.int64 and sims.shape == idx.shape == (300, 12)
    full = x.astype(np.float64) @ x.T.astype(np.float64)
    for i in range(300):
        assert idx[i, 0] == i
        expect = np.sort(full[i])[::-1][:12]
        np.testing.assert_allclose(sims[i], expect, atol=1e-5)  # continuous data: no ties
        np.testing.assert_array_equal(np.sort(idx[i]), np.sort(np.argsort(-full[i], kind="stable")[:12]))
        np.testing.assert_allclose(sims[i], full[i, idx[i]], atol=1e-5)


@pytest.mark.parametrize("backend", BACKENDS)
def test_knn_self_first_with_many_duplicates(backend):
    x = clustered(60, seed=2)
    x[10:30] = x[10]  # 20 identical rows, more than k: self may be pushed out of the top k
    sims, idx = knn(x, 8, backend=backend)
    np.testing.assert_array_equal(idx[:, 0], np.arange(60))
    for i in range(60):
        assert len(set(idx[i])) == 8
        np.testing.assert_allclose(sims[i], x[i] @ x[idx[i]].T, atol=1e-5)
        assert np.all(np.diff(sims[i, 1:]) <= 1e-6)
    assert np.all(np.isin(idx[10:30], np.arange(10, 30)))


def test_knn_bad_input():
    with pytest.raises(ValueError, match="k=11"):
        knn(clustered(10), 11)
    with pytest.raises(ValueError, match="backend"):
        knn(clustered(10), 3, backend="annoy")
    with pytest.raises(ValueError, match="2-d"):
        knn(np.zeros(5, np.float32), 1)
