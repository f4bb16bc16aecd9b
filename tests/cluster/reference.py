"""Dense, loop-by-loop k-reciprocal Jaccard distance: the published algorithm (Zhong et al. 2017,
Cluster-Contrast conventions, docs/method.md "k-reciprocal Jaccard distance"), written plainly as
the oracle for tests and the baseline for benchmarks/bench_jaccard.py. O(N^2) memory: small N only
(or one benchmark run).
"""
from __future__ import annotations

import numpy as np


def dense_rank(features: np.ndarray, k1: int) -> np.ndarray:
    """kNN list (N, k1) by brute force: stable sort of -cos, the sample itself forced first."""
    sims = features.astype(np.float64) @ features.astype(np.float64).T
    rank = np.empty((len(features), k1), dtype=np.int64)
    for i in range(len(features)):
        order = [j for j in np.argsort(-sims[i], kind="stable") if j != i]
        rank[i] = [i] + order[:k1 - 1]
    return rank


def k_reciprocal(rank: np.ndarray, i: int, k: int) -> np.ndarray:
    forward = rank[i, :k + 1]
    return np.array([j for j in forward if i in rank[j, :k + 1]], dtype=np.int64)


def reference_jaccard(features: np.ndarray, k1: int = 30, k2: int = 6,
                      rank: np.ndarray | None = None) -> np.ndarray:
    """Dense (N, N) float32 Jaccard distance. ``rank`` (N, k1) overrides the kNN list (to share
    tie-breaking with the code under test)."""
    feats = features.astype(np.float32)
    n = len(feats)
    rank = dense_rank(feats, k1) if rank is None else rank
    half = int(np.around(k1 / 2))
    nn_k1 = [k_reciprocal(rank, i, k1) for i in range(n)]
    nn_half = [k_reciprocal(rank, i, half) for i in range(n)]

    v = np.zeros((n, n), dtype=np.float32)
    for i in range(n):
        base = nn_k1[i]
        expansion = base
        for cand in base:
            cand_set = nn_half[cand]
            if len(np.intersect1d(cand_set, base)) > 2 / 3 * len(cand_set):
                expansion = np.append(expansion, cand_set)
        expansion = np.unique(expansion)
        dist = 2 - 2 * (feats[i] @ feats[expansion].T)  # float32, like torch.mm in the original
        w = np.exp(-dist - (-dist).max())
        v[i, expansion] = w / w.sum()

    if k2 != 1:
        v_qe = np.zeros_like(v)
        for i in range(n):
            v_qe[i] = v[rank[i, :k2]].mean(axis=0)
        v = v_qe

    inv_index = [np.where(v[:, c] != 0)[0] for c in range(n)]
    jac = np.zeros((n, n), dtype=np.float32)
    for i in range(n):
        temp_min = np.zeros(n, dtype=np.float32)
        for c in np.where(v[i] != 0)[0]:
            rows = inv_index[c]
            temp_min[rows] += np.minimum(v[i, c], v[rows, c])
        jac[i] = 1 - temp_min / (2 - temp_min)
    jac[jac < 0] = 0.0
    return jac
