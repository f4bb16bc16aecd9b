"""A model's re-ID metrics on a query / gallery split: extraction, then ``evaluate_features``
(or k-reciprocal re-ranking), and the ranked-list picture of a few queries."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from calr_core.eval.evaluate import evaluate_features, pairwise_distance
from calr_core.eval.metrics import cmc_table
from calr_core.eval.picture import ranked_list_picture
from calr_core.eval.rerank import rerank_evaluate
from calr_core.model.extract import extract_features


def evaluate_model(model, root: str | os.PathLike, query: pd.DataFrame, gallery: pd.DataFrame, *,
                   height: int, width: int, batch_size: int = 128, workers: int = 2,
                   cache_mb: float, device: str = "auto", cpu_mode: str = "auto", max_rank: int = 50, rerank: bool = False,
                   rerank_k1: int = 20, rerank_k2: int = 6, rerank_lambda: float = 0.3,
                   rerank_form: str = "zhong",
                   picture: str | os.PathLike | None = None, picture_queries: int = 6) -> dict:
    """Market-protocol metrics of ``model`` on query vs gallery (frames with path/pid/camid),
    and optionally the ranked-list picture. Returns mAP, Rank-1/5/10, mINP (fractions)."""
    kw = dict(height=height, width=width, batch_size=batch_size, workers=workers, cache_mb=cache_mb,
              device=device, cpu_mode=cpu_mode)
    q = extract_features(model, Path(root), query.path.tolist(), **kw)  # (Q, D)
    g = extract_features(model, Path(root), gallery.path.tolist(), **kw)  # (G, D)
    ids = (query.pid.to_numpy(), gallery.pid.to_numpy(), query.camid.to_numpy(), gallery.camid.to_numpy())
    if rerank:
        rr = dict(k1=rerank_k1, k2=rerank_k2, lambda_=rerank_lambda, form=rerank_form)
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
