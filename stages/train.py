"""`calr-stage train`: one round of training (phase 2), or of one camera's model (phase 1)."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import List, Optional

import numpy as np
import typer

from calr_core.paths import previous
from calr_stages._common import ARTIFACTS_OPT, PARAMS_OPT, SET_OPT, echo, latest_round, pick, setup, stage


@stage
def train(
    rnd: Optional[int] = typer.Option(None, "--round", help="Round to train (default: the latest with pseudo labels, or local labels with --cam)."),
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
    from calr_core.data.manifest import align, camera_index, split
    from calr_core.io import atomic_write_text, load_checkpoint, read_features, read_table, save_checkpoint
    from calr_core.labels import class_weights
    from calr_core.model.state import load_model
    from calr_core.train import distributed as du
    from calr_core.train.curves import curve_frame, curve_summary
    from calr_core.train.loop import train_round

    p, layout = setup(params, set_, artifacts, rnd=rnd, cam=cam)
    labels_of = layout.pseudo_labels if cam is None else (lambda r: layout.intra_labels(cam, r))
    rnd = latest_round(p, rnd, cam, lambda r: labels_of(r).is_file(), "labels")
    rank, _, _ = du.init_distributed(pick(device, p.train.device))
    t, q = p.train, p.intra
    manifest = split(read_table("manifest", layout.manifest), "train")
    if cam is None:
        labels_path, feats_path = labels_of(rnd), layout.features(rnd)
        labels = read_table("pseudo_labels", labels_path)
        prev, out = layout.checkpoint(previous(p.rounds, rnd)), layout.checkpoint(rnd)
        weighted = 0 <= t.weights_from <= rnd
        column = labels.label
        kw = dict(class_weights=class_weights(labels) if weighted else None,
                  n_cams=len(p.data.cameras), camera_alignment=rnd < t.camera_rounds,
                  iters=pick(iters, t.iters), batch_size=t.batch_size, num_instances=t.num_instances,
                  lr=pick(lr, t.lr), recovery_path=layout.recovery("phase2", rnd))
    else:
        labels_path, feats_path = labels_of(rnd), layout.intra_features(cam, rnd)
        labels = read_table("local_labels", labels_path)
        prev = layout.intra_checkpoint(cam, previous(q.rounds, rnd, "intra.rounds"))
        out = layout.intra_checkpoint(cam, rnd)
        column = labels.local_label
        kw = dict(iters=pick(iters, q.iters), batch_size=q.batch_size, num_instances=q.num_instances, lr=pick(lr, q.lr),
                  recovery_path=layout.recovery("phase1", rnd, cam))
    # the features' row order (the manifest's) for every table, matched by image id: a label
    # file the user sorted or filtered in pandas trains the same (images it omits: not trained on)
    frame, feats = read_features(feats_path)
    target = np.full(len(frame), -1, np.int64)  # (N,)
    target[align(labels.image_id, frame.image_id, str(labels_path))] = column
    if (target < 0).all():
        raise ValueError(f"{labels_path}: every image is an outlier (no cluster): nothing to train on; "
                         f"check the clustering settings or the previous round's model")
    rows = manifest.iloc[align(frame.image_id, manifest.image_id, str(layout.manifest))]
    camids = rows.camid.to_numpy()
    if cam is None:  # the camera head counts cameras 0..C-1
        camids = camera_index(camids, p.data.cameras, str(layout.manifest))
    start = load_checkpoint(prev, required=("model_args",))
    history: list[dict] = []
    state = train_round(
        load_model(start), root=manifest.attrs["root"], paths=rows.path.tolist(), labels=target,
        camids=camids, init_features=feats,
        resume_state=start if start.get("kind") != "init" else None, epoch=rnd,
        camera_weight=t.camera_weight, camera_loss_form=t.camera_loss, height=p.model.height,
        width=p.model.width, weight_decay=t.weight_decay, step_size=t.step_size, gamma=t.gamma,
        temp=t.temp, momentum=t.momentum, memory_mode=t.memory, bn_group=t.bn_group,
        save_every=t.save_every, seed=t.seed, device=pick(device, t.device), workers=t.workers,
        history=history, **kw)
    du.cleanup()
    if rank != 0:
        return
    save_checkpoint(out, {**state, "kind": "trained", "model_args": start["model_args"],
                          "round": rnd, "camera": cam, "resolved_params": dataclasses.asdict(p)})
    batch = kw["batch_size"]
    atomic_write_text(layout.train_curve(rnd, cam), curve_frame(history, rnd, kw["iters"], batch).to_csv(index=False))
    summary = {"round": rnd, **({} if cam is None else {"camera": cam}), **curve_summary(history, batch)}
    atomic_write_text(layout.train_metrics(rnd, cam), json.dumps(summary, indent=2) + "\n")
    echo(f"{out}: round {rnd}{'' if cam is None else f' camera {cam}'}: {kw['iters']} iterations, "
         f"mean loss {state['loss']:.4f}, {summary['train_seconds']:.0f} s, {summary['train_img_per_s']:.0f} img/s")
