"""Camera-aware label refinement and cluster weights (docs/method.md "Phase 2: inter-camera training",
steps 5-7). Pure, seeded."""
from __future__ import annotations

import math
from typing import Literal

import numpy as np


def _int_array(name: str, a: np.ndarray, n: int | None = None) -> np.ndarray:
    a = np.asarray(a)
    if a.ndim != 1 or not np.issubdtype(a.dtype, np.integer) or (n is not None and len(a) != n):
        raise ValueError(f"{name}: expected a 1-d integer array{f' of length {n}' if n is not None else ''}, "
                         f"got {a.dtype} {a.shape}")
    return a.astype(np.int64)


def select_pivots(labels: np.ndarray, density: np.ndarray,
                  rule: Literal["reference", "argmax"] = "reference") -> np.ndarray:
    """Pivot of each cluster 0..K-1 (phase 2 step 5): (K,) int64 row index, -1 for none.

    reference: the member with the highest index whose density exceeds the mean density over all
    N nodes (the reference code's quirk; clusters without such a member get -1).
    argmax: the member with the highest density, ties to the lowest index.
    """
    labels = _int_array("labels", labels)
    density = np.asarray(density, dtype=np.float64)
    if density.shape != labels.shape:
        raise ValueError(f"density: expected shape {labels.shape}, got {density.shape}")
    k = int(labels.max()) + 1 if len(labels) else 0
    pivots = np.full(k, -1, np.int64)
    rows = np.arange(len(labels))
    if rule == "reference":
        cand = (labels >= 0) & (density > density.mean())
        np.maximum.at(pivots, labels[cand], rows[cand])
    elif rule == "argmax":
        order = np.lexsort((rows, -density, labels))  # by cluster, then density down, then index up
        order = order[labels[order] >= 0]
        first = np.r_[True, labels[order][1:] != labels[order][:-1]]
        pivots[labels[order][first]] = order[first]
    else:
        raise ValueError(f"rule={rule!r}: expected 'reference' or 'argmax'")
    return pivots


def decay(schedule: Literal["constant", "cosine"], round: int, n_rounds: int) -> float:
    """Refinement probability for round r of R (phase 2 step 6): constant 1, or the self-paced
    0.5 * (1 + cos(pi * r / (3 R)))."""
    if n_rounds < 1 or not 0 <= round:
        raise ValueError(f"decay: expected round >= 0 and n_rounds >= 1, got round={round}, n_rounds={n_rounds}")
    if schedule == "constant":
        return 1.0
    if schedule == "cosine":
        return 0.5 * (1 + math.cos(math.pi * round / (3 * n_rounds)))
    raise ValueError(f"schedule={schedule!r}: expected 'constant' or 'cosine'")


def refine_labels(labels: np.ndarray, pivots: np.ndarray, camids: np.ndarray, local_labels: np.ndarray,
                  p: float = 1.0, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Drop same-camera members that disagree with the pivot's local cluster (phase 2 step 6).

    For cluster k with pivot q (camera c, local cluster L = local_labels[q]), every member in camera
    c whose local label is not L (-1 counts as not L) becomes -1 with probability p. Members in
    other cameras are untouched and nothing is merged. A pivot whose own local label is -1 gives
    no evidence: its cluster is not refined. Random draws: one uniform per candidate in increasing
    row order from ``default_rng(seed)``. Returns (refined labels, refined mask (N,) bool).
    """
    labels = _int_array("labels", labels)
    n = len(labels)
    camids, local_labels = _int_array("camids", camids, n), _int_array("local_labels", local_labels, n)
    pivots = _int_array("pivots", pivots)
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"p={p}: expected a probability in [0, 1]")
    if ((pivots < -1) | (pivots >= n)).any():
        raise ValueError(f"pivots: expected row indices in [-1, {n}), got range [{pivots.min()}, {pivots.max()}]")
    member = labels >= 0
    if (labels[member] >= len(pivots)).any():
        raise ValueError(f"labels: cluster id {labels.max()} has no entry in pivots (K={len(pivots)})")
    piv = np.where(member, pivots[np.where(member, labels, 0)], -1)  # (N,) pivot of each row's cluster
    has = piv >= 0
    pq = np.where(has, piv, 0)
    cand = has & (local_labels[pq] >= 0) & (camids == camids[pq]) & (local_labels != local_labels[pq])
    rows = np.flatnonzero(cand)
    drop = rows[np.random.default_rng(seed).random(len(rows)) < p]
    refined = labels.copy()
    refined[drop] = -1
    mask = np.zeros(n, bool)
    mask[drop] = True
    return refined, mask


def camera_weights(labels: np.ndarray, camids: np.ndarray, n_cams: int,
                   n_clusters: int | None = None) -> np.ndarray:
    """w_k = log(1 + H_k), H_k the entropy of cluster k's camera shares (phase 2 step 7).

    (K,) float32 over clusters 0..K-1 (K = n_clusters, default labels.max() + 1; pass it when
    refinement may have emptied the last clusters). Outliers (-1) are ignored; a one-camera or
    empty cluster gets 0.
    """
    labels = _int_array("labels", labels)
    camids = _int_array("camids", camids, len(labels))
    k = int(labels.max()) + 1 if n_clusters is None else int(n_clusters)
    if len(camids) and (camids.min() < 0 or camids.max() >= n_cams):
        raise ValueError(f"camids: expected values in [0, {n_cams}), got range [{camids.min()}, {camids.max()}]")
    if labels.max(initial=-1) >= k:
        raise ValueError(f"n_clusters={k}: labels go up to {labels.max()}")
    m = labels >= 0
    counts = np.bincount(labels[m] * n_cams + camids[m], minlength=k * n_cams).reshape(k, n_cams).astype(np.float64)
    share = counts / np.maximum(counts.sum(1, keepdims=True), 1)
    entropy = 0.0 - (share * np.log(np.where(share > 0, share, 1))).sum(1)  # 0.0 - : never -0.0
    return np.log1p(entropy).astype(np.float32)
