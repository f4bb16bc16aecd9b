"""Pseudo labels of one round: phase 1 (per camera) and phase 2 (global + refinement).

These compose the clustering engine into the two labelling steps of the method,
docs/method.md "Phase 1: intra-camera training" and docs/method.md "Phase 2: inter-camera training";
stages call them with arrays read through ``calr_core.io`` and write what they return.
"""
from __future__ import annotations

import logging
from typing import Literal

import numpy as np
import pandas as pd

from calr_core.cluster import (
    agglomerative,
    camera_weights,
    dbscan,
    decay,
    infomap_cluster,
    jaccard_distance,
    refine_labels,
    select_pivots,
    silhouette,
)
from calr_core.cluster.knn import KnnIndex, check_features
from calr_core.data.manifest import align

log = logging.getLogger(__name__)


def cluster_camera(features: np.ndarray, *, k1: int = 15, k2: int = 4, n_clusters: int = 0,
                   ratio: int = 5) -> tuple[np.ndarray, float]:
    """Phase 1 steps 2, 3 and 5 for one camera: Jaccard distance, average-linkage clustering
    (``n_clusters`` or N // ratio clusters, no outliers), and the silhouette of those labels."""
    n = len(features)
    if n <= k1:
        raise ValueError(f"camera has {n} images, not more than intra.k1={k1}: lower intra.k1 "
                         f"or drop this camera from data.cameras")
    if n_clusters > n:
        raise ValueError(f"camera has {n} images, fewer than intra.n_clusters={n_clusters}: lower "
                         f"intra.n_clusters (0 = images // intra.ratio)")
    dist = jaccard_distance(features, k1=k1, k2=k2)  # (N, N) sparse
    labels = agglomerative(dist, n_clusters=n_clusters or None, ratio=ratio)
    return labels, float(silhouette(dist, labels))


def best_round(tables: list[pd.DataFrame]) -> pd.DataFrame:
    """Phase 1 model selection: the local labels of the round with the highest silhouette
    (the earliest such round on ties)."""
    if not tables:
        raise ValueError("no intra-camera label files to choose from")
    scores = np.array([float(t.silhouette.iloc[0]) for t in tables])
    if np.isnan(scores).any():  # argmax would pick a NaN round
        raise ValueError(f"silhouette: NaN in round {int(np.flatnonzero(np.isnan(scores))[0])}'s label file; "
                         "expected a number in [-1, 1] (-1 where undefined): run that round's cluster-intra again")
    return tables[int(np.argmax(scores))]


def cluster_global(features: np.ndarray, camids: np.ndarray, local_labels: np.ndarray | None, *,
                   n_cams: int, rnd: int, n_rounds: int,
                   method: Literal["infomap", "dbscan"] = "infomap", k1: int = 15, k2: int = 4,
                   eps: float = 0.5, dbscan_eps: float = 0.6, dbscan_k1: int = 30,
                   dbscan_k2: int = 6, dbscan_min_samples: int = 4, refine: bool = True,
                   pivot_rule: Literal["reference", "argmax"] = "reference",
                   decay_schedule: Literal["constant", "cosine"] = "constant",
                   seed: int = 1, knn: KnnIndex = "exact", knn_nprobe: int = 16,
                   knn_ef: int = 128) -> pd.DataFrame:
    """Phase 2 steps 2-7: cluster all cameras, refine by the pivots' local clusters, weight.

    ``local_labels`` is aligned to the rows of ``features`` (-1 where an image has none).
    Returns one row per image with the pseudo-label columns except ``image_id``/``camid``.
    """
    if method == "dbscan" and knn != "exact":
        raise ValueError(f"knn={knn!r} applies to method 'infomap'; dbscan's Jaccard distance uses the exact kNN")
    check_features(features, (np.float32,) if knn == "exact" else (np.float32, np.float16))
    if len(camids) != len(features) or (local_labels is not None and len(local_labels) != len(features)):
        raise ValueError(f"features: {len(features)} rows but {len(camids)} camera ids"
                         + ("" if local_labels is None else f" and {len(local_labels)} local labels"))
    if method == "infomap":
        result = infomap_cluster(features, k=k1, eps=eps, min_size=k2, seed=seed, knn_index=knn,
                                 nprobe=knn_nprobe, ef=knn_ef)
        raw, density = result.labels, result.density
    else:
        raw = dbscan(jaccard_distance(features, k1=dbscan_k1, k2=dbscan_k2),
                     eps=dbscan_eps, min_samples=dbscan_min_samples)
        density = np.zeros(len(raw), np.float32)  # DBSCAN has no density score: no pivots
    n_clusters = int(raw.max()) + 1 if (raw >= 0).any() else 0
    pivots = select_pivots(raw, density, rule=pivot_rule) if n_clusters else np.zeros(0, np.int64)
    label, refined = raw.copy(), np.zeros(len(raw), bool)
    if refine and n_clusters:
        if local_labels is None:
            raise ValueError("refinement needs the phase-1 local labels (or set cluster.refine: false)")
        p = decay(decay_schedule, rnd, n_rounds)
        label, refined = refine_labels(raw, pivots, camids, local_labels, p=p, seed=seed + rnd)
    weights = camera_weights(label, camids, n_cams, n_clusters) if n_clusters else np.zeros(0, np.float32)
    is_pivot = np.zeros(len(raw), bool)
    is_pivot[pivots[pivots >= 0]] = True
    log.info("round %d: %d clusters, %d outliers, %d images removed by refinement",
             rnd, n_clusters, int((raw < 0).sum()), int(refined.sum()))
    return pd.DataFrame({
        "global_label": raw.astype(np.int32), "label": label.astype(np.int32),
        "is_pivot": is_pivot, "density": density.astype(np.float32),
        "weight": np.where(label >= 0, weights[np.maximum(label, 0)] if len(weights) else 0, 0).astype(np.float32),
        "refined": refined})


def class_weights(pseudo: pd.DataFrame, name: str = "pseudo labels") -> np.ndarray:
    """(K,) per-cluster weights from a pseudo-label table (index = refined label; a cluster
    with no member gets 0). A cluster's images must share one finite weight: a table edited in
    pandas (two clusters merged, say) that breaks this is refused, ``name`` (its file) named."""
    kept = pseudo[pseudo.label >= 0]
    labels, weights = kept.label.to_numpy(), kept.weight.to_numpy(np.float32)
    if not np.isfinite(weights).all():
        raise ValueError(f"{name}: weight {weights[~np.isfinite(weights)][0]} for cluster "
                         f"{labels[~np.isfinite(weights)][0]}; expected a finite number")
    w = np.zeros(int(labels.max(initial=-1)) + 1, np.float32)
    w[labels] = weights
    if (odd := w[labels] != weights).any():
        label = labels[odd][0]
        found = ", ".join(f"{x:g}" for x in np.unique(weights[labels == label])[:3])
        raise ValueError(f"{name}: cluster {label} has more than one weight ({found}); the images of a "
                         "cluster share one weight (after merging clusters in pandas, set it again)")
    return w


def summarize(pseudo: pd.DataFrame, pids: np.ndarray | None = None) -> dict:
    """Counts of a round's pseudo labels and, where ground truth is known, their quality
    (raw and refined) against it."""
    from calr_core.eval.quality import label_quality

    out = {"images": len(pseudo),
           "clusters": int(pseudo.global_label.max()) + 1 if (pseudo.global_label >= 0).any() else 0,
           "outliers_raw": int((pseudo.global_label < 0).sum()),
           "outliers": int((pseudo.label < 0).sum()),
           "removed_by_refinement": int(pseudo.refined.sum()),
           "pivots": int(pseudo.is_pivot.sum())}
    if pids is not None and (np.asarray(pids) >= 0).all():
        for name, col in (("raw", "global_label"), ("refined", "label")):
            q = label_quality(pseudo[col].to_numpy(), np.asarray(pids))
            out[name] = {k: float(v) for k, v in q.items() if np.isscalar(v)}
    return out


def gather_local_labels(tables: list[pd.DataFrame], image_ids: pd.Series, names: list[str]) -> np.ndarray:
    """Phase-1 local labels of every camera, aligned to ``image_ids`` by image identity (never
    by path or position); -1 for an image no table covers. ``names`` label errors (file paths)."""
    local = np.full(len(image_ids), -1, np.int64)
    for table, name in zip(tables, names, strict=True):
        local[align(table.image_id, image_ids, name)] = table.local_label
    return local
