"""`calr-stage init`: the round-0 checkpoint (initial model) a phase starts from."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from calr_stages._common import ARTIFACTS_OPT, PARAMS_OPT, SET_OPT, echo, setup, stage


@stage
def init(
    cam: Optional[int] = typer.Option(None, help="Phase 1: the camera whose model starts here; omit for phase 2."),
    params: Path = PARAMS_OPT,
    set_: Optional[List[str]] = SET_OPT,
    artifacts: Path = ARTIFACTS_OPT,
) -> None:
    """Write the initial model (params `model`: arch, pooling, weights, seed) as round 'init'.

    weights: none (seeded random), imagenet (torchvision file in the torch cache), source (the
    `pretrain` stage's model) or a path to a checkpoint or state dict.
    """
    from calr_core.io import load_checkpoint
    from calr_core.model.state import save_initial

    p, layout = setup(params, set_, artifacts, cam=cam)
    out = layout.checkpoint("init") if cam is None else layout.intra_checkpoint(cam, "init")
    m = p.model
    weights = m.weights
    if weights == "source":
        weights = str(layout.source_checkpoint)
        if not layout.source_checkpoint.is_file() or "model" not in load_checkpoint(weights):
            raise ValueError(f"model.weights=source: {weights} holds no pretrained model; run "
                             f"`calr-stage pretrain` (with model.weights: source) first")
    save_initial(out, arch=m.arch, pooling=m.pooling, weights=weights, seed=m.seed)
    echo(f"{out}: {m.arch} ({m.pooling} pooling, weights {m.weights}, seed {m.seed})")
