"""Models in checkpoints: the initial-model spec of round 0 and trained rounds alike.

An initial checkpoint holds only how to build the model (arch, pooling, weights, seed): a
seeded random init or the torchvision ImageNet weights are rebuilt identically from it, so
the pipeline never stores several copies of the same starting weights.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

from calr_core.io.checkpoint import ArtifactError, load_checkpoint, save_checkpoint
from calr_core.model.backbone import build_model


def save_initial(path: str | os.PathLike, *, arch: str, pooling: str, weights: str, seed: int) -> None:
    """Write the round-0 checkpoint: the spec of the initial model (checked by building it).

    When ``weights`` is a file, its digest is stored too: new weights under the same name give a
    new checkpoint, so DVC re-runs what starts from it.
    """
    args = {"arch": arch, "pooling": pooling, "weights": weights, "seed": seed}
    build_model(**args)  # fail now, with the builder's message, not rounds later
    digest = None
    if weights not in ("imagenet", "none"):
        digest = hashlib.blake2b(Path(weights).read_bytes(), digest_size=16).hexdigest()
    save_checkpoint(path, {"kind": "init", "model_args": args, "round": -1, "weights_digest": digest})


def load_model(state_or_path: dict[str, Any] | str | os.PathLike):
    """Build the model a checkpoint (or its loaded dict) describes, weights included."""
    state = state_or_path if isinstance(state_or_path, dict) else load_checkpoint(state_or_path)
    args = state.get("model_args")
    if args is None:
        raise ArtifactError(f"{state_or_path if not isinstance(state_or_path, dict) else 'checkpoint'}: "
                            f"no model_args (not a calr checkpoint)")
    if state.get("kind") == "init":
        return build_model(**args)
    model = build_model(**{**args, "weights": "none"})
    model.load_state_dict(state["model"])
    return model
