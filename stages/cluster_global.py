"""`calr-stage cluster-global`: phase 2 pseudo labels (cluster, refine, weight) of one round."""
from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer

from calr_stages._common import ARTIFACTS_OPT, PARAMS_OPT, SET_OPT, echo, latest_round, setup, stage


@stage
def cluster_global(
    rnd: Optional[int] = typer.Option(None, "--round", help="Phase-2 round (default: the latest with features)."),
    method: Optional[str] = typer.Option(None, help="infomap | dbscan (default: params cluster.method)."),
    refine: Optional[bool] = typer.Option(None, "--refine/--no-refine", help="Pivot refinement (default: params cluster.refine)."),
    params: Path = PARAMS_OPT,
    set_: Optional[List[str]] = SET_OPT,
    artifacts: Path = ARTIFACTS_OPT,
) -> None:
    """Write the round's pseudo-label Parquet and a JSON summary (counts, and quality where the
    manifest has ground truth)."""
    import pandas as pd

    from calr_core.data.manifest import camera_index, train_pids
    from calr_core.io import atomic_write_text, read_features, read_table, write_table
    from calr_core.labelling import cluster_global as run_clustering
    from calr_core.labelling import gather_local_labels, summarize

    flags = [f"cluster.method={method}"] * (method is not None) + [f"cluster.refine={refine}"] * (refine is not None)
    p, layout = setup(params, [*(set_ or []), *flags], artifacts, rnd=rnd)  # params check the pair
    rnd = latest_round(p, rnd, None, lambda r: layout.features(r).is_file(), "features")
    c = p.cluster
    frame, feats = read_features(layout.features(rnd))
    local = None
    if c.refine:
        files = [layout.local_labels(cam) for cam in p.data.cameras]
        local = gather_local_labels([read_table("local_labels", f) for f in files], frame.image_id,
                                    [str(f) for f in files])
    pseudo = run_clustering(
        feats, camera_index(frame.camid, p.data.cameras, str(layout.features(rnd))), local,
        n_cams=len(p.data.cameras),
        rnd=rnd, n_rounds=c.decay_rounds, method=c.method, k1=c.k1, k2=c.k2,
        eps=c.eps, dbscan_eps=c.dbscan_eps, dbscan_k1=c.dbscan_k1, dbscan_k2=c.dbscan_k2,
        dbscan_min_samples=c.dbscan_min_samples,
        refine=c.refine, pivot_rule=c.pivot_rule, decay_schedule=c.decay, seed=c.seed, knn=c.knn,
        knn_nprobe=c.knn_nprobe, knn_ef=c.knn_ef)
    pseudo = pd.concat([frame[["image_id", "camid"]], pseudo], axis=1)
    write_table("pseudo_labels", pseudo, layout.pseudo_labels(rnd), {"round": rnd})
    pids = train_pids(read_table("manifest", layout.manifest), frame.image_id, str(layout.manifest))
    summary = {"round": rnd, **summarize(pseudo, pids)}
    atomic_write_text(layout.cluster_summary(rnd), json.dumps(summary, indent=2) + "\n")
    if summary["clusters"] == 0:
        typer.secho(f"warning: round {rnd} found no cluster; training on it will fail", fg="yellow", err=True)
    echo(f"{layout.pseudo_labels(rnd)}: {summary['clusters']} clusters, {summary['outliers']} outliers, "
         f"{summary['removed_by_refinement']} removed by refinement"
         + (f", pairwise F {summary['refined']['pairwise_f']:.3f}" if "refined" in summary else ""))
