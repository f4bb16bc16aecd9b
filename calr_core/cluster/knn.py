"""Exact inner-product k-nearest neighbours (docs/method.md "Phase 2: inter-camera training", step 2,
and the kNN list of docs/method.md "k-reciprocal Jaccard distance").

Backends, all exact:
- ``blas`` (the CPU default): the search is of the set against itself, so the similarity matrix is
  symmetric. Only the blocks on and above the diagonal are computed (numpy BLAS, about half the
  flops of one N x N product), and each block updates the top-k heaps of its rows and of its
  columns in compiled numba loops. Ties are broken by the smaller index, so the selection does
  not depend on the order blocks are met or on the thread count (BLAS may round a product a
  last bit differently in another block shape, so change ``chunk`` and near-ties may swap).
- faiss ``IndexFlatIP`` (CPU), GPU faiss, or chunked torch matmul + topk (CUDA when present).
Memory is bounded by ``chunk`` rows at a time, never N x N.
Every row starts with the sample itself, even when duplicate vectors tie with it or push it out
of the top k, because the k-reciprocal conventions (and the Infomap graph) assume it.
"""
from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal

import numba
import numpy as np

from calr_core.progress import progress

log = logging.getLogger(__name__)
Backend = Literal["auto", "blas", "faiss", "faiss-gpu", "torch"]
BACKENDS = ("auto", "blas", "faiss", "faiss-gpu", "torch")
KnnIndex = Literal["exact", "ivf", "hnsw"]


def _faiss():
    try:
        import faiss
    except ImportError:
        return None
    return faiss


def _has_faiss_gpu(faiss) -> bool:
    return faiss is not None and hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0


def resolve_backend(backend: Backend) -> str:
    """Pick the concrete backend: GPU faiss, then torch on CUDA, then the symmetric BLAS search."""
    if backend not in BACKENDS:
        raise ValueError(f"backend={backend!r}: expected one of {', '.join(map(repr, BACKENDS))}")
    if backend != "auto":
        return backend
    if not os.path.exists("/dev/nvidiactl"):  # no NVIDIA driver: no GPU, and no torch import
        return "blas"
    faiss = _faiss()
    if _has_faiss_gpu(faiss):
        return "faiss-gpu"
    import torch
    return "torch" if torch.cuda.is_available() else "blas"


def _search_faiss(x: np.ndarray, k: int, chunk: int, gpu: bool) -> tuple[np.ndarray, np.ndarray]:
    faiss = _faiss()
    if faiss is None:
        raise ValueError("backend='faiss': faiss is not importable; install faiss-cpu or use backend='torch'")
    if gpu:
        if not _has_faiss_gpu(faiss):
            raise ValueError("backend='faiss-gpu': this faiss has no GPU support or sees no GPU")
        res = faiss.StandardGpuResources()
        index = faiss.GpuIndexFlatIP(res, x.shape[1])
    else:
        index = faiss.IndexFlatIP(x.shape[1])
    index.add(x)
    sims, idx = zip(*(index.search(x[a:a + chunk], k) for a in range(0, len(x), chunk)))
    return np.concatenate(sims), np.concatenate(idx).astype(np.int64)


def _search_torch(x: np.ndarray, k: int, chunk: int) -> tuple[np.ndarray, np.ndarray]:
    import torch

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    sims, idx = [], []
    with torch.no_grad():
        db = torch.from_numpy(x).to(device)  # (N, D)
        for a in range(0, len(x), chunk):
            s, i = torch.topk(db[a:a + chunk] @ db.T, k, dim=1)  # (B, N) -> (B, k)
            sims.append(s.cpu().numpy())
            idx.append(i.cpu().numpy())
    return np.concatenate(sims), np.concatenate(idx).astype(np.int64)


@contextmanager
def numba_threads(workers: int | None) -> Iterator[int]:
    """Run the compiled loops on ``workers`` threads (None: numba's default); yields the count."""
    prev = numba.get_num_threads()
    n = prev if workers is None else max(1, min(int(workers), numba.config.NUMBA_NUM_THREADS))
    numba.set_num_threads(n)
    try:
        yield n
    finally:
        numba.set_num_threads(prev)


@numba.njit(inline="always")
def _push(vals: np.ndarray, idx: np.ndarray, v: float, j: int) -> None:
    """Replace the root of a size-k min-heap (root = worst: smallest value, then largest index)
    by (v, j) and sift it down."""
    k, pos = len(vals), 0
    while True:
        child = 2 * pos + 1
        if child >= k:
            break
        if child + 1 < k and (vals[child + 1] < vals[child] or
                              (vals[child + 1] == vals[child] and idx[child + 1] > idx[child])):
            child += 1
        if vals[child] < v or (vals[child] == v and idx[child] > j):
            vals[pos], idx[pos] = vals[child], idx[child]
            pos = child
        else:
            break
    vals[pos], idx[pos] = v, j


@numba.njit(inline="always", fastmath={"nnan", "nsz", "reassoc"})
def _segment_max(row: np.ndarray) -> float:
    top = -np.inf
    for v in row:
        top = max(top, v)
    return top


@numba.njit(parallel=True, cache=True, nogil=True)
def _scan(s: np.ndarray, row0: int, col0: int, heap_v: np.ndarray, heap_i: np.ndarray,
          both: bool, cand: np.ndarray, n_cand: np.ndarray) -> None:
    """Offer block s (rows row0.., columns col0..) to the heaps of its rows, in parallel over rows.
    With ``both``, also note in cand[r, :n_cand[r]] the columns c whose heap s[r, c] may enter
    (against each column's k-th best at the start); ``_offer_columns`` inserts them. Segments of
    32 columns whose (vectorised) maximum is below every floor concerned are skipped."""
    width, n_cols = 32, s.shape[1]
    col_floor = heap_v[col0:col0 + n_cols, 0].copy()
    seg_floor = np.full((n_cols + width - 1) // width, np.inf, np.float32)
    if both:
        for g in range(len(seg_floor)):
            seg_floor[g] = col_floor[g * width:(g + 1) * width].min()
    for r in numba.prange(s.shape[0]):
        hv, hi = heap_v[row0 + r], heap_i[row0 + r]
        floor, m = hv[0], 0
        for g in range(len(seg_floor)):
            c0, c1 = g * width, min(n_cols, (g + 1) * width)
            top = _segment_max(s[r, c0:c1])
            if top < floor and top < seg_floor[g]:
                continue
            for c in range(c0, c1):
                v = s[r, c]
                if v >= floor and (v > floor or col0 + c < hi[0]):
                    _push(hv, hi, v, col0 + c)
                    floor = hv[0]
                if both and v >= col_floor[c]:
                    cand[r, m] = c
                    m += 1
        n_cand[r] = m


@numba.njit(cache=True, nogil=True)
def _offer_columns(s: np.ndarray, row0: int, col0: int, heap_v: np.ndarray, heap_i: np.ndarray,
                   cand: np.ndarray, n_cand: np.ndarray) -> None:
    for r in range(s.shape[0]):
        for m in range(n_cand[r]):
            c = cand[r, m]
            v, h = s[r, c], col0 + c
            if v > heap_v[h, 0] or (v == heap_v[h, 0] and row0 + r < heap_i[h, 0]):
                _push(heap_v[h], heap_i[h], v, row0 + r)


def _search_blas(x: np.ndarray, k: int, chunk: int) -> tuple[np.ndarray, np.ndarray]:
    n = len(x)
    heap_v = np.full((n, k), -np.inf, np.float32)
    heap_i = np.full((n, k), n, np.int64)
    side = min(chunk, n)
    cand = np.empty((side, side), np.int32)
    n_cand = np.empty(side, np.int64)
    flat = np.empty(side * side, np.float32)  # one block buffer, reused: no page faults per block

    def block(a: int, b: int) -> np.ndarray:
        xa, xb = x[a:a + chunk], x[b:b + chunk]
        return np.matmul(xa, xb.T, out=flat[:len(xa) * len(xb)].reshape(len(xa), len(xb)))

    starts = range(0, n, chunk)
    with progress(f"knn of {n} features", len(starts) * (len(starts) + 1) // 2, unit="block") as bar:
        for a in starts:  # diagonal blocks first, so that every heap has a floor before the rest
            _scan(block(a, a), a, a, heap_v, heap_i, False, cand, n_cand)
            bar.advance()
        for a in starts:
            for b in range(a + chunk, n, chunk):
                s = block(a, b)  # (B, B')
                _scan(s, a, b, heap_v, heap_i, True, cand, n_cand)
                _offer_columns(s, a, b, heap_v, heap_i, cand, n_cand)
                bar.advance()
    by_index = np.argsort(heap_i, axis=1)  # ties: smaller index first
    heap_v, heap_i = np.take_along_axis(heap_v, by_index, 1), np.take_along_axis(heap_i, by_index, 1)
    order = np.argsort(-heap_v, axis=1, kind="stable")
    return np.take_along_axis(heap_v, order, 1), np.take_along_axis(heap_i, order, 1)


def _self_first(x: np.ndarray, sims: np.ndarray, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Move each sample to column 0 (inserting it over the last column when it is missing),
    keeping the order of the other neighbours."""
    rows = np.arange(len(idx))
    bad = idx[:, 0] != rows
    if not bad.any():
        return sims, idx
    i, s, r = idx[bad], sims[bad], rows[bad]
    missing = ~(i == r[:, None]).any(1)
    i[missing, -1] = r[missing]
    own = x[r[missing]].astype(np.float32)  # (M, D)
    s[missing, -1] = np.einsum("nd,nd->n", own, own)
    order = np.argsort(i != r[:, None], axis=1, kind="stable")  # self (False) first, rest in order
    idx[bad] = np.take_along_axis(i, order, 1)
    sims[bad] = np.take_along_axis(s, order, 1)
    return sims, idx


def knn(features: np.ndarray, k: int, backend: Backend = "auto", chunk: int = 4096,
        index: KnnIndex = "exact", nprobe: int = 16, ef: int = 128,
        seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Inner-product top-k of every row against all rows: exact, or approximate with a faiss
    ``ivf`` / ``hnsw`` index (``calr_core.cluster.ann``; ``nprobe``, ``ef``, ``seed`` apply to it,
    and GPU faiss is used for ivf when ``backend`` resolves to faiss-gpu).

    Returns (sims (N, k) float32, idx (N, k) int64), each row by decreasing similarity with the
    sample itself forced into column 0. features: float32, or float16 for an approximate index
    (read a chunk at a time, never copied whole). A neighbour an approximate index could not
    fill (fewer than k rows in the cells it scanned) is the sample itself with similarity -1.
    """
    if not isinstance(features, np.ndarray) or features.ndim != 2:
        raise ValueError(f"features: expected a 2-d (N, D) array, got shape {getattr(features, 'shape', None)}")
    if not 1 <= k <= len(features):
        raise ValueError(f"k={k}: expected 1 <= k <= N={len(features)}")
    name = resolve_backend(backend)
    if index != "exact":
        from calr_core.cluster.ann import ann_knn
        x = features if features.dtype in (np.float16, np.float32) else features.astype(np.float32)
        sims, idx = ann_knn(x, k, index, nprobe=nprobe, ef=ef, gpu=name == "faiss-gpu", seed=seed)
        empty = idx < 0
        sims[empty], idx[empty] = -1.0, np.nonzero(empty)[0]
        return _self_first(x, sims, idx)
    x = np.ascontiguousarray(features, dtype=np.float32)  # (N, D)
    log.debug("knn: N=%d D=%d k=%d backend=%s", *x.shape, k, name)
    if name == "blas":
        sims, idx = _search_blas(x, k, chunk)
    elif name == "torch":
        sims, idx = _search_torch(x, k, chunk)
    else:
        sims, idx = _search_faiss(x, k, chunk, gpu=name == "faiss-gpu")
    return _self_first(x, sims.astype(np.float32), idx)


def check_features(features: np.ndarray, dtypes: tuple = (np.float32,)) -> None:
    """Features to cluster must be a finite (N, D) array of L2-normalised rows, of one of
    ``dtypes`` (float32; float16 too where an approximate kNN reads them)."""
    if not isinstance(features, np.ndarray) or features.ndim != 2:
        raise ValueError(f"features: expected a 2-d (N, D) numpy array, got {type(features).__name__} "
                         f"with shape {getattr(features, 'shape', None)}")
    if features.dtype not in dtypes:
        raise ValueError(f"features: expected dtype {' or '.join(np.dtype(t).name for t in dtypes)}, got {features.dtype}")
    for a in range(0, len(features), 16384):  # in chunks: no (N, D) temporaries at a million rows
        x = features[a:a + 16384].astype(np.float32)  # (<= 16384, D)
        finite = np.isfinite(x).all(1)
        if not finite.all():
            raise ValueError(f"features: row {a + int(np.flatnonzero(~finite)[0])} contains NaN or inf")
        norms = np.linalg.norm(x, axis=1)
        bad = np.abs(norms - 1) > 1e-3
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise ValueError(f"features: rows must be L2-normalised (norm 1 +- 1e-3); row {a + row} has "
                             f"norm {norms[row]:.4g}")
