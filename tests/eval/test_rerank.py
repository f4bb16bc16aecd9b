import numpy as np
import pytest

from calr_core.eval import rank_metrics, rerank_distance, rerank_evaluate
from tests.cluster.reference import reference_jaccard


def dense_rerank(q, g, k1, k2, lam):
    """The Cluster-Contrast form on dense (N, N) matrices, with the brute-force Jaccard oracle."""
    x = np.concatenate([q, g]).astype(np.float64)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    nq = len(q)
    jac = reference_jaccard(x.astype(np.float32), k1=k1, k2=k2).astype(np.float64)  # unstored pairs: 1
    orig = ((x[:, None, :] - x[None, :, :]) ** 2).sum(-1)  # (N, N) squared Euclidean
    orig /= orig.max(axis=1, keepdims=True)
    return ((1 - lam) * jac + lam * orig)[:nq, nq:]


def zhong_rerank(q, g, k1, k2, lam):
    """Zhong et al. 2017, Algorithm as published, on dense (N, N) float64 matrices: squared
    Euclidean distances scaled by each row's maximum; R from the first k1 + 1 ranks; the 2/3
    expansion over round(k1/2) + 1 ranks; V = exp(-d) normalised over E_i; query expansion over
    the first k2 ranks; Jaccard 1 - sum min / sum max; (1 - lambda) J + lambda d."""
    x = np.concatenate([q, g]).astype(np.float64)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    n, nq = len(x), len(q)
    d = ((x[:, None, :] - x[None, :, :]) ** 2).sum(-1)
    d /= d.max(axis=1, keepdims=True)
    rank = np.argsort(d, axis=1, kind="stable")

    def reciprocal(i, k):
        fwd = rank[i, :k + 1]
        return [j for j in fwd if i in rank[j, :k + 1]]

    v = np.zeros((n, n))
    for i in range(n):
        r = reciprocal(i, k1)
        e = set(r)
        for c in r:
            rc = reciprocal(c, int(np.around(k1 / 2)))
            if len(set(rc) & set(r)) > 2 / 3 * len(rc):
                e |= set(rc)
        e = sorted(e)
        w = np.exp(-d[i, e])
        v[i, e] = w / w.sum()
    if k2 > 1:
        v = np.stack([v[rank[i, :k2]].mean(axis=0) for i in range(n)])
    jac = np.array([[1 - np.minimum(v[i], v[j]).sum() / np.maximum(v[i], v[j]).sum() for j in range(n)]
                    for i in range(nq)])
    return ((1 - lam) * jac + lam * d[:nq])[:, nq:]


@pytest.mark.parametrize("seed,k1,k2", [(3, 20, 6), (4, 7, 1), (5, 12, 3)])
def test_published_rerank_matches_the_papers_algorithm(seed, k1, k2):
    q, g, *_ = features(seed)
    got = rerank_distance(q, g, k1=k1, k2=k2, lambda_=0.3)  # form="zhong", the default
    ref = zhong_rerank(q, g, k1, k2, 0.3)
    np.testing.assert_allclose(got, ref, atol=2e-6)
    assert (ref < 0.7).any()
    other = rerank_distance(q, g, k1=k1, k2=k2, lambda_=0.3, form="cluster-contrast")
    assert np.abs(other - ref).max() > 1e-3  # the clustering's form is another distance


def features(seed, Q=30, G=90, D=12, n_ids=12, n_cams=3):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_ids, D))
    qp, gp = rng.integers(0, n_ids, Q), rng.integers(0, n_ids, G)
    q = (centres[qp] + 0.7 * rng.normal(size=(Q, D))).astype(np.float32)
    g = (centres[gp] + 0.7 * rng.normal(size=(G, D))).astype(np.float32)
    return q, g, qp, gp, rng.integers(0, n_cams, Q), rng.integers(0, n_cams, G)


@pytest.mark.parametrize("seed,chunk", [(0, 1024), (1, 7)])
def test_rerank_matches_dense_formula(seed, chunk):
    q, g, qp, gp, qc, gc = features(seed)
    k1, k2, lam = 20, 6, 0.3
    got = rerank_distance(q, g, k1=k1, k2=k2, lambda_=lam, chunk=chunk, form="cluster-contrast")
    ref = dense_rerank(q, g, k1, k2, lam)
    assert got.shape == (len(q), len(g))
    np.testing.assert_allclose(got, ref, atol=1e-6)  # measured max 3.5e-7 (float32)
    assert (ref < 1 - lam).any()  # some pairs do get a Jaccard below 1
    res = rerank_evaluate(q, g, qp, gp, qc, gc, k1=k1, k2=k2, lambda_=lam, chunk=chunk, form="cluster-contrast")
    full = rank_metrics(got, qp, gp, qc, gc)
    assert res["mAP"] == full["mAP"] and res["mINP"] == full["mINP"]
    np.testing.assert_array_equal(res["cmc"], full["cmc"])


def test_lambda_one_is_original_ranking():
    q, g, qp, gp, qc, gc = features(2)
    d = rerank_distance(q, g, lambda_=1.0, form="cluster-contrast")
    ref = dense_rerank(q, g, 20, 6, 1.0)
    np.testing.assert_allclose(d, ref, atol=1e-6)  # measured max 1.4e-7 (float32)
    with pytest.raises(ValueError, match="lambda_"):
        rerank_distance(q, g, lambda_=1.5)
