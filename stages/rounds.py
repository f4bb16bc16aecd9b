"""`calr-stage intra` and `calr-stage round`: the units DVC caches, each in one process.

`intra --cam C` is camera C's whole phase 1 (its initial model, every intra round's extract ->
cluster-intra -> train, then select-local); `round --round R` is phase-2 round R (extract ->
cluster-global -> train -> evaluate). Each runs the step commands themselves, with the same
options, in order: a step run by hand (`calr-stage cluster-intra --cam 3 --round 0`) writes
the same files as the same step inside `intra`.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import List, Optional

import typer

from calr_stages._common import ARTIFACTS_OPT, PARAMS_OPT, SET_OPT, call, setup, stage
from calr_stages.cluster_global import cluster_global
from calr_stages.cluster_intra import cluster_intra, select_local
from calr_stages.evaluate import evaluate
from calr_stages.extract import extract
from calr_stages.init import init
from calr_stages.train import train

log = logging.getLogger("calr")

INTRA_STEPS = (extract, cluster_intra, train)  # each intra round, between init and select_local
ROUND_STEPS = (extract, cluster_global, train, evaluate)


@stage
def intra(
    cam: int = typer.Option(..., help="Camera (0-based) whose phase 1 to run."),
    params: Path = PARAMS_OPT,
    set_: Optional[List[str]] = SET_OPT,
    artifacts: Path = ARTIFACTS_OPT,
) -> None:
    """Phase 1 of one camera: init, then each intra round's extract, cluster-intra and train,
    then select-local (the round with the best silhouette gives the camera's local labels)."""
    p, _ = setup(params, set_, artifacts, cam=cam)
    given = dict(cam=cam, params=params, set_=set_, artifacts=artifacts)
    call(init, **given)
    for i, r in enumerate(p.intra.rounds):
        log.info("camera %d: intra round %d (%d of %d)", cam, r.id, i + 1, len(p.intra.rounds))
        for step in INTRA_STEPS:
            call(step, rnd=r.id, **given)
    call(select_local, **given)


@stage
def round_(
    rnd: int = typer.Option(..., "--round", help="Phase-2 round to run."),
    params: Path = PARAMS_OPT,
    set_: Optional[List[str]] = SET_OPT,
    artifacts: Path = ARTIFACTS_OPT,
) -> None:
    """Phase-2 round R: extract, cluster-global (cluster, refine, weight), train, evaluate."""
    setup(params, set_, artifacts, rnd=rnd)
    for step in ROUND_STEPS:
        call(step, rnd=rnd, params=params, set_=set_, artifacts=artifacts)
