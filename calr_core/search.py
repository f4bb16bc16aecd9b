"""Search a gallery with a trained model: for people running calr on their own camera data."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from calr_core.data.datasets import IMAGE_SUFFIXES, read_dataset
from calr_core.eval import pairwise_distance
from calr_core.eval.picture import ranked_list_picture
from calr_core.model.extract import extract_features


def gallery_frame(source: str | os.PathLike) -> tuple[Path, pd.DataFrame]:
    """(root, frame with path/pid/camid) of a gallery given as a folder of images or a manifest
    (CSV/Parquet with ``path, camid`` and optional ``pid``)."""
    source = Path(source)
    if source.is_file():
        return source.parent, read_dataset("manifest", source, check_images=False)
    if not source.is_dir():
        raise ValueError(f"--gallery {source}: not a folder of images or a manifest file")
    paths = sorted(p.relative_to(source).as_posix() for p in source.rglob("*")
                   if p.suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
        raise ValueError(f"--gallery {source}: no {'/'.join(sorted(IMAGE_SUFFIXES))} images in this folder")
    return source, pd.DataFrame({"path": paths, "pid": -1, "camid": -1})


def search(model, queries: list[str | os.PathLike], gallery_root: Path, gallery: pd.DataFrame, *,
           height: int, width: int, top_k: int = 10, batch_size: int = 128, device: str = "auto",
           cpu_mode: str = "auto", cache_mb: float, picture: str | os.PathLike | None = None) -> pd.DataFrame:
    """Rank the gallery for each query image; one row per (query, rank) with the distance
    (squared Euclidean on L2-normalised features) and, optionally, a picture of the lists."""
    missing = [str(q) for q in queries if not Path(q).is_file()]
    if missing:
        raise ValueError(f"--query {missing[0]}: image not found")
    kw = dict(height=height, width=width, batch_size=batch_size, workers=0, device=device,
              cpu_mode=cpu_mode, cache_mb=cache_mb)
    q_abs = [str(Path(q).resolve()) for q in queries]
    q = extract_features(model, Path("/"), q_abs, **kw)  # (Q, D)
    g = extract_features(model, gallery_root, gallery.path.tolist(), **kw)  # (G, D)
    dist = pairwise_distance(q, g)  # (Q, G)
    k = min(top_k, len(gallery))
    order = np.argsort(dist, axis=1, kind="stable")[:, :k]  # (Q, k)
    rows = [{"query": str(queries[i]), "rank": r + 1, "path": gallery.path.iloc[j],
             "distance": float(dist[i, j]), "pid": int(gallery.pid.iloc[j])}
            for i in range(len(queries)) for r, j in enumerate(order[i])]
    if picture is not None:
        ranked_list_picture(q_abs, gallery.path.tolist(), dist, np.full(len(q_abs), -1),
                            gallery.pid.to_numpy(), np.full(len(q_abs), -1),
                            gallery.camid.to_numpy(), root=gallery_root, out_png=picture,
                            top_k=k, cell=(height, width), query_indices=range(len(q_abs)))
    return pd.DataFrame(rows)
