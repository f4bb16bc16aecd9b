"""Mid-round recovery checkpoints: what a killed training round needs to resume exactly.

A recovery file holds the model, optimiser, scheduler, camera head, memory, the number of
iterations done, every RNG state and a fingerprint of the round's inputs; it is written
atomically every ``save_every`` iterations and used only when its fingerprint matches the
round being run (same data, labels, features, settings, round), so a stale file is ignored.
"""
from __future__ import annotations

import hashlib
import json
import logging
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from calr_core.io.checkpoint import ArtifactError, UnsafeFileError, load_checkpoint, save_checkpoint

log = logging.getLogger(__name__)


def fingerprint(arrays: dict[str, Any], params: dict[str, Any]) -> str:
    """Hex digest of named arrays (numpy/torch/lists) and JSON-able settings."""
    h = hashlib.blake2b(digest_size=16)
    for name in sorted(arrays):
        value = arrays[name]
        if value is None:
            h.update(f"{name}:none".encode())
            continue
        if isinstance(value, torch.Tensor):
            value = value.detach().cpu().numpy()
        if isinstance(value, (list, tuple)) and value and isinstance(value[0], str):
            value = np.frombuffer("\0".join(value).encode(), dtype=np.uint8)
        value = np.ascontiguousarray(value)
        h.update(f"{name}:{value.dtype.str}:{value.shape}".encode())
        h.update(value.tobytes())
    h.update(json.dumps(params, sort_keys=True, default=str).encode())
    return h.hexdigest()


def rng_states() -> dict[str, Any]:
    """States of the python, numpy and torch (CPU and every CUDA device) global RNGs."""
    return {"python": random.getstate(), "numpy": np.random.get_state(),
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}


def set_rng_states(states: dict[str, Any]) -> None:
    random.setstate(states["python"])
    np.random.set_state(states["numpy"])
    torch.set_rng_state(states["torch"])
    if states.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def save_recovery(path: str | Path, state: dict[str, Any]) -> None:
    save_checkpoint(path, state)
    log.debug("recovery checkpoint at iteration %d -> %s", state["iters_done"], path)


def load_recovery(path: str | Path | None, fp: str) -> dict[str, Any] | None:
    """The recovery state at ``path`` if it exists and matches ``fp``; None otherwise."""
    if path is None or not Path(path).is_file():
        return None
    try:
        state = load_checkpoint(path, required=("fingerprint", "iters_done"))
    except UnsafeFileError:  # not a torn write: a file that would run code is refused, not skipped
        raise
    except ArtifactError as exc:
        log.warning("ignoring unreadable recovery checkpoint: %s", exc)
        return None
    if state["fingerprint"] != fp:
        log.warning("%s: recovery checkpoint is for other inputs or settings; starting the round afresh", path)
        return None
    log.info("resuming the round from %s at iteration %d", path, state["iters_done"])
    return state
