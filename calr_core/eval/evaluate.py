"""Evaluate query/gallery features in bounded memory (docs/method.md "Evaluation protocol").

Distance: Euclidean distance between L2-normalised features, used squared,
``d = ||q - g||^2 = 2 - 2 cos(q, g)`` (clamped at 0 against rounding). The square root is
monotone, so the ranking, and every metric, is the same as with the plain Euclidean distance;
skipping it saves a pass and can't merge two distinct distances into a tie.

Memory: the (Q, G) matrix is never built. Queries go in chunks of ``chunk`` rows: one (chunk, G)
distance block (MSMT17: 1024 x 82,161 float32 = 336 MB) plus the per-block temporaries of
``metrics.query_stats``; the features stay resident (on the GPU when present), with a normalised
copy of the queries only (the gallery's norms are divided out of each block).
"""
from __future__ import annotations

from typing import Iterator

import numpy as np
import torch

from calr_core.device import Device, resolve_device
from calr_core.eval.metrics import GalleryIndex, _Accumulator, _as_ids, query_stats


def _checked(feats, name: str, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, D) float32 view/copy of ``feats`` on ``device`` and its (N,) inverse row norms."""
    x = torch.as_tensor(feats)
    if x.ndim != 2 or x.shape[0] == 0 or not x.dtype.is_floating_point:
        raise ValueError(f"{name}: expected a non-empty 2-d float (N, D) array, got shape "
                         f"{tuple(x.shape)} dtype {x.dtype}")
    x = x.to(device=device, dtype=torch.float32)
    norms = torch.linalg.vector_norm(x, dim=1)  # (N,) NaN/inf rows give a non-finite norm
    if not bool(torch.isfinite(norms).all()):
        raise ValueError(f"{name}: row {int((~torch.isfinite(norms)).nonzero()[0])} contains NaN or inf")
    return x, 1 / norms.clamp(min=1e-12)


def normalized(feats, name: str, device: torch.device) -> torch.Tensor:
    """(N, D) float32 L2-normalised copy of ``feats`` (numpy or torch) on ``device``."""
    x, inv = _checked(feats, name, device)
    return x * inv[:, None]  # (N, D)


def distance_chunks(q_feats, g_feats, chunk: int, device: torch.device
                    ) -> Iterator[tuple[int, torch.Tensor]]:
    """(start row, (chunk, G) squared Euclidean distance of the L2-normalised features).

    Only the queries are copied normalised; the gallery is used as given and its norms are
    divided out of each chunk, so no second gallery-sized copy is made.
    """
    if chunk < 1:
        raise ValueError(f"chunk: expected >= 1, got {chunk}")
    q = normalized(q_feats, "q_feats", device)  # (Q, D)
    g, g_inv = _checked(g_feats, "g_feats", device)  # (G, D), (G,)
    if q.shape[1] != g.shape[1]:
        raise ValueError(f"g_feats: expected dimension {q.shape[1]} like q_feats, got {g.shape[1]}")
    for s in range(0, len(q), chunk):
        yield s, (q[s:s + chunk] @ g.T).mul_(g_inv).mul_(-2).add_(2).clamp_(min=0)  # (B, G)


def pairwise_distance(q_feats, g_feats, chunk: int = 1024, device: Device = "auto") -> np.ndarray:
    """Full (Q, G) float32 distance matrix, exactly as ``evaluate_features`` ranks with
    (for pictures, re-ranking and small sets; it is Q x G memory)."""
    out = np.empty((len(q_feats), len(g_feats)), np.float32)
    for s, d in distance_chunks(q_feats, g_feats, chunk, resolve_device(device)):
        out[s:s + len(d)] = d.cpu().numpy()
    return out


def evaluate_features(q_feats, g_feats, q_pids, g_pids, q_camids, g_camids, max_rank: int = 50,
                      chunk: int = 1024, device: Device = "auto") -> dict:
    """mAP / CMC / mINP of query against gallery features, as ``rank_metrics`` on
    ``pairwise_distance(q_feats, g_feats)`` (identical numbers), in query chunks.

    Features: (Q, D) / (G, D), numpy or torch; normalised here. Returns the ``rank_metrics`` dict.
    """
    if max_rank < 1:
        raise ValueError(f"max_rank: expected >= 1, got {max_rank}")
    dev = resolve_device(device)
    return metrics_from_chunks(distance_chunks(q_feats, g_feats, chunk, dev), q_pids, g_pids,
                               q_camids, g_camids, max_rank, dev)


def metrics_from_chunks(chunks, q_pids, g_pids, q_camids, g_camids, max_rank: int,
                        dev: torch.device, block: int = 256) -> dict:
    """The ``rank_metrics`` dict from (start row, (C, G) distances) chunks of the query rows,
    ``block`` rows of statistics at a time: memory never holds more than one chunk."""
    Q, G = len(q_pids), len(g_pids)
    qp, qc = _as_ids(q_pids, Q, "q_pids", dev), _as_ids(q_camids, Q, "q_camids", dev)
    gal = GalleryIndex.build(_as_ids(g_pids, G, "g_pids", dev), _as_ids(g_camids, G, "g_camids", dev))
    acc = _Accumulator(max_rank)
    for s, d in chunks:
        for b in range(0, len(d), block):
            sub = d[b:b + block]  # (<=block, G)
            r = slice(s + b, s + b + len(sub))
            acc.add(query_stats(sub, qp[r], qc[r], gal))
        del d
    return acc.result()
