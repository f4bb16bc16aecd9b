import numpy as np
import pytest

from calr_core.cluster.knn import _faiss, _has_faiss_gpu, knn
from tests.cluster.helpers import clustered

# Each backend runs only where it can: faiss needs the package, faiss-gpu a faiss built with GPU
# support that sees a GPU (a CUDA machine without faiss skips both). "torch" uses CUDA when present.
_FAISS = _faiss()
BACKENDS = [
    "blas",
    pytest.param("faiss", marks=pytest.mark.skipif(_FAISS is None, reason="faiss is not importable")),
    "torch",
    pytest.param("faiss-gpu", marks=pytest.mark.skipif(not _has_faiss_gpu(_FAISS),
                                                       reason="no faiss with GPU support seeing a GPU")),
]


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


@pytest.mark.parametrize("chunk", [1, 7, 64, 499, 500, 4096])
def test_blas_any_block_size(chunk):
    """Blocks that do not divide N, one row, one block: the exact top k every time."""
    x = clustered(500, seed=4)
    x[40:52] = x[40]  # exact ties too
    sims, idx = knn(x, 15, backend="blas", chunk=chunk)
    full = x.astype(np.float64) @ x.T.astype(np.float64)
    np.testing.assert_array_equal(idx[:, 0], np.arange(500))
    for i in range(500):
        assert len(set(idx[i])) == 15
        np.testing.assert_allclose(sims[i], full[i, idx[i]], atol=1e-5)
        np.testing.assert_allclose(np.sort(sims[i, 1:]), np.sort(np.delete(full[i], i))[-14:], atol=1e-5)


def test_knn_bad_input():
    with pytest.raises(ValueError, match="k=11"):
        knn(clustered(10), 11)
    with pytest.raises(ValueError, match="backend"):
        knn(clustered(10), 3, backend="annoy")
    with pytest.raises(ValueError, match="2-d"):
        knn(np.zeros(5, np.float32), 1)
