"""k-reciprocal re-ranking for evaluation (Zhong et al. 2017; docs: optional re-ranking with
k1=20, k2=6, lambda=0.3).

Query and gallery features are pooled (N = Q + G) and their sparse k-reciprocal Jaccard
distance J is computed (``calr_core.cluster.jaccard``). For query row q and gallery column g:

    final[q, g] = (1 - lambda) * J[q, Q + g] + lambda * orig[q, g]

where pairs not stored in J have distance 1 and orig is the squared Euclidean distance 2 - 2 cos
of the L2-normalised features, divided by its row maximum over all N pooled items.

``form="zhong"`` (the default) is the published algorithm, as torchreid, fast-reid and the
CALR reference ship it: lists of k1 + 1 entries and the kernel exp(-orig) inside J.
``form="cluster-contrast"`` reuses the clustering's Jaccard (k1 entries, kernel exp(-(2 - 2 cos))
unscaled), what calr computed before; it differs by up to about 0.1 in distance.

Memory: the dense (N, N) matrix is never built. Rows are made in query chunks: (chunk, N)
Euclidean distances for the row maxima and a (chunk, G) dense block of J. ``rerank_distance``
returns the full (Q, G) float32 result (Market-1501: 3,368 x 15,913 = 214 MB);
``rerank_evaluate`` only ever holds one chunk.
"""
from __future__ import annotations

from typing import Iterator

import numpy as np
import scipy.sparse as sp
import torch

from calr_core.cluster.jaccard import JaccardForm, jaccard_distance
from calr_core.eval.evaluate import (
    Device,
    metrics_from_chunks,
    normalized,
    resolve_device,
)


def _rerank_chunks(q_feats, g_feats, k1: int, k2: int, lambda_: float, chunk: int,
                   device: Device, form: JaccardForm) -> Iterator[tuple[int, torch.Tensor]]:
    """(start row, (chunk, G) re-ranked distance) over the query rows."""

    if not 0.0 <= lambda_ <= 1.0:
        raise ValueError(f"lambda_: expected a value in [0, 1], got {lambda_}")
    if chunk < 1:
        raise ValueError(f"chunk: expected >= 1, got {chunk}")
    dev = resolve_device(device)
    q, g = normalized(q_feats, "q_feats", dev), normalized(g_feats, "g_feats", dev)
    if q.shape[1] != g.shape[1]:
        raise ValueError(f"g_feats: expected dimension {q.shape[1]} like q_feats, got {g.shape[1]}")
    Q = len(q)
    x = torch.cat([q, g])  # (N, D)
    jac = sp.csr_matrix(jaccard_distance(x.cpu().numpy(), k1=k1, k2=k2, form=form))  # (N, N) sparse
    sim = jac[:Q, Q:].tocsr()  # (Q, G); 1 - J on stored pairs, so missing pairs read as J = 1
    sim.data = 1.0 - sim.data
    for s in range(0, Q, chunk):
        orig = (2 - 2 * q[s:s + chunk] @ x.T).clamp_(min=0)  # (B, N)
        orig = orig / orig.amax(dim=1, keepdim=True).clamp_(min=1e-12)  # (B, N)
        jd = 1 - torch.from_numpy(sim[s:s + chunk].toarray().astype(np.float32)).to(dev)  # (B, G)
        yield s, (1 - lambda_) * jd + lambda_ * orig[:, Q:]  # (B, G)


def rerank_distance(q_feats, g_feats, k1: int = 20, k2: int = 6, lambda_: float = 0.3,
                    chunk: int = 1024, device: Device = "auto", form: JaccardForm = "zhong") -> np.ndarray:
    """(Q, G) float32 re-ranked query-gallery distance (dense output; see module docstring)."""
    out = np.empty((len(q_feats), len(g_feats)), np.float32)
    for s, d in _rerank_chunks(q_feats, g_feats, k1, k2, lambda_, chunk, device, form):
        out[s:s + len(d)] = d.cpu().numpy()
    return out


def rerank_evaluate(q_feats, g_feats, q_pids, g_pids, q_camids, g_camids, max_rank: int = 50,
                    k1: int = 20, k2: int = 6, lambda_: float = 0.3, chunk: int = 1024,
                    device: Device = "auto", form: JaccardForm = "zhong") -> dict:
    """Metrics after k-reciprocal re-ranking: the ``rank_metrics`` dict of
    ``rerank_distance(...)``, computed chunk by chunk."""
    if max_rank < 1:
        raise ValueError(f"max_rank: expected >= 1, got {max_rank}")
    return metrics_from_chunks(_rerank_chunks(q_feats, g_feats, k1, k2, lambda_, chunk, device, form),
                               q_pids, g_pids, q_camids, g_camids, max_rank, resolve_device(device))
