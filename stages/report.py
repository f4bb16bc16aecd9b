"""`calr-stage report`: every round's metrics and training curve in the files of `dvc plots`."""
from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

from calr_stages._common import ARTIFACTS_OPT, PARAMS_OPT, SET_OPT, echo, setup, stage


@stage
def report(
    artifacts: Path = ARTIFACTS_OPT,
    params: Path = PARAMS_OPT,
    set_: Optional[List[str]] = SET_OPT,
) -> None:
    """Collect every round's metrics and training curve into the files of `dvc plots` and print
    the table."""
    import pandas as pd

    from calr_core.io import atomic_path
    from calr_core.report import metrics_table

    p, layout = setup(params, set_, artifacts)
    files = [layout.metrics(r) for r in ["source", *(r.id for r in p.rounds)] if layout.metrics(r).is_file()]
    if not files:
        raise ValueError(f"no metrics in {layout.metrics_dir}: run `dvc repro` first")
    table = metrics_table([json.loads(f.read_text()) for f in files])
    with atomic_path(layout.curves) as tmp:
        table.to_csv(tmp, index=False)
    trained = [f for f in (layout.train_curve(r.id) for r in p.rounds) if f.is_file()]
    if trained:  # every phase-2 round's iterations in one file: one loss curve across rounds
        with atomic_path(layout.train_curves) as tmp:
            pd.concat([pd.read_csv(f) for f in trained]).to_csv(tmp, index=False)
    shown = table.astype({"round": object})
    shown.loc[shown["round"] == -1, "round"] = "source"
    if _has_tabulate():  # the start model has no pseudo labels: blank cells, not "nan"
        echo(shown.astype(object).where(shown.notna(), None).to_markdown(index=False, missingval=""))
    else:
        echo(shown.to_string(index=False, na_rep=""))
    rounds = table[table["round"] >= 0]
    if rounds.empty:
        return
    best, last = rounds.loc[rounds.mAP.idxmax()], rounds.iloc[-1]
    start = table[table["round"] == -1]
    gain = f" ({last.mAP - start.mAP.iloc[0]:+.1f} over the start model)" if len(start) else ""
    echo(f"last round {int(last['round'])}: mAP {last.mAP:.1f}{gain}; best round "
         f"{int(best['round'])}: mAP {best.mAP:.1f} (chosen on the test set: report both)")


def _has_tabulate() -> bool:
    try:
        import tabulate  # noqa: F401
        return True
    except ImportError:
        return False
