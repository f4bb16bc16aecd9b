"""Checkpoints: one ``torch.save`` dict, written atomically, loaded on the CPU as data only.

Every model file calr reads (its own checkpoints and recovery files, `model.weights` and
`source.weights` files, the ImageNet and IBN-Net files of the torch cache, a checkpoint given to
`search` or `export`) goes through ``load_checkpoint``: torch's ``weights_only`` unpickler, which
builds tensors, containers and plain values and never calls what a file names. The one thing
beyond those that calr's own files hold is numpy's RNG state (a uint32 array) in training
checkpoints; SAFE_GLOBALS allows exactly what rebuilding a numpy array takes. A file that asks
for any other global is refused with UnsafeFileError, before anything in it runs.
"""
from __future__ import annotations

import os
import pickle
import re
import sys
from pathlib import Path
from typing import Any

from calr_core.io.atomic import atomic_path


class ArtifactError(ValueError):
    """An input artifact is missing or malformed; the message names the file and what is wrong.

    ``artifact``: the pipeline file whose writer mends it (missing, or to be written ``again``);
    the stage layer adds the command that writes it.
    """

    def __init__(self, message: str, artifact: str | os.PathLike | None = None, again: bool = False):
        super().__init__(message)
        self.artifact, self.again = artifact, again


class UnsafeFileError(ArtifactError):
    """A model file asks for a Python global outside SAFE_GLOBALS: refused, never unpickled."""


def safe_globals() -> list:
    """The globals beyond torch's own safe set that calr's files need: numpy array rebuilding
    (the numpy RNG state inside training checkpoints). Data constructors only; none runs code."""
    import numpy as np
    core = getattr(np, "_core", None) or np.core  # numpy 2 / numpy 1
    return [core.multiarray._reconstruct, np.ndarray, np.dtype, type(np.dtype(np.uint32))]


def _canonical(obj: Any) -> Any:
    """Fresh containers and interned strings: pickle's memo then depends on the values only,
    not on which objects happen to be shared (a state restored from a file shares none)."""
    if isinstance(obj, str):
        return sys.intern(obj)
    if isinstance(obj, dict):
        return {_canonical(k): _canonical(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)) and type(obj) in (list, tuple):
        return type(obj)(_canonical(v) for v in obj)
    return obj


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> None:
    """Write ``state`` atomically; the same values give the same bytes (DVC hashes them), e.g. a
    round resumed after a crash and the same round run straight through."""
    import torch  # here, not at import: stages that never touch a checkpoint skip torch's 1 s

    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        try:
            torch.save(_canonical(state), f)  # a file object: the archive's inner name is fixed
        except RuntimeError as exc:  # torch reports a failed write (e.g. a full disk) this way
            raise OSError(str(exc).splitlines()[0]) from None


def load_checkpoint(path: str | os.PathLike, required: tuple[str, ...] = ()) -> dict[str, Any]:
    import torch

    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"{path}: checkpoint not found", artifact=path)
    try:
        with torch.serialization.safe_globals(safe_globals()):
            state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:  # the weights_only unpickler refused something
        asked = re.search(r"GLOBAL ([\w.]+)|got <class '([\w.]+)'>", str(exc))
        detail = str(exc).split("WeightsUnpickler error:")[-1].strip().splitlines()
        what = (f"the Python global {asked.group(1) or asked.group(2)}" if asked
                else f"something beyond tensors and plain values ({detail[0] if detail else exc})")
        raise UnsafeFileError(f"{path}: refused: the file asks for {what}, which a model file does not "
                              f"need (unpickling it could run code); use a plain state dict "
                              f"(torch.save(model.state_dict(), file)) from a source you trust") from None
    except Exception as exc:  # truncated or not a torch file
        raise ArtifactError(f"{path}: not a readable checkpoint ({type(exc).__name__}: {exc})") from None
    missing = [k for k in required if k not in state]
    if missing:
        raise ArtifactError(f"{path}: checkpoint lacks key(s) {missing}")
    return state
