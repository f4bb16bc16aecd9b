"""`calr-stage pretrain`: the source model, trained with labels on another dataset (or world)."""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import List, Optional

import typer

from calr_stages._common import ARTIFACTS_OPT, PARAMS_OPT, SET_OPT, echo, pick, setup, stage


@stage
def pretrain(
    iters: Optional[int] = typer.Option(None, help="Iterations (default: params source.iters)."),
    lr: Optional[float] = typer.Option(None, help="Adam learning rate (default: params source.lr)."),
    device: Optional[str] = typer.Option(None, help="auto | cpu | cuda (default: params train.device)."),
    params: Path = PARAMS_OPT,
    set_: Optional[List[str]] = SET_OPT,
    artifacts: Path = ARTIFACTS_OPT,
) -> None:
    """Supervised training on the labelled source of params `source` (a synthetic world of its
    own seed by default), written where `model.weights: source` starts both phases from.

    With another `model.weights` it writes a placeholder checkpoint and trains nothing. A killed
    run resumes from its recovery checkpoint (every source.save_every iterations).
    """
    from calr_core.io import save_checkpoint
    from calr_core.model.backbone import build_model
    from calr_core.train.pretrain import labelled_source
    from calr_core.train.pretrain import pretrain as run_pretraining

    p, layout = setup(params, set_, artifacts)
    s, m, out = p.source, p.model, layout.source_checkpoint
    if m.weights != "source":
        save_checkpoint(out, {"kind": "unused", "model_weights": m.weights})
        echo(f"{out}: not used (model.weights is {m.weights!r}, not 'source'): nothing trained")
        return
    args = {"arch": m.arch, "pooling": m.pooling, "weights": s.weights, "seed": m.seed}
    model = build_model(**args)
    with labelled_source(s.dataset, s.root, synth_size=s.synth_size, synth_seed=s.synth_seed,
                         workdir=layout.recovery("pretrain", 0).parent) as (train, root):
        state = run_pretraining(
            model, root=root, paths=train.path.tolist(), pids=train.pid.to_numpy(),
            camids=train.camid.to_numpy(), iters=pick(iters, s.iters), batch_size=s.batch_size,
            num_instances=s.num_instances, lr=pick(lr, s.lr), temp=s.temp,
            weight_decay=p.train.weight_decay, height=m.height, width=m.width,
            recovery_path=layout.recovery("pretrain", 0), save_every=s.save_every, seed=p.train.seed,
            device=pick(device, p.train.device), cpu_mode=p.train.cpu_mode,
            batch_size_extract=p.extract.batch_size, workers=p.train.workers, cache_mb=p.data.cache_mb)
    save_checkpoint(out, {"kind": "source", "model": state["model"], "model_args": args,
                          "classifier": state["memory"], "loss": state["loss"],
                          "resolved_params": {"model": dataclasses.asdict(m), "source": dataclasses.asdict(s)}})
    echo(f"{out}: {m.arch} pretrained on {s.dataset}"
         f"{f' (seed {s.synth_seed})' if s.dataset == 'synth' else ''}: {len(train)} images, "
         f"{pick(iters, s.iters)} iterations, mean loss {state['loss']:.4f}")
