"""Checkpoints: one ``torch.save`` dict, written atomically, loaded on the CPU."""
from __future__ import annotations

import os
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
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # truncated or not a torch file
        raise ArtifactError(f"{path}: not a readable checkpoint ({type(exc).__name__}: {exc})") from None
    missing = [k for k in required if k not in state]
    if missing:
        raise ArtifactError(f"{path}: checkpoint lacks key(s) {missing}")
    return state
