"""k-reciprocal Jaccard distance as a sparse matrix (docs/method.md "k-reciprocal Jaccard distance";
docs/method.md "Phase 1: intra-camera training", step 2).
Zhong et al. 2017 with the Cluster-Contrast conventions. Array code where an
array expression says it; compiled numba loops over rows (parallel, each row on its own, so the
result does not depend on the thread count) where a step is a per-row set operation:

1. kNN list of k1 entries, self first (``knn``).
2. R(i, k) = {j in rank[i, :k+1] : i in rank[j, :k+1]} for k = k1 and k = round(k1/2).
3. Expansion E_i = R(i, k1) + R(c, half) for each c in R(i, k1) with
   |R(c, half) & R(i, k1)| > 2/3 |R(c, half)| (marker arrays, one pass to count, one to fill).
4. V_ij = softmax over E_i of -(2 - 2 cos_ij); cosines come from the kNN list where it has them,
   else one dot product per pair.
5. Local query expansion V <- Q @ V, Q the k2-nearest averaging matrix (skipped when k2 = 1).
6. m_ij = sum_c min(V_ic, V_jc) over the pairs that share a column of V: for each row i, walk
   its columns c and each c's rows j (V and its transpose in CSR), accumulating into a dense
   per-thread row (no array expression gives the min). A counting pass sizes the output first,
   so memory is the output plus one N-vector per task.
7. d = 1 - m / (2 - m), clipped at 0; diagonal stored as 0, pairs not stored have distance 1.
"""
from __future__ import annotations

import logging
from typing import Literal

import numba
import numpy as np
import scipy.sparse as sp

from calr_core.cluster.knn import Backend, check_features, knn, numba_threads
from calr_core.progress import progress

log = logging.getLogger(__name__)

JaccardForm = Literal["cluster-contrast", "zhong"]


def _validate(features: np.ndarray, k1: int, k2: int) -> None:
    check_features(features)
    n = len(features)
    if not 1 <= k1 < n:
        raise ValueError(f"k1={k1}: expected 1 <= k1 < N={n}")
    if k2 < 1:
        raise ValueError(f"k2={k2}: expected k2 >= 1")


TASKS_PER_THREAD = 16  # row ranges per thread: rows differ in cost, so more ranges balance better


@numba.njit(inline="always")
def _task_rows(t: int, n: int, n_tasks: int) -> range:
    """Rows of task t when n rows are cut into n_tasks contiguous ranges."""
    step = (n + n_tasks - 1) // n_tasks
    return range(t * step, min(n, (t + 1) * step))


@numba.njit(parallel=True, cache=True, nogil=True)
def _reciprocal(rank: np.ndarray, width: int) -> np.ndarray:
    """(N, width) bool: rank[i, a] is in R(i, width - 1), i.e. i is in rank[rank[i, a], :width]."""
    n = rank.shape[0]
    out = np.zeros((n, width), np.bool_)
    for i in numba.prange(n):
        for a in range(width):
            j = rank[i, a]
            for b in range(width):
                if rank[j, b] == i:
                    out[i, a] = True
                    break
    return out


@numba.njit(parallel=True, cache=True, nogil=True)
def _expansion(x, rank, sims, full, half, scale, n_tasks, fill, counts, out_ptr, out_idx, out_val):
    """Steps 3-4 for every row i. Without ``fill``: counts[i] = |E_i|. With it: row i of V,
    out_idx[out_ptr[i]:] = E_i (in order met), out_val = softmax over E_i of
    -scale[i] (2 - 2 cos), cos from the kNN list where it holds the pair, else a float64 dot
    product."""
    n, k, w1, w2 = rank.shape[0], rank.shape[1], full.shape[1], half.shape[1]
    for t in numba.prange(n_tasks):
        in_r = np.full(n, -1, np.int64)  # in_r[j] == i: j in R(i, k1)
        in_e = np.full(n, -1, np.int64)  # in_e[j] == i: j in E_i
        in_knn = np.full(n, -1, np.int64)  # in_knn[j] == i: j = rank[i, pos[j]]
        pos = np.empty(n, np.int64)
        members = np.empty(w1 * (w2 + 1), np.int64)
        logit = np.empty(w1 * (w2 + 1), np.float64)
        for i in _task_rows(t, n, n_tasks):
            m = 0
            for a in range(w1):
                if full[i, a]:
                    in_r[rank[i, a]] = i
                    in_e[rank[i, a]] = i
                    members[m] = rank[i, a]
                    m += 1
            for a in range(w1):
                if not full[i, a]:
                    continue
                c, size, overlap = rank[i, a], 0, 0
                for b in range(w2):
                    if half[c, b]:
                        size += 1
                        overlap += in_r[rank[c, b]] == i
                if overlap > 2.0 / 3.0 * size:
                    for b in range(w2):
                        j = rank[c, b]
                        if half[c, b] and in_e[j] != i:
                            in_e[j] = i
                            members[m] = j
                            m += 1
            if not fill:
                counts[i] = m
                continue
            for a in range(k):
                in_knn[rank[i, a]] = i
                pos[rank[i, a]] = a
            top = -np.inf
            for e in range(m):
                j = members[e]
                if in_knn[j] == i:
                    cos = np.float64(sims[i, pos[j]])
                else:
                    cos = 0.0
                    for d in range(x.shape[1]):
                        cos += np.float64(x[i, d]) * np.float64(x[j, d])
                logit[e] = -scale[i] * (2.0 - 2.0 * cos)
                top = max(top, logit[e])
            total = 0.0
            for e in range(m):
                logit[e] = np.exp(logit[e] - top)
                total += logit[e]
            for e in range(m):
                out_idx[out_ptr[i] + e] = members[e]
                out_val[out_ptr[i] + e] = logit[e] / total


def _weights(features: np.ndarray, rank: np.ndarray, sims: np.ndarray, k1: int, scale: np.ndarray,
             n_tasks: int) -> sp.csr_matrix:
    """V (steps 2-4): row-wise softmax over the expanded k-reciprocal sets E_i (indices unsorted)."""
    n = len(rank)
    full = _reciprocal(rank, rank.shape[1])  # R(i, k1): the whole list (k1 entries, or k1 + 1)
    half = _reciprocal(rank, int(np.around(k1 / 2)) + 1)  # R(i, round(k1 / 2))
    counts = np.zeros(n, np.int64)
    args = (features, rank, sims, full, half, scale, n_tasks)
    _expansion(*args, False, counts, counts, np.empty(0, np.int64), np.empty(0, np.float64))
    indptr = np.concatenate([[0], np.cumsum(counts)])
    indices, data = np.empty(indptr[-1], np.int64), np.empty(indptr[-1], np.float64)
    _expansion(*args, True, counts, indptr, indices, data)
    return sp.csr_matrix((data, indices, indptr), shape=(n, n))


@numba.njit(parallel=True, cache=True, nogil=True)
def _pair_counts(indptr, indices, t_indptr, t_indices, n_tasks):
    """Number of j sharing a column with row i (row i of the output holds exactly these)."""
    n = len(indptr) - 1
    counts = np.zeros(n, np.int64)
    for t in numba.prange(n_tasks):
        seen = np.zeros(n, np.uint8)  # seen[j] == stamp: j met in this row; bytes, to stay in L1
        stamp = 0
        for i in _task_rows(t, n, n_tasks):
            stamp += 1
            if stamp == 256:
                seen[:] = 0
                stamp = 1
            m = 0
            for p in range(indptr[i], indptr[i + 1]):
                c = indices[p]
                for q in range(t_indptr[c], t_indptr[c + 1]):
                    j = t_indices[q]
                    m += seen[j] != stamp  # branch-free, as in _pair_distances
                    seen[j] = stamp
            counts[i] = m
    return counts


@numba.njit(parallel=True, cache=True, nogil=True)
def _pair_distances(indptr, indices, data, t_indptr, t_indices, t_data, out_ptr, out_idx, out_val, n_tasks):
    """Row i: m_ij = sum_c min(V_ic, V_jc) over the columns c of row i, then d = 1 - m / (2 - m)
    clipped at 0 (step 6-7); the diagonal is written as exactly 0. V > 0 where stored (softmax
    weights), so acc[j] == 0 marks a j not yet met in this row. Returns how many d are 1 in
    float32 (pairs that must not be stored)."""
    n = len(indptr) - 1
    widest = 0
    for i in range(n):
        widest = max(widest, out_ptr[i + 1] - out_ptr[i])
    n_far = 0
    for t in numba.prange(n_tasks):
        acc = np.zeros(n, np.float64)
        met = np.empty(widest + 1, np.int64)  # row i's j in order met; one spare slot for the write below
        for i in _task_rows(t, n, n_tasks):
            end = 0
            for p in range(indptr[i], indptr[i + 1]):
                c, a = indices[p], data[p]
                for q in range(t_indptr[c], t_indptr[c + 1]):
                    j = t_indices[q]
                    met[end] = j  # always written, kept only if j is new: no unpredictable branch
                    end += acc[j] == 0.0
                    acc[j] += min(a, t_data[q])
            base = out_ptr[i]
            for e in range(end):
                j = met[e]
                m = acc[j]
                acc[j] = 0.0
                out_idx[base + e] = j
                d = 0.0 if j == i else max(0.0, 1.0 - m / (2.0 - m))
                out_val[base + e] = d
                n_far += np.float32(d) >= 1  # m so small that d rounds to 1 in float32
    return n_far


def _sum_of_min_distance(v: sp.csr_matrix, n_tasks: int) -> sp.csr_matrix:
    """Steps 6-7 on V (N, N): every pair sharing a column of V, exact, in compiled loops over
    ``n_tasks`` row ranges (each row computed alone: the result does not depend on the threads)."""
    n = v.shape[0]
    vt = v.T.tocsr()  # column c of V as a row: the j with V_jc > 0
    counts = _pair_counts(v.indptr, v.indices, vt.indptr, vt.indices, n_tasks)
    nnz = int(counts.sum())
    idx_t = np.int32 if nnz < 2**31 else np.int64
    indptr = np.zeros(n + 1, idx_t)
    np.cumsum(counts, out=indptr[1:])
    indices, data = np.empty(nnz, idx_t), np.empty(nnz, np.float32)
    if _pair_distances(v.indptr, v.indices, v.data, vt.indptr, vt.indices, vt.data, indptr, indices, data, n_tasks):
        keep = data < 1
        rows = np.repeat(np.arange(n), counts)[keep]
        np.cumsum(np.bincount(rows, minlength=n), out=indptr[1:])
        indices, data = indices[keep], data[keep]
    return sp.csr_matrix((data, indices, indptr), shape=(n, n), copy=False)


def jaccard_distance(features: np.ndarray, k1: int = 30, k2: int = 6, backend: Backend = "auto",
                     workers: int | None = None, *, form: JaccardForm = "cluster-contrast") -> sp.csr_matrix:
    """k-reciprocal Jaccard distance of L2-normalised float32 features (N, D).

    ``form``: ``"cluster-contrast"`` (the clustering's, above) or ``"zhong"``, Zhong et al.'s
    published re-ranking form: lists of k1 + 1 entries (self included), and the kernel
    exp(-d_ij / max_k d_ik) on the squared distances d = 2 - 2 cos scaled by each row's maximum
    over all N items (the row maxima cost one pass of (N, N) products, in blocks).

    Returns an (N, N) float32 CSR matrix, symmetric up to float rounding: stored entries are the
    pairs with distance < 1 plus the diagonal (explicit 0); every pair not stored has distance 1.
    Indices within a row are not sorted (sorting would cost more than the sum itself;
    scikit-learn does not need it): call ``.sort_indices()`` if you do.
    ``workers``: threads of the compiled loops (default: numba's, i.e. the CPU count or
    NUMBA_NUM_THREADS); the result does not depend on it.
    """
    _validate(features, k1 + (form == "zhong"), k2)
    if form not in ("cluster-contrast", "zhong"):
        raise ValueError(f"form={form!r}: expected 'cluster-contrast' or 'zhong'")
    with numba_threads(workers) as threads:
        return _distance(features, k1, k2, backend, TASKS_PER_THREAD * threads, form)


def _row_max_distance(features: np.ndarray, block: int = 2048) -> np.ndarray:
    """(N,) max over all N items of d_ij = 2 - 2 cos_ij (float64), in (block, N) products."""
    x = features.astype(np.float32)
    out = np.empty(len(x), np.float64)
    for s in range(0, len(x), block):
        out[s:s + block] = np.maximum(2.0 - 2.0 * (x[s:s + block] @ x.T).min(axis=1).astype(np.float64), 0.0)
    return out


def _distance(features: np.ndarray, k1: int, k2: int, backend: Backend, n_tasks: int,
              form: JaccardForm = "cluster-contrast") -> sp.csr_matrix:
    n = len(features)
    width = k1 + 1 if form == "zhong" else k1
    with progress(f"jaccard of {n} features", 4, unit="step", step="knn") as bar:
        sims, rank = knn(features, width, backend=backend)  # (N, width) each
        scale = 1.0 / np.maximum(_row_max_distance(features), 1e-12) if form == "zhong" else np.ones(n)
        bar.advance(1, step="k-reciprocal sets")
        v = _weights(features, rank, sims, k1, scale, n_tasks)
        bar.advance(1, step="query expansion")
        if k2 != 1:
            kk = min(k2, width)
            q = sp.csr_matrix((np.full(n * kk, 1 / kk), rank[:, :kk].ravel(), np.arange(0, n * kk + 1, kk)), shape=(n, n))
            v = q @ v
        log.debug("jaccard: N=%d, V %.1f nnz/row", n, v.nnz / n)
        bar.advance(1, step="pair distances")
        dist = _sum_of_min_distance(v, n_tasks)
        bar.advance(1, step="done")
    return dist
