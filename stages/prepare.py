"""`calr-stage prepare`: read a dataset folder into the manifest Parquet."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from calr_stages._common import ARTIFACTS_OPT, PARAMS_OPT, SET_OPT, echo, pick, setup, stage


@stage
def prepare(
    dataset: Optional[str] = typer.Option(None, help="market1501 | dukemtmc | msmt17 | veri776 | manifest (default: params data.dataset)."),
    root: Optional[Path] = typer.Option(None, help="Dataset folder, or the CSV/Parquet file for `manifest` (default: params data.root)."),
    out: Optional[Path] = typer.Option(None, help="Manifest Parquet to write (default: ARTIFACTS/manifest.parquet)."),
    check_images: Optional[bool] = typer.Option(None, "--check-images/--no-check-images",
                                                help="Open every image once (default: params data.check_images)."),
    params: Path = PARAMS_OPT,
    set_: Optional[List[str]] = SET_OPT,
    artifacts: Path = ARTIFACTS_OPT,
) -> None:
    """Write the manifest (image_id, path, camid, split, pid) and check the cameras in params."""
    from calr_core.data.datasets import read_dataset
    from calr_core.data.manifest import check_cameras
    from calr_core.io import write_table

    p, layout = setup(params, set_, artifacts, standalone=True)
    dataset, root = pick(dataset, p.data.dataset), pick(root, Path(p.data.root))
    out = pick(out, layout.manifest)
    frame = read_dataset(dataset, root, check_images=pick(check_images, p.data.check_images))
    if Path(params).is_file():  # the DAG iterates over data.cameras: they must match
        check_cameras(frame, p.data.cameras, params)
    write_table("manifest", frame[["image_id", "path", "camid", "split", "pid"]], out,
                metadata={"dataset": frame.attrs.get("dataset", dataset),
                          "version": frame.attrs.get("version", ""),
                          "root": frame.attrs.get("root", str(root))})
    counts = frame.groupby("split").size().to_dict()
    echo(f"{out}: {dataset} {frame.attrs.get('version', '')} " +
         ", ".join(f"{s}={counts.get(s, 0)}" for s in ("train", "query", "gallery")) +
         f", cameras={sorted(frame.camid.unique().tolist())}")
