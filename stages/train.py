"""`calr-stage train`: one round of training (phase 2), or of one camera's model (phase 1)."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import List, Optional

import typer

from calr_stages._common import ARTIFACTS_OPT, PARAMS_OPT, SET_OPT, echo, latest_round, setup, stage


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
    from calr_core.io import atomic_write_text, load_checkpoint, save_checkpoint
    from calr_core.model.state import load_model
    from calr_core.recipe import round_data, round_recipe
    from calr_core.train import distributed as du
    from calr_core.train.curves import curve_frame, curve_summary
    from calr_core.train.loop import train_round

    p, layout = setup(params, set_, artifacts, rnd=rnd, cam=cam)
    labels_of = layout.pseudo_labels if cam is None else (lambda r: layout.intra_labels(cam, r))
    rnd = latest_round(p, rnd, cam, lambda r: labels_of(r).is_file(), "labels")
    recipe = round_recipe(p, layout, rnd, cam, iters=iters, lr=lr, device=device)
    rank, _, _ = du.init_distributed(recipe.settings.device)
    data = round_data(recipe, layout.manifest, p.data.cameras)
    start = load_checkpoint(recipe.start, required=("model_args",))
    history: list[dict] = []
    state = train_round(load_model(start), data, recipe.settings, history=history,
                        resume_state=start if start.get("kind") != "init" else None,
                        recovery_path=recipe.recovery)
    du.cleanup()
    if rank != 0:
        return
    save_checkpoint(recipe.out, {**state, "kind": "trained", "model_args": start["model_args"],
                                 "round": rnd, "camera": cam, "resolved_params": dataclasses.asdict(p)})
    s = recipe.settings
    atomic_write_text(layout.train_curve(rnd, cam), curve_frame(history, rnd, s.iters, s.batch_size).to_csv(index=False))
    summary = {"round": rnd, **({} if cam is None else {"camera": cam}), **curve_summary(history, s.batch_size)}
    atomic_write_text(layout.train_metrics(rnd, cam), json.dumps(summary, indent=2) + "\n")
    echo(f"{recipe.out}: round {rnd}{'' if cam is None else f' camera {cam}'}: {s.iters} iterations, "
         f"mean loss {state['loss']:.4f}, {summary['train_seconds']:.0f} s, {summary['train_img_per_s']:.0f} img/s")
