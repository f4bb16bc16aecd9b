"""A tiny on-disk training world for the train tests: real 64x32 JPEGs + world.npz."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def make_world(root: Path, n_ids: int = 10, per_id: int = 5, n_outliers: int = 10, n_cams: int = 3,
               dim: int = 512, seed: int = 0) -> dict[str, np.ndarray]:
    """Write n_ids * per_id + n_outliers JPEGs under root/img and root/world.npz; return the arrays."""
    rng = np.random.default_rng(seed)
    labels = np.concatenate([np.repeat(np.arange(n_ids), per_id), np.full(n_outliers, -1)])
    camids = rng.integers(0, n_cams, labels.size)
    paths = []
    (root / "img").mkdir(parents=True, exist_ok=True)
    for i, lab in enumerate(labels):
        base = rng.integers(0, 256, 3) if lab < 0 else np.random.default_rng(100 + lab).integers(0, 256, 3)
        pix = np.clip(base + rng.normal(0, 40, (64, 32, 3)), 0, 255).astype(np.uint8)
        rel = f"img/{i:03d}_c{camids[i]}.jpg"
        Image.fromarray(pix).save(root / rel, quality=90)
        paths.append(rel)
    feats = rng.normal(size=(labels.size, dim)).astype(np.float32)
    feats /= np.linalg.norm(feats, axis=1, keepdims=True)
    world = {"paths": np.array(paths), "labels": labels, "camids": camids, "features": feats}
    np.savez(root / "world.npz", **world)
    return world


def round_of(model, world: dict, *, resume_state=None, recovery_path=None, history=None,
             progress: bool = False, **fields):
    """``train_round`` with the fields of RoundData (over ``world``) and of RoundSettings given
    as keywords, as the tests write them."""
    import dataclasses

    from calr_core.config import Data, Model, Train
    from calr_core.train.loop import train_round
    from calr_core.train.settings import RoundData, RoundSettings
    data_keys = {f.name for f in dataclasses.fields(RoundData)}
    data = RoundData(**{**world, **{k: v for k, v in fields.items() if k in data_keys}})
    settings = RoundSettings.from_params(Train(), Model(), Data(), **{k: v for k, v in fields.items() if k not in data_keys})
    return train_round(model, data, settings, resume_state=resume_state, recovery_path=recovery_path,
                       progress=progress, history=history)
