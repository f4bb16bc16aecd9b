"""Quality of pseudo labels against ground-truth identities (diagnostics of phase 1 and phase 2
steps 4-6: how pure and how complete the clusters are, before and after refinement).

Conventions (pred == -1 is an outlier, true == -1 is an unknown identity):
- images whose true identity is unknown (true == -1) are left out of everything;
- NMI / ARI (scikit-learn) see each outlier as its own singleton cluster;
- pairwise: precision = share of same-identity pairs among the pairs inside predicted clusters
  (clustered images only); recall = share of all same-identity pairs (all images) that end up
  inside one predicted cluster. Dropping an image to the outliers never costs precision but
  costs recall;
- BCubed: precision = mean over clustered images of |C(i) & T(i)| / |C(i)|; recall = mean over
  all images of |C(i) & T(i)| / |T(i)|, an outlier being the singleton C(i) = {i}.
A ratio with an empty denominator is 0; F is the harmonic mean (0 when both are 0).
All counts come from the sparse contingency matrix: O(N) time and memory, no pair loops.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score


def _ratio(a: float, b: float) -> float:
    return float(a / b) if b > 0 else 0.0


def _f(p: float, r: float) -> float:
    return 2 * p * r / (p + r) if p + r > 0 else 0.0


def _pairs(counts: np.ndarray) -> float:
    c = counts.astype(np.float64)
    return float((c * (c - 1) / 2).sum())


def _codes(x: np.ndarray) -> np.ndarray:
    return np.unique(x, return_inverse=True)[1].ravel()


def label_quality(pred, true) -> dict:
    """NMI, ARI, pairwise and BCubed precision/recall/F of ``pred`` against ``true`` (see module
    docstring), plus n_clusters, n_outliers and n_images (images with a known identity)."""
    pred, true = np.asarray(pred), np.asarray(true)
    for name, a in (("pred", pred), ("true", true)):
        if a.ndim != 1 or not np.issubdtype(a.dtype, np.integer):
            raise ValueError(f"{name}: expected a 1-d integer array, got shape {a.shape} dtype {a.dtype}")
    if len(pred) != len(true):
        raise ValueError(f"pred: expected the length of true ({len(true)}), got {len(pred)}")
    if (pred < -1).any():
        raise ValueError(f"pred: labels must be >= -1 (-1 = outlier), found {int(pred.min())}")
    known = true >= 0
    pred, true = pred[known], true[known]
    n = len(pred)
    if n == 0:
        raise ValueError("true: no image with a known identity (all -1 or empty)")
    out = pred == -1
    t = _codes(true)  # (N,) 0..T-1
    t_size = np.bincount(t)  # (T,)
    clustered = ~out
    c = _codes(pred[clustered])  # (M,) 0..K-1
    k = int(c.max()) + 1 if len(c) else 0
    cont = sp.coo_matrix((np.ones(len(c)), (c, t[clustered])), shape=(k, len(t_size))).tocsr()
    cont.sum_duplicates()
    n_ct = cont.data  # non-zero cells
    rows = np.repeat(np.arange(k), np.diff(cont.indptr))
    c_size = np.bincount(c, minlength=k)  # (K,)

    tp = _pairs(n_ct)
    pw_p, pw_r = _ratio(tp, _pairs(c_size)), _ratio(tp, _pairs(t_size))
    bc_p = _ratio((n_ct ** 2 / c_size[rows]).sum(), clustered.sum())
    bc_r = _ratio((n_ct ** 2 / t_size[cont.indices]).sum() + (1.0 / t_size[t[out]]).sum(), n)

    singles = pred.copy()  # outliers become singleton clusters for NMI / ARI
    singles[out] = pred.max() + 1 + np.arange(out.sum())
    return {
        "nmi": float(normalized_mutual_info_score(true, singles)),
        "ari": float(adjusted_rand_score(true, singles)),
        "pairwise_precision": pw_p, "pairwise_recall": pw_r, "pairwise_f": _f(pw_p, pw_r),
        "bcubed_precision": bc_p, "bcubed_recall": bc_r, "bcubed_f": _f(bc_p, bc_r),
        "n_clusters": k, "n_outliers": int(out.sum()), "n_images": n,
    }


PSEUDO_LABEL_KEYS: tuple[str, ...] = tuple(f"pl_{k}" for k in (
    "nmi", "ari", "pairwise_precision", "pairwise_recall", "pairwise_f", "bcubed_precision",
    "bcubed_recall", "bcubed_f", "n_clusters", "n_outliers", "n_images"))  # label_quality's keys


def pseudo_label_quality(labels: np.ndarray, pids: np.ndarray) -> dict:
    """Quality of the labels training used against ground truth (images of unknown id dropped)."""
    if not (pids >= 0).any():
        return {}
    q = label_quality(labels, pids)
    return {f"pl_{k}": float(v) for k, v in q.items()}
