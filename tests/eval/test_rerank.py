import numpy as np
import pytest

from calr_core.eval import rank_metrics, rerank_distance, rerank_evaluate
from tests.cluster.reference import reference_jaccard


def dense_rerank(q, g, k1, k2, lam):
    """Straightforward formula on dense (N, N) matrices, with the brute-force Jaccard oracle."""
    x = np.concatenate([q, g]).astype(np.float64)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    nq = len(q)
    jac = reference_jaccard(x.astype(np.float32), k1=k1, k2=k2).astype(np.float64)  # unstored pairs: 1
    orig = ((x[:, None, :] - x[None, :, :]) ** 2).sum(-1)  # (N, N) squared Euclidean
    orig /= orig.max(axis=1, keepdims=True)
    return ((1 - lam) * jac + lam * orig)[:nq, nq:]


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
    got = rerank_distance(q, g, k1=k1, k2=k2, lambda_=lam, chunk=chunk)
    ref = dense_rerank(q, g, k1, k2, lam)
    assert got.shape == (len(q), len(g))
    np.testing.assert_allclose(got, ref, atol=1e-6)  # measured max 3.5e-7 (float32)
    assert (ref < 1 - lam).any()  # some pairs do get a Jaccard below 1
    res = rerank_evaluate(q, g, qp, gp, qc, gc, k1=k1, k2=k2, lambda_=lam, chunk=chunk)
    full = rank_metrics(got, qp, gp, qc, gc)
    assert res["mAP"] == full["mAP"] and res["mINP"] == full["mINP"]
    np.testing.assert_array_equal(res["cmc"], full["cmc"])


def test_lambda_one_is_original_ranking():
    q, g, qp, gp, qc, gc = features(2)
    d = rerank_distance(q, g, lambda_=1.0)
    ref = dense_rerank(q, g, 20, 6, 1.0)
    np.testing.assert_allclose(d, ref, atol=1e-6)  # measured max 1.4e-7 (float32)
    with pytest.raises(ValueError, match="lambda_"):
        rerank_distance(q, g, lambda_=1.5)
