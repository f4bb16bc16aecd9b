"""`calr-stage cluster-intra` and `select-local`: phase 1 local labels and model selection."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from calr_stages._common import ARTIFACTS_OPT, PARAMS_OPT, SET_OPT, echo, latest_round, setup, stage


@stage
def cluster_intra(
    cam: int = typer.Option(..., help="Camera to cluster (0-based)."),
    rnd: Optional[int] = typer.Option(None, "--round", help="Intra-camera round (default: the latest with features)."),
    params: Path = PARAMS_OPT,
    set_: Optional[List[str]] = SET_OPT,
    artifacts: Path = ARTIFACTS_OPT,
) -> None:
    """Cluster one camera's features (Jaccard + average linkage); record the silhouette."""
    import pandas as pd

    from calr_core.io import read_features, write_table
    from calr_core.labelling import cluster_camera

    p, layout = setup(params, set_, artifacts, rnd=rnd, cam=cam)
    rnd = latest_round(p, rnd, cam, lambda r: layout.intra_features(cam, r).is_file(), "features")
    frame, feats = read_features(layout.intra_features(cam, rnd))
    q = p.intra
    labels, score = cluster_camera(feats, k1=q.k1, k2=q.k2, n_clusters=q.n_clusters, ratio=q.ratio)
    out = layout.intra_labels(cam, rnd)
    write_table("local_labels", pd.DataFrame({
        "image_id": frame.image_id, "camid": frame.camid, "local_label": labels,
        "round": rnd, "silhouette": score}), out, {"camera": cam, "round": rnd})
    echo(f"{out}: camera {cam} round {rnd}: {labels.max() + 1} clusters of {len(labels)} images, "
         f"silhouette {score:.4f}")


@stage
def select_local(
    cam: int = typer.Option(..., help="Camera whose best round to keep."),
    params: Path = PARAMS_OPT,
    set_: Optional[List[str]] = SET_OPT,
    artifacts: Path = ARTIFACTS_OPT,
) -> None:
    """Keep the local labels of the intra round with the highest silhouette (phase 1 selection)."""
    from calr_core.io import read_table, write_table
    from calr_core.labelling import best_round

    p, layout = setup(params, set_, artifacts, cam=cam)
    tables = [read_table("local_labels", layout.intra_labels(cam, r.id)) for r in p.intra.rounds]
    best = best_round(tables)
    out = layout.local_labels(cam)
    write_table("local_labels", best, out, {"camera": cam, "round": int(best["round"].iloc[0])})
    scores = ", ".join(f"r{int(t['round'].iloc[0])}={t.silhouette.iloc[0]:.4f}" for t in tables)
    echo(f"{out}: camera {cam} keeps round {int(best['round'].iloc[0])} (silhouettes {scores})")
