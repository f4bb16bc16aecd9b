"""`calr-stage train`: one round of training (phase 2), or of one camera's model (phase 1)."""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import List, Optional

import typer

from calr_core.paths import previous
from stages._common import ARTIFACTS_OPT, PARAMS_OPT, SET_OPT, echo, pick, setup, stage


@stage
def train(
    rnd: int = typer.Option(..., "--round", help="Round to train (its pseudo labels must exist)."),
    cam: Optional[int] = typer.Option(None, help="Phase 1: train camera C's own model on its local labels."),
    iters: Optional[int] = typer.Option(None, help="Iterations (default: params train.iters, or intra.iters with --cam)."),
    lr: Optional[float] = typer.Option(None, help="Adam learning rate (default: params train.lr / intra.lr)."),
    device: Optional[str] = typer.Option(None, help="auto | cpu | cuda (default: params train.device)."),
    params: Path = PARAMS_OPT,
    set_: Optional[List[str]] = SET_OPT,
    artifacts: Path = ARTIFACTS_OPT,
) -> None:
    """Train with the cluster memory (+ camera alignment and cluster weights in phase 2).

    A killed run resumes from its recovery checkpoint (every train.save_every iterations) when
    re-run with the same inputs, and ends with the same weights as an uninterrupted run.
    Several GPUs: `torchrun --nproc_per_node N $(which calr-stage) train --round R`.
    """
    from calr_core.data.manifest import align, split
    from calr_core.io import load_checkpoint, read_features, read_table, save_checkpoint
    from calr_core.labels import class_weights
    from calr_core.model.state import load_model
    from calr_core.train import distributed as du
    from calr_core.train.loop import train_round

    p, layout = setup(params, set_, artifacts)
    rank, _, _ = du.init_distributed(pick(device, p.train.device))
    t, q = p.train, p.intra
    manifest = split(read_table("manifest", layout.manifest), "train")
    if cam is None:
        labels = read_table("pseudo_labels", layout.pseudo_labels(rnd))
        _, feats = read_features(layout.features(rnd))
        prev, out = layout.checkpoint(previous(p.rounds, rnd)), layout.checkpoint(rnd)
        weighted = 0 <= t.weights_from <= rnd
        kw = dict(labels=labels.label.to_numpy(), class_weights=class_weights(labels) if weighted else None,
                  n_cams=len(p.data.cameras), camera_alignment=rnd < t.camera_rounds,
                  iters=pick(iters, t.iters), batch_size=t.batch_size, num_instances=t.num_instances,
                  lr=pick(lr, t.lr), recovery_path=layout.recovery("phase2", rnd))
    else:
        labels = read_table("local_labels", layout.intra_labels(cam, rnd))
        _, feats = read_features(layout.intra_features(cam, rnd))
        prev = layout.intra_checkpoint(cam, previous(q.rounds, rnd, "intra.rounds"))
        out = layout.intra_checkpoint(cam, rnd)
        kw = dict(labels=labels.local_label.to_numpy(), iters=pick(iters, q.iters),
                  batch_size=q.batch_size, num_instances=q.num_instances, lr=pick(lr, q.lr),
                  recovery_path=layout.recovery("phase1", rnd, cam))
    if (kw["labels"] < 0).all():
        raise ValueError(f"round {rnd}: every image is an outlier (no cluster): nothing to train on; "
                         f"check the clustering settings or the previous round's model")
    rows = manifest.iloc[align(labels.image_id, manifest.image_id, str(layout.manifest))]
    start = load_checkpoint(prev, required=("model_args",))
    state = train_round(
        load_model(start), root=manifest.attrs["root"], paths=rows.path.tolist(),
        camids=rows.camid.to_numpy(), init_features=feats,
        resume_state=start if start.get("kind") != "init" else None, epoch=rnd,
        camera_weight=t.camera_weight, camera_loss_form=t.camera_loss, height=p.model.height,
        width=p.model.width, weight_decay=t.weight_decay, step_size=t.step_size, gamma=t.gamma,
        temp=t.temp, momentum=t.momentum, memory_mode=t.memory, bn_group=t.bn_group,
        save_every=t.save_every, seed=t.seed, device=pick(device, t.device), workers=t.workers, **kw)
    du.cleanup()
    if rank != 0:
        return
    save_checkpoint(out, {**state, "kind": "trained", "model_args": start["model_args"],
                          "round": rnd, "camera": cam, "resolved_params": dataclasses.asdict(p)})
    echo(f"{out}: round {rnd}{'' if cam is None else f' camera {cam}'}: {kw['iters']} iterations, "
         f"mean loss {state['loss']:.4f}")
