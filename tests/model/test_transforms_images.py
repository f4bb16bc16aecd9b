import math

import numpy as np
import pytest
import torch
from PIL import Image

from calr_core.data.images import DecodedImages, ImageDataset, ImageReadError, forget, load_resized
from calr_core.data.transforms import IMAGENET_MEAN, IMAGENET_STD, augment, normalise, scaled_pad

MEAN = torch.tensor(IMAGENET_MEAN)[:, None, None]
STD = torch.tensor(IMAGENET_STD)[:, None, None]


def reference_test_transform(img: Image.Image, height: int, width: int) -> torch.Tensor:
    """Independent test preprocessing: PIL bicubic resize, /255, ImageNet normalisation, CHW."""
    x = np.asarray(img.resize((width, height), Image.BICUBIC), dtype=np.float64) / 255
    x = (x - np.array(IMAGENET_MEAN)) / np.array(IMAGENET_STD)
    return torch.from_numpy(x.transpose(2, 0, 1).copy())


@pytest.mark.parametrize("seed,in_hw,out_hw", [(0, (50, 30), (32, 16)),  # downscale
                                                (1, (20, 10), (64, 32)),  # upscale
                                                (2, (90, 40), (64, 48))])  # mixed, other aspect
def test_decode_and_normalise_match_reference(tmp_path, seed, in_hw, out_hw):
    img = Image.fromarray(np.random.default_rng(seed).integers(0, 256, (*in_hw, 3), dtype=np.uint8))
    img.save(tmp_path / "x.png")
    pixels = load_resized(tmp_path / "x.png", *out_hw)
    assert pixels.dtype == torch.uint8 and pixels.shape == (3, *out_hw)
    out = normalise(pixels[None])[0]
    # float32 rounding only; one grey level is 1 / (255 * 0.229) ~ 0.017
    torch.testing.assert_close(out.double(), reference_test_transform(img, *out_hw), atol=2e-6, rtol=0)


def reference_augment(x: np.ndarray, flip: bool, dy: int, dx: int, pad: int, box) -> np.ndarray:
    """One image by the paper's definition: flip, zero pad, crop at (dy, dx), normalise, erase box."""
    x = x[:, :, ::-1] if flip else x
    c, h, w = x.shape
    padded = np.zeros((c, h + 2 * pad, w + 2 * pad), np.float64)
    padded[:, pad:pad + h, pad:pad + w] = x
    y = (padded[:, dy:dy + h, dx:dx + w] / 255 - np.array(IMAGENET_MEAN)[:, None, None]) / np.array(IMAGENET_STD)[:, None, None]
    if box is not None:
        top, left, eh, ew = box
        y[:, top:top + eh, left:left + ew] = 0
    return y


def test_augment_is_flip_pad_crop_normalise_erase():
    """Each output image equals the reference built from the draws it must have made: its flip
    is the input or its mirror, its crop a window of the zero-padded image, its erased box a
    rectangle of zeros of 2-40 % of the area with aspect 0.3-3.3."""
    rng = np.random.default_rng(0)
    u8 = torch.from_numpy(rng.integers(1, 256, (48, 3, 32, 16), dtype=np.uint8))
    pad = 3
    out = augment(u8, seed=5, pad=pad, flip_p=0.5, erase_p=0.5).double().numpy()
    assert out.shape == (48, 3, 32, 16)
    flips = erased = 0
    for i in range(48):
        zero_px = (out[i] == 0).all(0)  # erased pixels (no real pixel normalises to exactly 0)
        box = None
        if zero_px.any():
            rows, cols = np.flatnonzero(zero_px.any(1)), np.flatnonzero(zero_px.any(0))
            box = (rows[0], cols[0], rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1)
            assert zero_px[box[0]:box[0] + box[2], box[1]:box[1] + box[3]].all()  # a rectangle
            assert 0.02 * 512 - 8 <= box[2] * box[3] <= 0.4 * 512 + 8
            assert 0.3 / 1.5 <= box[2] / box[3] <= 3.3 * 1.5
            erased += 1
        matches = [(f, dy, dx) for f in (False, True) for dy in range(2 * pad + 1) for dx in range(2 * pad + 1)
                   if np.allclose(reference_augment(u8[i].numpy(), f, dy, dx, pad, box), out[i], atol=1e-5)]
        assert matches, f"image {i} is no flip/crop/erase of its input"
        flips += matches[0][0]
    assert 10 < flips < 38 and 10 < erased < 38  # p = 0.5 each over 48 images


def test_augment_seeded_and_rank_rows():
    u8 = torch.from_numpy(np.random.default_rng(1).integers(0, 256, (8, 3, 32, 16), dtype=np.uint8))
    whole = augment(u8, seed=9)
    assert torch.equal(whole, augment(u8, seed=9)) and not torch.equal(whole, augment(u8, seed=10))
    # two ranks holding rows 0-3 and 4-7 of the global batch see the one-process augmentation
    parts = [augment(u8[a:a + 4], seed=9, offset=a, global_size=8) for a in (0, 4)]
    assert torch.equal(torch.cat(parts), whole)
    assert whole.is_contiguous(memory_format=torch.channels_last)
    none = augment(u8, seed=9, pad=0, flip_p=0.0, erase_p=0.0)
    torch.testing.assert_close(none, normalise(u8), rtol=0, atol=0)
    flipped = augment(u8, seed=9, pad=0, flip_p=1.0, erase_p=0.0)
    torch.testing.assert_close(flipped, normalise(u8.flip(3)), rtol=0, atol=0)


def test_erasing_area_and_aspect_distribution():
    """Erased boxes over many images: always on at p=1 (when a box fits), area share mean near
    that of uniform(0.02, 0.4) restricted to boxes that fit."""
    u8 = torch.full((400, 3, 64, 32), 200, dtype=torch.uint8)
    out = augment(u8, seed=3, pad=0, flip_p=0.0, erase_p=1.0)
    share = (out == 0).all(1).double().mean((1, 2))  # (400,)
    assert (share > 0).float().mean() > 0.95
    assert 0.12 < share.mean().item() < 0.24
    assert share.max().item() <= 0.4 + 64 / 2048 + 1e-9


def test_augment_bad_args():
    u8 = torch.zeros(2, 3, 8, 4, dtype=torch.uint8)
    with pytest.raises(ValueError, match="erase_p=1.5"):
        augment(u8, seed=0, erase_p=1.5)
    with pytest.raises(ValueError, match="offset=3"):
        augment(u8, seed=0, offset=3, global_size=4)
    with pytest.raises(ValueError, match="uint8"):
        normalise(u8.float())


def test_image_dataset_items_and_errors(tmp_path):
    (tmp_path / "a").mkdir()
    Image.new("RGB", (40, 90), (10, 20, 30)).save(tmp_path / "a" / "x.jpg")
    Image.new("L", (20, 40), 99).save(tmp_path / "g.png")  # greyscale -> RGB
    (tmp_path / "bad.jpg").write_bytes(b"not an image")
    ds = ImageDataset(tmp_path, ["a/x.jpg", "g.png"], 32, 16)
    img, i = ds[1]
    assert len(ds) == 2 and img.shape == (3, 32, 16) and img.dtype == torch.uint8 and i == 1
    assert (img == 99).all()
    with pytest.raises(ImageReadError, match="bad.jpg"):
        ImageDataset(tmp_path, ["bad.jpg"], 32, 16)[0]
    with pytest.raises(ImageReadError, match="nope.jpg"):
        ImageDataset(tmp_path, ["nope.jpg"], 32, 16)[0]
    with pytest.raises(ValueError, match="height=0"):
        ImageDataset(tmp_path, ["a/x.jpg"], 0, 16)


def test_decoded_images_kept_streamed_and_refreshed(tmp_path):
    """In memory within the budget, streamed past it: the same tensors; a set is decoded once
    per process, and again when a file changes."""
    forget()
    rng = np.random.default_rng(4)
    paths = []
    for i in range(9):
        Image.fromarray(rng.integers(0, 256, (30 + i, 20, 3), dtype=np.uint8)).save(tmp_path / f"{i}.png")
        paths.append(f"{i}.png")
    batches = [[3, 1, 4], [1, 5], [8, 0, 2, 6, 7]]
    kept = DecodedImages(tmp_path, paths, 16, 8, cache_mb=1)
    streamed = DecodedImages(tmp_path, paths, 16, 8, cache_mb=9 * 3 * 16 * 8 / 2**20 * 0.99, workers=1)
    assert kept.images is not None and streamed.images is None
    for (a, ia), (b, ib), want in zip(kept.batches(batches), streamed.batches(batches), batches):
        assert ia.tolist() == want and ib.tolist() == want and torch.equal(a, b)
        assert torch.equal(a[0], load_resized(tmp_path / paths[want[0]], 16, 8))
    assert DecodedImages(tmp_path, paths, 16, 8, cache_mb=1).images is kept.images  # decoded once
    Image.new("RGB", (20, 30), (1, 2, 3)).save(tmp_path / "5.png")  # an edited file
    again = DecodedImages(tmp_path, paths, 16, 8, cache_mb=1)
    assert again.images is not kept.images and (again.images[5] == torch.tensor([1, 2, 3])[:, None, None]).all()
    forget()


def test_pad_scales_with_the_input_height():
    for height, pad in ((256, 10), (384, 15), (128, 5), (64, 2), (32, 1), (8, 1)):
        assert scaled_pad(height) == pad
    # the default augmentation shifts a 32 x 16 image by at most 1 pixel: a 1-pixel border
    u8 = torch.full((50, 3, 32, 16), 150, dtype=torch.uint8)
    black = normalise(torch.zeros(1, 3, 1, 1, dtype=torch.uint8))[0]  # (3, 1, 1)
    out = augment(u8, seed=0, flip_p=0.0, erase_p=0.0)
    padded = torch.isclose(out, black.expand_as(out[0]), atol=1e-5).all(1)  # (50, 32, 16)
    assert padded.any() and not padded[:, 1:-1, 1:-1].any()
    assert math.isclose(scaled_pad(32), 1)
