"""Models in checkpoints: the initial-model spec of round 0 and trained rounds alike.

An initial checkpoint holds how to build the model (arch, pooling, weights, seed): a seeded
random init or the torchvision ImageNet weights are rebuilt identically from it, so the
pipeline never stores copies of them. Weights from a file (a source model) are stored in it.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

from calr_core.io.checkpoint import ArtifactError, load_checkpoint, save_checkpoint
from calr_core.model.backbone import WeightsError, build_model, imagenet_file


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def save_initial(path: str | os.PathLike, *, arch: str, pooling: str, weights: str, seed: int) -> None:
    """Write the round-0 checkpoint: the spec of the initial model (checked by building it).

    When ``weights`` is a file, its weights are stored too: the checkpoint stands alone (wherever
    it is read from), and new weights under the same file name give a new checkpoint, so DVC
    re-runs what starts from it.
    """
    args = {"arch": arch, "pooling": pooling, "weights": weights, "seed": seed}
    model = build_model(**args)  # fail now, with the builder's message, not rounds later
    state = {"kind": "init", "model_args": args, "round": -1}
    if weights == "imagenet":  # rebuilt on load from the same file: record which, and its hash
        source = imagenet_file(arch)
        state["weights_file"] = {"name": source.name, "sha256": _sha256(source)}
    elif weights != "none":
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
        recorded = state.get("weights_file")
        if recorded is not None:
            path = imagenet_file(args["arch"])
            if _sha256(path) != recorded["sha256"]:
                raise WeightsError(
                    f"{state_or_path if not isinstance(state_or_path, dict) else 'checkpoint'}: its ImageNet "
                    f"weights were {recorded['name']} (sha256 {recorded['sha256'][:12]}...), but {path} is another "
                    f"file now; write the initial model again (the init stage), or put the recorded file back")
        return build_model(**args)
    model = build_model(**{**args, "weights": "none"})
    model.load_state_dict(state["model"])
    return model
