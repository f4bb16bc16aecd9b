"""`calr-stage search`: rank a gallery for query images with a trained checkpoint."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from calr_stages._common import PARAMS_OPT, SET_OPT, echo, setup, stage


@stage
def search(
    checkpoint: Path = typer.Option(..., help="A calr checkpoint, e.g. artifacts/phase2/round4/checkpoint.pt, or a model.onnx of `calr-stage export`."),
    gallery: Path = typer.Option(..., help="Folder of gallery images, or a manifest CSV/Parquet (path, camid[, pid])."),
    query: List[Path] = typer.Option(..., help="Query image (repeat --query for several)."),
    top_k: int = typer.Option(10, help="How many gallery images to list per query."),
    picture: Optional[Path] = typer.Option(None, help="Also save the ranked lists as a PNG here."),
    device: Optional[str] = typer.Option(None, help="auto | cpu | cuda (default: params extract.device)."),
    params: Path = PARAMS_OPT,
    set_: Optional[List[str]] = SET_OPT,
) -> None:
    """Print the top-k gallery images of each query with their distances (smaller = closer)."""
    from calr_core.model.onnx import OnnxModel
    from calr_core.model.state import load_model
    from calr_core.search import gallery_frame
    from calr_core.search import search as run_search

    p, _ = setup(params, set_, standalone=True)
    root, frame = gallery_frame(gallery)
    model = OnnxModel(checkpoint) if checkpoint.suffix.lower() == ".onnx" else load_model(checkpoint)
    result = run_search(model, query, root, frame, height=p.model.height,
                        width=p.model.width, top_k=top_k, batch_size=p.extract.batch_size,
                        device=device or p.extract.device, cpu_mode=p.extract.cpu_mode,
                        cache_mb=p.data.cache_mb, picture=picture)
    for q, rows in result.groupby("query", sort=False):
        echo(f"{q}:")
        for r in rows.itertuples():
            echo(f"  {r.rank:3d}  {r.distance:.4f}  {r.path}" + (f"  (pid {r.pid})" if r.pid >= 0 else ""))
    if picture is not None:
        echo(f"picture: {picture}")
