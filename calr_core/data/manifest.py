"""Manifest helpers: the camera check of `prepare`, camera indices, and splits as plain arrays."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd


def train_cameras(frame: pd.DataFrame) -> list[int]:
    """The sorted camera ids of the training images: what params ``data.cameras`` must be."""
    return sorted(int(c) for c in frame.loc[frame.split == "train", "camid"].unique())


def check_cameras(frame: pd.DataFrame, cameras: list[int], params_path: str | Path = "params.yaml") -> None:
    """The DAG iterates over params ``data.cameras``: it must be exactly the training cameras."""
    found = train_cameras(frame)
    if sorted(cameras) != found:
        raise ValueError(f"{params_path}: data.cameras is {sorted(cameras)} but the training images "
                         f"are from cameras {found}; set `data.cameras: {found}` in {params_path}")


def camera_index(camids, cameras: list[int], what: str) -> np.ndarray:
    """(N,) index 0..C-1 of each camera id by its place in sorted ``cameras``.

    The camera head's classes and the cluster weights count cameras this way; a network's own
    ids need not be 0..C-1 (e.g. training cameras [0, 1, 6, 7]).
    """
    order, ids = np.asarray(sorted(cameras)), np.asarray(camids)
    pos = np.searchsorted(order, ids)
    known = (pos < len(order)) & (order[np.minimum(pos, len(order) - 1)] == ids)
    if not known.all():
        raise ValueError(f"{what}: camera {ids[~known][0]} is not in params data.cameras {sorted(cameras)}")
    return pos.astype(np.int64)


def split(frame: pd.DataFrame, name: str) -> pd.DataFrame:
    """Rows of one split in manifest order: the 'sorted training order' of
    docs/method.md "Phase 2: inter-camera training", step 5."""
    part = frame[frame.split == name].reset_index(drop=True)
    if part.empty:
        raise ValueError(f"manifest has no {name!r} images")
    return part


def align(ids: pd.Series | np.ndarray, reference: pd.Series | np.ndarray, what: str) -> np.ndarray:
    """Row positions in ``reference`` of each image id in ``ids`` (matching by image identity)."""
    index = pd.Index(reference)
    pos = index.get_indexer(pd.Index(ids))
    if (pos < 0).any():
        missing = np.asarray(ids)[pos < 0][:3].tolist()
        raise ValueError(f"{what}: {int((pos < 0).sum())} image id(s) not found, e.g. {missing}")
    return pos


def train_pids(manifest: pd.DataFrame, image_ids, what: str = "manifest") -> np.ndarray:
    """Ground-truth identities (-1 unknown) of training images, by image id: for evaluation only."""
    train = manifest[manifest.split == "train"]
    return train.pid.to_numpy()[align(image_ids, train.image_id, what)]
