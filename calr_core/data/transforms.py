"""Image preprocessing (docs/method.md "Shared settings"), in two halves.

Decoding (calr_core.data.images): each image is decoded once and resized to the model's input
(PIL bicubic, with antialiasing) into a (3, H, W) uint8 tensor. Everything after that runs here,
on whole uint8 batches in torch:

- test: ImageNet normalisation (``normalise``);
- train (``augment``): horizontal flip, pad + random crop back to size, normalisation, random
  erasing (area 0.02-0.4, aspect 0.3-3.3, filled with 0, the mean colour after normalising).
  The pad is the paper's 10 pixels at 256 x 128 and scales with the input height (2 at 64 x 32,
  1 at 32 x 16): an unscaled 10-pixel shift of a 16-pixel-wide crop destroys the person
  (measured: 2.5 % vs 17.5 % mAP after 100 supervised iterations at 32 x 16).

Every random draw of a batch comes from one seed, drawn for the whole global batch, so a rank
that holds rows ``offset .. offset + b`` of it sees the same augmentations as one process would.
"""
from __future__ import annotations

import math

import torch

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)
ERASE_SCALE, ERASE_RATIO, ERASE_TRIES = (0.02, 0.4), (0.3, 3.3), 10


def normalise(images: torch.Tensor) -> torch.Tensor:
    """uint8 (B, 3, H, W) -> float32 ImageNet-normalised, in the input's memory format."""
    if images.dtype != torch.uint8:
        raise ValueError(f"images: expected uint8 pixels, got {images.dtype}")
    mean = torch.tensor(IMAGENET_MEAN, device=images.device).view(-1, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=images.device).view(-1, 1, 1)
    return images.float().mul_(1.0 / 255).sub_(mean).div_(std)  # (B, 3, H, W)


def scaled_pad(height: int) -> int:
    """The paper's 10-pixel pad at height 256, scaled to ``height`` (at least 1)."""
    return max(1, round(10 * height / 256))


def augment(images: torch.Tensor, seed: int, *, offset: int = 0, global_size: int | None = None,
            pad: int | None = None, flip_p: float = 0.5, erase_p: float = 0.5) -> torch.Tensor:
    """Training augmentation of rows ``offset .. offset + B`` of a global batch of ``global_size``
    (default B) images: uint8 (B, 3, H, W) -> float32 (B, 3, H, W), channels_last in memory.
    ``seed`` fixes every draw; ``pad=None``: ``scaled_pad(H)``."""
    b, _, h, w = images.shape
    n = b if global_size is None else global_size
    pad = scaled_pad(h) if pad is None else pad
    for name, p in (("flip_p", flip_p), ("erase_p", erase_p)):
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"{name}={p!r}: expected a probability in [0, 1]")
    if pad < 0:
        raise ValueError(f"pad={pad!r}: expected a non-negative number of pixels")
    if not 0 <= offset <= n - b:
        raise ValueError(f"offset={offset}: rows {offset}..{offset + b} lie outside a batch of {n}")
    g = torch.Generator().manual_seed(seed)
    rows = slice(offset, offset + b)
    flip = torch.rand(n, generator=g) < flip_p  # (n,)
    shift = torch.randint(0, 2 * pad + 1, (n, 2), generator=g)  # (n, 2): crop corner in the padded image
    erase, box = _erase_boxes(n, h, w, erase_p, g)
    dev = images.device  # the draws are made on the CPU, the pixels change where they are
    flip, shift, erase, box = (t[rows].to(dev) for t in (flip, shift, erase, box))
    hs, ws = torch.arange(h, device=dev), torch.arange(w, device=dev)

    x = torch.where(flip[:, None, None, None], images.flip(3), images)  # (b, 3, H, W)
    x = torch.nn.functional.pad(x, (pad, pad, pad, pad))  # (b, 3, H + 2p, W + 2p), black
    ys = shift[:, :1] + hs  # (b, H)
    xs = shift[:, 1:] + ws  # (b, W)
    x = x[torch.arange(b, device=dev)[:, None, None], :, ys[:, :, None], xs[:, None, :]]  # (b, H, W, 3)
    x = normalise(x.permute(0, 3, 1, 2))  # (b, 3, H, W), channels_last in memory
    top, left, eh, ew = box.unbind(1)  # (b,) each
    inside = ((hs >= top[:, None]) & (hs < (top + eh)[:, None]))[:, :, None] \
        & ((ws >= left[:, None]) & (ws < (left + ew)[:, None]))[:, None, :]  # (b, H, W)
    return x.masked_fill_((inside & erase[:, None, None])[:, None], 0.0)


def _erase_boxes(n: int, h: int, w: int, p: float, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Random erasing's draws for n images: (n,) bool, erased or not, and (n, 4) boxes
    (top, left, height, width). As torchvision's RandomErasing: up to 10 tries of an area share
    in ERASE_SCALE and a log-uniform aspect in ERASE_RATIO; the first box that fits is taken; an
    image with none that fits is left whole."""
    erase = torch.rand(n, generator=g) < p  # (n,)
    area = h * w * torch.empty(n, ERASE_TRIES).uniform_(*ERASE_SCALE, generator=g)  # (n, T)
    aspect = torch.empty(n, ERASE_TRIES).uniform_(*map(math.log, ERASE_RATIO), generator=g).exp()  # (n, T)
    eh = torch.sqrt(area * aspect).round().long()  # (n, T)
    ew = torch.sqrt(area / aspect).round().long()  # (n, T)
    fits = (eh < h) & (ew < w)  # (n, T)
    first = fits.long().argmax(1)  # (n,): first try that fits (0 when none does)
    pick = torch.arange(n)
    eh, ew = eh[pick, first], ew[pick, first]  # (n,)
    u = torch.rand(n, 2, generator=g)  # (n, 2)
    top = (u[:, 0] * (h - eh + 1)).floor().long().clamp(max=h - 1)  # (n,) uniform in 0..h - eh
    left = (u[:, 1] * (w - ew + 1)).floor().long().clamp(max=w - 1)
    return erase & fits.any(1), torch.stack([top, left, eh, ew], 1)
