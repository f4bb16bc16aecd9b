"""A map-style dataset of image files (decoded with PIL) for extraction and training."""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

import torch
from PIL import Image
from torch.utils.data import Dataset


class ImageReadError(ValueError):
    """An image file is missing or can't be decoded; the message names the file."""


class ImageDataset(Dataset):
    """Images ``root / paths[i]`` through ``transform``.

    ``__getitem__(i)`` gives ``(image, i)``, or ``(image, targets[i], i)`` when targets are given;
    the index lets callers put rows back in ``paths`` order whatever the loader does.
    """

    def __init__(self, root: Path, paths: Sequence[str], transform: Callable,
                 targets: Sequence[int] | None = None):
        if targets is not None and len(targets) != len(paths):
            raise ValueError(f"targets: {len(targets)} values for {len(paths)} paths; expected one per path")
        self.root = Path(root)
        self.paths = list(paths)
        self.transform = transform
        self.targets = None if targets is None else [int(t) for t in targets]

    def __len__(self) -> int:
        return len(self.paths)

    def load(self, i: int) -> Image.Image:
        """The RGB PIL image of item ``i``."""
        path = self.root / self.paths[i]
        try:
            with Image.open(path) as im:
                return im.convert("RGB")
        except (OSError, ValueError) as exc:  # PIL.UnidentifiedImageError is an OSError
            raise ImageReadError(f"{path}: cannot read image ({type(exc).__name__}: {exc})") from None

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int] | tuple[torch.Tensor, int, int]:
        img = self.transform(self.load(i))  # (3, H, W)
        if self.targets is None:
            return img, i
        return img, self.targets[i], i
