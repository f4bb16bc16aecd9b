"""Image files -> (3, H, W) uint8 tensors at the model's input size, decoded once per process.

A set of images (root, paths, size) is decoded and resized once into one (N, 3, H, W) uint8
tensor and kept in memory while it fits in ``cache_mb`` (N x 3 x H x W bytes: 1.5 MB for the
demo's 962 images at 32 x 16, 1.3 GB for Market-1501's 12,936 at 256 x 128). Extraction and
training in one process (a `calr-stage round`) then decode each image once, and a training
round decodes nothing per batch. A set larger than the budget is streamed instead: each batch
is decoded when asked for (in ``workers`` DataLoader processes). Both give the same tensors.

Sets kept in memory are found again by (root, size, each file's path, size and mtime): an
edited file is decoded again. When a new set would pass the budget, the oldest go first.
"""
from __future__ import annotations

import hashlib
import logging
import os
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from calr_core.progress import progress as show_progress

log = logging.getLogger(__name__)
_KEPT: OrderedDict[str, torch.Tensor] = OrderedDict()  # key -> (N, 3, H, W) uint8, oldest first


class ImageReadError(ValueError):
    """An image file is missing or can't be decoded; the message names the file."""


def load_resized(path: str | Path, height: int, width: int) -> torch.Tensor:
    """The RGB image at ``path`` resized to (height, width) by PIL's bicubic filter -> (3, H, W) uint8."""
    try:
        with Image.open(path) as im:
            rgb = im.convert("RGB")
    except (OSError, ValueError) as exc:  # PIL.UnidentifiedImageError is an OSError
        raise ImageReadError(f"{path}: cannot read image ({type(exc).__name__}: {exc})") from None
    if rgb.size != (width, height):
        rgb = rgb.resize((width, height), Image.BICUBIC)
    return torch.from_numpy(np.asarray(rgb).copy()).permute(2, 0, 1)  # (3, H, W)


class ImageDataset(Dataset):
    """``dataset[i]`` is ``(load_resized(root / paths[i]), i)``; the index lets callers put rows
    back in ``paths`` order whatever the loader does."""

    def __init__(self, root: str | Path, paths: Sequence[str], height: int, width: int):
        if height < 1 or width < 1:
            raise ValueError(f"height={height!r}, width={width!r}: expected positive image sizes")
        self.root, self.paths, self.size = Path(root), list(paths), (height, width)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return load_resized(self.root / self.paths[i], *self.size), i


class DecodedImages:
    """The images ``root / paths[i]`` as uint8 (3, H, W) tensors, served in batches of indices."""

    def __init__(self, root: str | Path, paths: Sequence[str], height: int, width: int, *,
                 cache_mb: float, workers: int = 0, progress: bool = False):
        self.dataset = ImageDataset(root, paths, height, width)
        self.workers = workers
        n = len(self.dataset)
        need = n * 3 * height * width
        self.images: torch.Tensor | None = None
        if need > cache_mb * 2**20:
            log.info("streaming %d images (%.0f MB decoded > data.cache_mb %g)", n, need / 2**20, cache_mb)
            return
        key = _key(self.dataset)
        if key in _KEPT:
            _KEPT.move_to_end(key)
            self.images = _KEPT[key]
            return
        self.images = torch.empty(n, 3, height, width, dtype=torch.uint8)  # (N, 3, H, W)
        with show_progress("decode", n, unit="img", enabled=progress) as bar:
            for imgs, idx in self._stream(_chunks(n, 256)):
                self.images[idx] = imgs
                bar.advance(len(idx))
        while _KEPT and sum(t.numel() for t in _KEPT.values()) + need > cache_mb * 2**20:
            _KEPT.popitem(last=False)
        _KEPT[key] = self.images
        log.info("decoded %d images at %d x %d into memory (%.1f MB)", n, height, width, need / 2**20)

    def __len__(self) -> int:
        return len(self.dataset)

    def batches(self, index_batches: Iterable[Sequence[int]]) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """``(images (B, 3, H, W) uint8, indices (B,))`` for each list of indices, in order."""
        if self.images is None:
            yield from self._stream(index_batches)
            return
        for batch in index_batches:
            idx = torch.as_tensor(list(batch), dtype=torch.long)  # (B,)
            yield self.images[idx], idx

    def _stream(self, index_batches: Iterable[Sequence[int]]) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        yield from DataLoader(self.dataset, batch_sampler=index_batches, num_workers=self.workers)


def _chunks(n: int, size: int) -> list[list[int]]:
    return [list(range(a, min(a + size, n))) for a in range(0, n, size)]


def _key(ds: ImageDataset) -> str:
    h = hashlib.blake2b(f"{ds.root.resolve()}:{ds.size}".encode(), digest_size=16)
    for rel in ds.paths:
        try:
            st = os.stat(ds.root / rel)
            h.update(f"\0{rel}:{st.st_size}:{st.st_mtime_ns}".encode())
        except OSError:  # missing: decoding will say so in one line
            h.update(f"\0{rel}:missing".encode())
    return h.hexdigest()


def forget() -> None:
    """Drop every set kept in memory."""
    _KEPT.clear()
