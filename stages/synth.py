"""`calr-stage synth`: render the synthetic camera world as a Market-1501-layout folder."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from calr_stages._common import PARAMS_OPT, SET_OPT, echo, pick, setup, stage


@stage
def synth(
    out: Optional[Path] = typer.Option(None, help="Folder to write (default: params data.root). "
                                       "Replaced only if an earlier `synth` wrote it."),
    seed: Optional[int] = typer.Option(None, help="World seed (default: params data.synth_seed)."),
    size: Optional[str] = typer.Option(None, help="Preset size: tiny | demo | market (default: params data.synth_size)."),
    only_for_data: bool = typer.Option(False, "--only-for-data", help="Render only when params data.root "
                                       "is OUT (the DAG's use); else write a placeholder folder, in no time."),
    params: Path = PARAMS_OPT,
    set_: Optional[List[str]] = SET_OPT,
) -> None:
    """Render pedestrians seen by cameras that distort differently (train/query/gallery)."""
    from calr_core.data.synth import SIZES, render_world
    from calr_core.io.atomic import atomic_dir

    p, _ = setup(params, set_, standalone=True)
    out, seed, size = pick(out, Path(p.data.root)), pick(seed, p.data.synth_seed), pick(size, p.data.synth_size)
    if size not in SIZES:
        raise ValueError(f"--size {size!r}: expected one of {', '.join(SIZES)}")
    if only_for_data and Path(p.data.root).resolve() != out.resolve():
        with atomic_dir(out, marker="synth") as tmp:
            (tmp / "NOT_USED.txt").write_text(f"data.root is {p.data.root}: no synthetic world is needed\n")
        echo(f"{out}: not rendered (data.root is {p.data.root!r})")
        return
    with atomic_dir(out, marker="synth") as tmp:
        summary = render_world(tmp, seed=seed, size=size)
    echo(f"synthetic world ({size}, seed {seed}) in {out}: " +
         ", ".join(f"{k}={v}" for k, v in summary.items() if not isinstance(v, (dict, list))))
