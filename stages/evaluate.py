"""`calr-stage evaluate` and `report`: per-round metrics for `dvc metrics`, curves for `dvc plots`."""
from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer

from stages._common import ARTIFACTS_OPT, PARAMS_OPT, SET_OPT, echo, pick, setup, stage


@stage
def evaluate(
    rnd: int = typer.Option(..., "--round", help="Phase-2 round whose checkpoint to evaluate."),
    rerank: Optional[bool] = typer.Option(None, "--rerank/--no-rerank", help="k-reciprocal re-ranking (default: params evaluate.rerank)."),
    params: Path = PARAMS_OPT,
    set_: Optional[List[str]] = SET_OPT,
    artifacts: Path = ARTIFACTS_OPT,
) -> None:
    """mAP, Rank-1/5/10 and mINP on query/gallery, the quality of the round's pseudo labels
    against ground truth, cluster counts, and a ranked-list picture."""
    from calr_core.data.manifest import split, train_pids
    from calr_core.io import atomic_write_text, read_table
    from calr_core.model.state import load_model
    from calr_core.report import evaluate_model, pseudo_label_quality

    p, layout = setup(params, set_, artifacts)
    e = p.evaluate
    manifest = read_table("manifest", layout.manifest)
    metrics = {"round": rnd, **evaluate_model(
        load_model(layout.checkpoint(rnd)), manifest.attrs["root"], split(manifest, "query"),
        split(manifest, "gallery"), height=p.model.height, width=p.model.width,
        batch_size=p.extract.batch_size, workers=p.extract.workers, device=p.extract.device,
        max_rank=e.max_rank, rerank=pick(rerank, e.rerank), rerank_k1=e.rerank_k1,
        rerank_k2=e.rerank_k2, rerank_lambda=e.rerank_lambda, picture=layout.ranked_list(rnd),
        picture_queries=e.picture_queries)}
    pseudo = read_table("pseudo_labels", layout.pseudo_labels(rnd))
    pids = train_pids(manifest, pseudo.image_id, str(layout.manifest))
    metrics.update(pseudo_label_quality(pseudo.label.to_numpy(), pids))
    atomic_write_text(layout.metrics(rnd), json.dumps(metrics, indent=2) + "\n")
    echo(f"{layout.metrics(rnd)}: round {rnd}: mAP {100 * metrics['mAP']:.1f}, "
         f"Rank-1 {100 * metrics['Rank-1']:.1f}"
         + (f", pseudo-label F {100 * metrics['pl_pairwise_f']:.1f}" if "pl_pairwise_f" in metrics else ""))


@stage
def report(
    artifacts: Path = ARTIFACTS_OPT,
    params: Path = PARAMS_OPT,
    set_: Optional[List[str]] = SET_OPT,
) -> None:
    """Collect every round's metrics into the curves file of `dvc plots` and print the table."""
    from calr_core.io import atomic_path
    from calr_core.report import metrics_table

    p, layout = setup(params, set_, artifacts)
    files = [layout.metrics(r.id) for r in p.rounds if layout.metrics(r.id).is_file()]
    if not files:
        raise ValueError(f"no metrics in {layout.metrics_dir}: run `dvc repro` first")
    table = metrics_table([json.loads(f.read_text()) for f in files])
    with atomic_path(layout.curves) as tmp:
        table.to_csv(tmp, index=False)
    echo(table.to_markdown(index=False) if _has_tabulate() else table.to_string(index=False))
    best = table.loc[table.mAP.idxmax()]
    echo(f"last round {int(table['round'].iloc[-1])}: mAP {table.mAP.iloc[-1]:.1f}; "
         f"best round {int(best['round'])}: mAP {best.mAP:.1f} (chosen on the test set: report both)")


def _has_tabulate() -> bool:
    try:
        import tabulate  # noqa: F401
        return True
    except ImportError:
        return False
