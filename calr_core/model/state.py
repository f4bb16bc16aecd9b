"""Models in checkpoints: the initial-model spec of round 0 and trained rounds alike.

An initial checkpoint holds how to build the model (arch, pooling, weights, seed): a seeded
random init or the torchvision ImageNet weights are rebuilt identically from it, so the
pipeline never stores copies of them. Weights from a file (a source model) are stored in it.
"""
from __future__ import annotations

import os
from typing import Any

from calr_core.io.checkpoint import ArtifactError, load_checkpoint, save_checkpoint
from calr_core.model.backbone import build_model


def save_initial(path: str | os.PathLike, *, arch: str, pooling: str, weights: str, seed: int) -> None:
    """Write the round-0 checkpoint: the spec of the initial model (checked by building it).

    When ``weights`` is a file, its weights are stored too: the checkpoint stands alone (wherever
    it is read from), and new weights under the same file name give a new checkpoint, so DVC
    re-runs what starts from it.
    """
    args = {"arch": arch, "pooling": pooling, "weights": weights, "seed": seed}
    model = build_model(**args)  # fail now, with the builder's message, not rounds later
    state = {"kind": "init", "model_args": args, "round": -1}
    if weights not in ("imagenet", "none"):
        state["model"] = model.state_dict()
    save_checkpoint(path, state)


def load_model(state_or_path: dict[str, Any] | str | os.PathLike):
    """Build the model a checkpoint (or its loaded dict) describes, weights included."""
    state = state_or_path if isinstance(state_or_path, dict) else load_checkpoint(state_or_path)
    args = state.get("model_args")
    if args is None:
        raise ArtifactError(f"{state_or_path if not isinstance(state_or_path, dict) else 'checkpoint'}: "
                            f"no model_args (not a calr checkpoint)")
    if state.get("kind") == "init" and "model" not in state:
        return build_model(**args)
    model = build_model(**{**args, "weights": "none"})
    model.load_state_dict(state["model"])
    return model
