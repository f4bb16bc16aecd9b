"""A round's training curve (``train_round(history=...)``) as the tables DVC plots and shows."""
from __future__ import annotations

import pandas as pd

COLUMNS = ["iter", "loss", "memory_loss", "camera_loss", "lr", "seconds"]  # a history row


def curve_frame(history: list[dict[str, float]], rnd: int, iters: int, batch_size: int) -> pd.DataFrame:
    """One row per iteration: step (iterations since round 0, the x of `dvc plots`), round, iter,
    loss, memory_loss, camera_loss, lr, img_per_s (this iteration's batch over its wall time,
    data loading included)."""
    f = pd.DataFrame(history, columns=COLUMNS)
    f.insert(0, "round", rnd)
    f.insert(0, "step", rnd * iters + f["iter"])
    f["img_per_s"] = batch_size / f.pop("seconds").clip(lower=1e-9)
    return f


def curve_summary(history: list[dict[str, float]], batch_size: int) -> dict[str, float | int]:
    """The round's means (train_loss, train_memory_loss, train_camera_loss), its lr, and the
    seconds and img/s of its iterations (data loading included, start-up not)."""
    f = pd.DataFrame(history, columns=COLUMNS)
    seconds = float(f.seconds.sum())
    return {"train_iters": len(f), "train_batch_size": batch_size,
            **{f"train_{k}": float(f[k].mean()) for k in ("loss", "memory_loss", "camera_loss")},
            "train_lr": float(f.lr.iloc[-1]) if len(f) else float("nan"),
            "train_seconds": round(seconds, 3),
            "train_img_per_s": round(len(f) * batch_size / max(seconds, 1e-9), 1)}
