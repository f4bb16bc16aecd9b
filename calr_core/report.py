"""Round evaluation and the per-round report: what `evaluate` and `report` compute."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from calr_core.eval import (
    cmc_table,
    evaluate_features,
    label_quality,
    pairwise_distance,
    rerank_evaluate,
)
from calr_core.eval.picture import ranked_list_picture
from calr_core.model.extract import extract_features


def evaluate_model(model, root: str | os.PathLike, query: pd.DataFrame, gallery: pd.DataFrame, *,
                   height: int, width: int, batch_size: int = 128, workers: int = 2,
                   device: str = "auto", max_rank: int = 50, rerank: bool = False,
                   rerank_k1: int = 20, rerank_k2: int = 6, rerank_lambda: float = 0.3,
                   picture: str | os.PathLike | None = None, picture_queries: int = 6) -> dict:
    """Market-protocol metrics of ``model`` on query vs gallery (frames with path/pid/camid),
    and optionally the ranked-list picture. Returns mAP, Rank-1/5/10, mINP (fractions)."""
    kw = dict(height=height, width=width, batch_size=batch_size, workers=workers, device=device)
    q = extract_features(model, Path(root), query.path.tolist(), **kw)  # (Q, D)
    g = extract_features(model, Path(root), gallery.path.tolist(), **kw)  # (G, D)
    ids = (query.pid.to_numpy(), gallery.pid.to_numpy(), query.camid.to_numpy(), gallery.camid.to_numpy())
    if rerank:
        rr = dict(k1=rerank_k1, k2=rerank_k2, lambda_=rerank_lambda)
        result = cmc_table(rerank_evaluate(q, g, *ids, max_rank=max_rank, device=device, **rr))
    else:
        result = cmc_table(evaluate_features(q, g, *ids, max_rank=max_rank, device=device))
    if picture is not None:  # plain distances of the shown queries only: bounded memory
        shown = np.flatnonzero(np.isin(ids[0], ids[1]))[:picture_queries]
        dist = pairwise_distance(q[shown], g)  # (S, G)
        ranked_list_picture([query.path.iloc[i] for i in shown], gallery.path.tolist(), dist,
                            ids[0][shown], *ids[1:2], ids[2][shown], ids[3], root=root,
                            out_png=picture, query_indices=range(len(shown)), cell=(height, width))
    return result


PSEUDO_LABEL_KEYS: tuple[str, ...] = tuple(f"pl_{k}" for k in (
    "nmi", "ari", "pairwise_precision", "pairwise_recall", "pairwise_f", "bcubed_precision",
    "bcubed_recall", "bcubed_f", "n_clusters", "n_outliers", "n_images"))  # label_quality's keys


def pseudo_label_quality(labels: np.ndarray, pids: np.ndarray) -> dict:
    """Quality of the labels training used against ground truth (images of unknown id dropped)."""
    if not (pids >= 0).any():
        return {}
    q = label_quality(labels, pids)
    return {f"pl_{k}": float(v) for k, v in q.items()}


def metrics_table(rows: list[dict]) -> pd.DataFrame:
    """One row per round, the columns a person compares (percentages); the start model's row
    (round "source", direct transfer) first, as round -1."""
    rows = [{**r, "round": -1 if r["round"] == "source" else r["round"]} for r in rows]
    frame = pd.DataFrame(rows).sort_values("round").reset_index(drop=True)
    cols = [c for c in ("round", "mAP", "Rank-1", "Rank-5", "mINP", "pl_pairwise_f", "pl_nmi",
                        "pl_n_clusters", "pl_n_outliers") if c in frame]
    frame = frame[cols].copy()
    for c in ("mAP", "Rank-1", "Rank-5", "mINP", "pl_pairwise_f", "pl_nmi"):
        if c in frame:
            frame[c] = (100 * frame[c]).round(1)
    return frame
