"""Checkpoints: one ``torch.save`` dict, written atomically, loaded on the CPU."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from calr_core.io.atomic import atomic_path


class ArtifactError(ValueError):
    """An input artifact is missing or malformed; the message names the file and what is wrong."""


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> None:
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_checkpoint(path: str | os.PathLike, required: tuple[str, ...] = ()) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"{path}: checkpoint not found")
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # truncated or not a torch file
        raise ArtifactError(f"{path}: not a readable checkpoint ({type(exc).__name__}: {exc})") from None
    missing = [k for k in required if k not in state]
    if missing:
        raise ArtifactError(f"{path}: checkpoint lacks key(s) {missing}")
    return state
