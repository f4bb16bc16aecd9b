"""The per-round report: the table a person compares, from the rounds' metrics files."""
from __future__ import annotations

import pandas as pd


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
