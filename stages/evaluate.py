"""`calr-stage evaluate`: per-round metrics for `dvc metrics`."""
from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer

from calr_stages._common import ARTIFACTS_OPT, PARAMS_OPT, SET_OPT, echo, fail, latest_round, pick, setup, stage


@stage
def evaluate(
    rnd: Optional[int] = typer.Option(None, "--round", help="Phase-2 round whose checkpoint to evaluate (default: the latest trained one)."),
    source: bool = typer.Option(False, "--source", help="Evaluate the start model instead (direct "
                                "transfer: the model.weights start, before any adaptation)."),
    rerank: Optional[bool] = typer.Option(None, "--rerank/--no-rerank", help="k-reciprocal re-ranking (default: params evaluate.rerank)."),
    params: Path = PARAMS_OPT,
    set_: Optional[List[str]] = SET_OPT,
    artifacts: Path = ARTIFACTS_OPT,
) -> None:
    """mAP, Rank-1/5/10 and mINP on query/gallery, the quality of the round's pseudo labels
    against ground truth, cluster counts, and a ranked-list picture.

    With --source: the same metrics of the start model (artifacts/metrics/source.json), the
    first row of the report; its pseudo-label entries are null (nothing was trained on labels).
    """
    from calr_core.data.manifest import split, train_pids
    from calr_core.io import atomic_write_text, read_table
    from calr_core.model.state import load_model
    from calr_core.eval.model import evaluate_model
    from calr_core.eval.quality import PSEUDO_LABEL_KEYS, pseudo_label_quality

    p, layout = setup(params, set_, artifacts, rnd=rnd)
    if rnd is not None and source:
        fail("give --round R or --source, not both")
    if not source:
        rnd = latest_round(p, rnd, None, lambda r: layout.checkpoint(r).is_file(), "a trained checkpoint")
    e = p.evaluate
    key, folder = ("source", "init") if source else (rnd, rnd)  # metrics name, checkpoint folder
    manifest = read_table("manifest", layout.manifest)
    metrics = {"round": key, **evaluate_model(
        load_model(layout.checkpoint(folder)), manifest.attrs["root"],
        split(manifest, "query"), split(manifest, "gallery"), height=p.model.height,
        width=p.model.width, batch_size=p.extract.batch_size, workers=p.extract.workers,
        cache_mb=p.data.cache_mb, device=p.extract.device, cpu_mode=p.extract.cpu_mode, max_rank=e.max_rank, rerank=pick(rerank, e.rerank),
        rerank_k1=e.rerank_k1, rerank_k2=e.rerank_k2, rerank_lambda=e.rerank_lambda,
        rerank_form=e.rerank_form,
        picture=layout.ranked_list(folder), picture_queries=e.picture_queries)}
    if source:
        metrics.update(dict.fromkeys(PSEUDO_LABEL_KEYS))
    else:
        pseudo = read_table("pseudo_labels", layout.pseudo_labels(rnd))
        pids = train_pids(manifest, pseudo.image_id, str(layout.manifest))
        metrics.update(pseudo_label_quality(pseudo.label.to_numpy(), pids))
    atomic_write_text(layout.metrics(key), json.dumps(metrics, indent=2) + "\n")
    echo(f"{layout.metrics(key)}: {'start model' if source else f'round {rnd}'}: mAP {100 * metrics['mAP']:.1f}, "
         f"Rank-1 {100 * metrics['Rank-1']:.1f}"
         + (f", pseudo-label F {100 * metrics['pl_pairwise_f']:.1f}" if metrics.get("pl_pairwise_f") is not None else ""))

