"""Approximate kNN (faiss IVF / HNSW) against a brute-force search written here."""
import numpy as np
import pytest

pytest.importorskip("faiss")  # a required package; the import is what this file tests

from calr_core.cluster.ann import default_nlist  # noqa: E402
from calr_core.cluster.clusterers import infomap_cluster  # noqa: E402
from calr_core.cluster.knn import knn  # noqa: E402
from calr_core.config import ParamsError, load_params  # noqa: E402
from tests.cluster.helpers import clustered  # noqa: E402


def brute_force(x: np.ndarray, k: int) -> np.ndarray:
    sims = x.astype(np.float64) @ x.astype(np.float64).T
    return np.argsort(-sims, axis=1, kind="stable")[:, :k]


def recall(idx: np.ndarray, exact: np.ndarray) -> float:
    return float(np.mean([len(set(a) & set(b)) / len(b) for a, b in zip(idx, exact)]))


@pytest.mark.parametrize("index", ["ivf", "hnsw"])
@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_recall_against_brute_force(index, dtype):
    x = clustered(3000, d=64, n_clusters=60, noise=0.6, seed=3)
    sims, idx = knn(x.astype(dtype), 15, index=index)
    assert sims.shape == idx.shape == (3000, 15) and sims.dtype == np.float32 and idx.dtype == np.int64
    np.testing.assert_array_equal(idx[:, 0], np.arange(3000))  # self first, as the exact search
    assert recall(idx, brute_force(x, 15)) >= 0.95
    found = np.take_along_axis(x.astype(np.float64) @ x.astype(np.float64).T, idx, 1)
    np.testing.assert_allclose(sims[:, 1:], found[:, 1:], atol=2e-3)  # fp16 storage: ~1e-3
    assert (np.diff(sims[:, 1:], axis=1) <= 1e-6).all()  # by decreasing similarity


def test_ivf_scanning_every_cell_is_the_exact_search():
    x = clustered(800, d=32, n_clusters=15, seed=4)
    _, idx = knn(x, 10, index="ivf", nprobe=default_nlist(800))
    assert recall(idx, brute_force(x, 10)) >= 0.999  # only fp16 rounding can swap near-ties


def test_the_same_input_gives_the_same_neighbours():
    x = clustered(2000, d=32, n_clusters=40, seed=5)
    for index in ("ivf", "hnsw"):
        a, b = knn(x, 12, index=index), knn(x, 12, index=index)
        np.testing.assert_array_equal(a[1], b[1])
        np.testing.assert_array_equal(a[0], b[0])


def test_a_neighbour_the_index_cannot_fill_is_the_sample_itself():
    x = clustered(200, d=16, n_clusters=5, seed=6)  # 5 cells, one scanned: fewer than k rows
    sims, idx = knn(x, 120, index="ivf", nprobe=1)
    assert (idx >= 0).all() and (idx < 200).all()
    np.testing.assert_array_equal(idx[:, 0], np.arange(200))
    filled = (idx == np.arange(200)[:, None]) & (np.arange(120) > 0)  # self again, past column 0
    assert filled.any() and (sims[filled] == -1).all()


def test_infomap_on_an_approximate_graph_finds_the_same_clusters():
    x = clustered(2000, d=32, n_clusters=40, noise=0.3, seed=7)
    exact = infomap_cluster(x, k=15).labels
    for index in ("ivf", "hnsw"):
        approx = infomap_cluster(x.astype(np.float16), k=15, knn_index=index).labels
        same = exact[:, None] == exact[None, :]
        assert ((approx[:, None] == approx[None, :]) == same).mean() > 0.999


def test_params_refuse_an_approximate_index_with_dbscan(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("cluster:\n  method: dbscan\n  refine: false\n  knn: ivf\n")
    with pytest.raises(ParamsError, match="cluster.knn: ivf applies to method infomap"):
        load_params(path)
    path.write_text("cluster:\n  knn: hnsw\n  knn_ef: 10\n")
    with pytest.raises(ParamsError, match="knn_ef >= cluster.k1"):
        load_params(path)
