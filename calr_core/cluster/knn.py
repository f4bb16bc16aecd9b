"""Exact inner-product k-nearest neighbours (METHOD.md phase 2 step 2, and the kNN list of the
k-reciprocal Jaccard distance).

Backends, all exact: faiss ``IndexFlatIP`` (CPU), GPU faiss, or chunked torch matmul + topk
(CUDA when present, else CPU). Memory is bounded by ``chunk`` query rows at a time, never N x N.
Every row starts with the sample itself, even when duplicate vectors tie with it or push it out
of the top k, because the k-reciprocal conventions (and the Infomap graph) assume it.
"""
from __future__ import annotations

import logging
from typing import Literal

import numpy as np
import torch

log = logging.getLogger(__name__)
Backend = Literal["auto", "faiss", "faiss-gpu", "torch"]


def _faiss():
    try:
        import faiss
    except ImportError:
        return None
    return faiss


def _has_faiss_gpu(faiss) -> bool:
    return faiss is not None and hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0


def resolve_backend(backend: Backend) -> str:
    """Pick the concrete backend: GPU faiss, then torch on CUDA, then faiss CPU, then torch CPU."""
    if backend not in ("auto", "faiss", "faiss-gpu", "torch"):
        raise ValueError(f"backend={backend!r}: expected one of 'auto', 'faiss', 'faiss-gpu', 'torch'")
    if backend != "auto":
        return backend
    faiss = _faiss()
    if _has_faiss_gpu(faiss):
        return "faiss-gpu"
    if torch.cuda.is_available():
        return "torch"
    return "faiss" if faiss is not None else "torch"


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


@torch.no_grad()
def _search_torch(x: np.ndarray, k: int, chunk: int) -> tuple[np.ndarray, np.ndarray]:
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    db = torch.from_numpy(x).to(device)  # (N, D)
    sims, idx = [], []
    for a in range(0, len(x), chunk):
        s, i = torch.topk(db[a:a + chunk] @ db.T, k, dim=1)  # (B, N) -> (B, k)
        sims.append(s.cpu().numpy())
        idx.append(i.cpu().numpy())
    return np.concatenate(sims), np.concatenate(idx).astype(np.int64)


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
    s[missing, -1] = np.einsum("nd,nd->n", x[r[missing]], x[r[missing]])
    order = np.argsort(i != r[:, None], axis=1, kind="stable")  # self (False) first, rest in order
    idx[bad] = np.take_along_axis(i, order, 1)
    sims[bad] = np.take_along_axis(s, order, 1)
    return sims, idx


def knn(features: np.ndarray, k: int, backend: Backend = "auto",
        chunk: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    """Exact inner-product top-k of every row against all rows.

    Returns (sims (N, k) float32, idx (N, k) int64), each row by decreasing similarity with the
    sample itself forced into column 0.
    """
    x = np.ascontiguousarray(features, dtype=np.float32)  # (N, D)
    if x.ndim != 2:
        raise ValueError(f"features: expected a 2-d (N, D) array, got shape {x.shape}")
    if not 1 <= k <= len(x):
        raise ValueError(f"k={k}: expected 1 <= k <= N={len(x)}")
    name = resolve_backend(backend)
    log.debug("knn: N=%d D=%d k=%d backend=%s", *x.shape, k, name)
    if name == "torch":
        sims, idx = _search_torch(x, k, chunk)
    else:
        sims, idx = _search_faiss(x, k, chunk, gpu=name == "faiss-gpu")
    return _self_first(x, sims.astype(np.float32), idx)


def check_features(features: np.ndarray) -> None:
    """Features to cluster must be a finite float32 (N, D) array of L2-normalised rows."""
    if not isinstance(features, np.ndarray) or features.ndim != 2:
        raise ValueError(f"features: expected a 2-d (N, D) numpy array, got {type(features).__name__} "
                         f"with shape {getattr(features, 'shape', None)}")
    if features.dtype != np.float32:
        raise ValueError(f"features: expected dtype float32, got {features.dtype}")
    finite = np.isfinite(features).all(1)
    if not finite.all():
        raise ValueError(f"features: row {int(np.flatnonzero(~finite)[0])} contains NaN or inf")
    norms = np.linalg.norm(features, axis=1)
    bad = np.abs(norms - 1) > 1e-3
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise ValueError(f"features: rows must be L2-normalised (norm 1 +- 1e-3); row {row} has norm {norms[row]:.4g}")
