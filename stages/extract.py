"""`calr-stage extract`: eval-mode features of the training images with the previous round's model."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from calr_core.paths import previous
from calr_stages._common import ARTIFACTS_OPT, PARAMS_OPT, SET_OPT, echo, latest_round, pick, setup, stage


@stage
def extract(
    rnd: Optional[int] = typer.Option(None, "--round", help="Round whose clustering these features feed (default: the latest round whose start checkpoint exists)."),
    cam: Optional[int] = typer.Option(None, help="Phase 1: this camera's images and model; omit for phase 2 (all cameras)."),
    batch_size: Optional[int] = typer.Option(None, help="Images per batch (default: params extract.batch_size)."),
    device: Optional[str] = typer.Option(None, help="auto | cpu | cuda (default: params extract.device)."),
    params: Path = PARAMS_OPT,
    set_: Optional[List[str]] = SET_OPT,
    artifacts: Path = ARTIFACTS_OPT,
) -> None:
    """Features of round R come from the checkpoint of the round before it (R=0: the initial model)."""
    from calr_core.data.manifest import split
    from calr_core.io import read_table, write_features
    from calr_core.model.extract import extract_features
    from calr_core.model.state import load_model

    p, layout = setup(params, set_, artifacts, rnd=rnd, cam=cam)
    start = (lambda r: layout.checkpoint(previous(p.rounds, r))) if cam is None else \
        (lambda r: layout.intra_checkpoint(cam, previous(p.intra.rounds, r, "intra.rounds")))
    rnd = latest_round(p, rnd, cam, lambda r: start(r).is_file(), "a start checkpoint")
    manifest = read_table("manifest", layout.manifest)
    train = split(manifest, "train")
    ckpt = start(rnd)
    if cam is None:
        out = layout.features(rnd)
    else:
        train = train[train.camid == cam].reset_index(drop=True)
        if train.empty:
            raise ValueError(f"camera {cam} has no training images in {layout.manifest}")
        out = layout.intra_features(cam, rnd)
    feats = extract_features(load_model(ckpt), manifest.attrs["root"], train.path.tolist(),
                             height=p.model.height, width=p.model.width,
                             batch_size=pick(batch_size, p.extract.batch_size),
                             workers=p.extract.workers, cache_mb=p.data.cache_mb,
                             device=pick(device, p.extract.device), cpu_mode=p.extract.cpu_mode)
    write_features(out, train.image_id, train.camid, feats,
                   {"round": rnd, "camera": cam, "checkpoint": str(ckpt)})
    echo(f"{out}: {feats.shape[0]} x {feats.shape[1]} features from {ckpt}")
