"""Make ``import torchvision`` work beside a CPU-only torch whose torchvision is a CUDA build.

torchvision's pure-Python parts (models, transforms.v2) run on any torch, but at import time it
registers fake kernels for ``torchvision::nms`` / ``torchvision::qnms``; when its compiled ``_C``
extension cannot load (a CUDA torchvision beside a CPU torch), those operators were never
defined and the import dies with ``operator torchvision::nms does not exist``. We try to load the
extension exactly as torchvision does; only if that fails do we define the two operator schemas
(no kernels), so the import succeeds. Where the extension loads, nothing is defined.
"""
from __future__ import annotations

import importlib.util
import logging
import sys
from pathlib import Path

import torch

log = logging.getLogger(__name__)
_SHIM: torch.library.Library | None = None  # kept alive: dropping it would undefine the ops


def _extension_loads() -> bool:
    spec = importlib.util.find_spec("torchvision")
    if spec is None or not spec.submodule_search_locations:
        return True  # torchvision absent: nothing to fix, the import error will say so
    for folder in spec.submodule_search_locations:
        for lib in sorted(Path(folder).glob("_C*.so")) + sorted(Path(folder).glob("_C*.pyd")):
            try:
                torch.ops.load_library(str(lib))
                return True
            except (OSError, RuntimeError):
                return False
    return False


def ensure_torchvision_importable() -> bool:
    """Define the missing operator schemas if torchvision's extension can't load; True if it did."""
    global _SHIM
    if "torchvision" in sys.modules or _SHIM is not None:
        return _SHIM is not None
    if _extension_loads():
        return False
    log.debug("torchvision's compiled extension does not load; defining nms/qnms schemas")
    _SHIM = torch.library.Library("torchvision", "DEF")
    _SHIM.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    _SHIM.define("qnms(Tensor qdets, Tensor scores, float iou_threshold) -> Tensor")
    return True


ensure_torchvision_importable()
import torchvision  # noqa: E402  (re-exported: `from calr_core.compat import torchvision`)

__all__ = ["torchvision", "ensure_torchvision_importable"]
