"""Approximate inner-product kNN (faiss IVF or HNSW): global clustering of a million images.

The exact search (``knn``) costs N^2 D: at N = 1M, D = 2048 about 10^15 multiply-adds, hours on
a laptop. These indexes search a small part of the set per query:
- ``ivf``: k-means cells (nlist about 4 sqrt(N), trained on a seeded sample of 64 per cell);
  each query scans the ``nprobe`` nearest cells. CPU, or faiss-gpu when it sees a GPU.
- ``hnsw``: a navigable small-world graph (M = 32 links per node), searched with a beam of
  ``ef``. CPU only (faiss has no GPU HNSW).
Both store the vectors as float16 (faiss scalar quantizer): half the memory of float32.
Rows are converted to float32 and fed ``CHUNK`` at a time, so a float16 feature array is never
copied whole. Recall against the exact search: benchmarks/bench_scale.py.
"""
from __future__ import annotations

import logging
import math
from typing import Literal

import numpy as np

from calr_core.progress import progress

log = logging.getLogger(__name__)
Method = Literal["ivf", "hnsw"]
CHUNK = 16384  # rows converted to float32 and added or searched at a time


def _rows(x: np.ndarray, a: int) -> np.ndarray:
    return np.ascontiguousarray(x[a:a + CHUNK], dtype=np.float32)  # (<= CHUNK, D)


def default_nlist(n: int) -> int:
    """IVF cells: 4 sqrt(N), at most N / 39 (faiss wants 39 training points per cell)."""
    return max(1, min(n // 39, int(4 * math.sqrt(n))))


def _index(x: np.ndarray, method: Method, nprobe: int, ef: int, gpu: bool, seed: int):
    import faiss

    n, d = x.shape
    fp16 = faiss.ScalarQuantizer.QT_fp16
    if method == "hnsw":
        index = faiss.IndexHNSWSQ(d, fp16, 32, faiss.METRIC_INNER_PRODUCT)
        index.train(_rows(x, 0)[:1])  # fp16 needs no statistics; this marks the index trained
        index.hnsw.efSearch = ef
        return index
    nlist = default_nlist(n)
    index = faiss.IndexIVFScalarQuantizer(faiss.IndexFlatIP(d), d, nlist, fp16, faiss.METRIC_INNER_PRODUCT)
    index.cp.seed = seed
    index.nprobe = min(nprobe, nlist)  # the GPU copy takes it over
    if gpu:
        index = faiss.index_cpu_to_gpu(faiss.StandardGpuResources(), 0, index)
    sample = np.sort(np.random.default_rng(seed).choice(n, min(n, 64 * nlist), replace=False))
    index.train(np.ascontiguousarray(x[sample], dtype=np.float32))  # (64 nlist, D)
    return index


def ann_knn(x: np.ndarray, k: int, method: Method, *, nprobe: int = 16, ef: int = 128,
            gpu: bool = False, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Approximate top-k by inner product of every row of x (N, D), float32 or float16, against
    all rows. Returns (sims (N, k) float32, idx (N, k) int64) by decreasing similarity."""
    n = len(x)
    if method not in ("ivf", "hnsw"):
        raise ValueError(f"method={method!r}: expected 'ivf' or 'hnsw'")
    if nprobe < 1 or ef < k:
        raise ValueError(f"nprobe={nprobe}, ef={ef}: expected nprobe >= 1 and ef >= k={k}")
    index = _index(x, method, nprobe, ef, gpu and method == "ivf", seed)
    sims, idx = np.empty((n, k), np.float32), np.empty((n, k), np.int64)
    steps = 2 * math.ceil(n / CHUNK)
    with progress(f"{method} kNN of {n} features", steps, unit="chunk", step="add") as bar:
        for a in range(0, n, CHUNK):
            index.add(_rows(x, a))
            bar.advance()
        bar.advance(0, step="search")
        for a in range(0, n, CHUNK):
            sims[a:a + CHUNK], idx[a:a + CHUNK] = index.search(_rows(x, a), k)
            bar.advance()
    log.info("%s kNN: N=%d k=%d%s", method, n, k,
             f" nlist={default_nlist(n)} nprobe={nprobe}" if method == "ivf" else f" ef={ef}")
    return sims, idx
