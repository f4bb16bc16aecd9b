import numpy as np
import pytest
import torch
from PIL import Image

from calr_core.data.images import ImageDataset, ImageReadError
from calr_core.data.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    test_transform,
    train_transform,
)


def solid(rgb, size=(40, 90)) -> Image.Image:  # PIL size is (W, H)
    return Image.new("RGB", size, rgb)


def test_test_transform_size_and_normalisation():
    out = test_transform(64, 32)(solid((255, 128, 0)))
    assert type(out) is torch.Tensor and out.dtype == torch.float32 and out.shape == (3, 64, 32)
    expect = [(v / 255 - m) / s for v, m, s in zip((255, 128, 0), IMAGENET_MEAN, IMAGENET_STD)]
    for c in range(3):
        torch.testing.assert_close(out[c], torch.full((64, 32), expect[c]), atol=1e-5, rtol=0)


def reference_test_transform(img: Image.Image, height: int, width: int) -> torch.Tensor:
    """Independent test preprocessing: PIL bicubic resize, /255, ImageNet normalisation, CHW."""
    x = np.asarray(img.resize((width, height), Image.BICUBIC), dtype=np.float64) / 255
    x = (x - np.array(IMAGENET_MEAN)) / np.array(IMAGENET_STD)
    return torch.from_numpy(x.transpose(2, 0, 1).copy())


@pytest.mark.parametrize("seed,in_hw,out_hw", [(0, (50, 30), (32, 16)),  # downscale
                                                (1, (20, 10), (64, 32)),  # upscale
                                                (2, (90, 40), (64, 48))])  # mixed, other aspect
def test_test_transform_matches_reference(seed, in_hw, out_hw):
    img = Image.fromarray(np.random.default_rng(seed).integers(0, 256, (*in_hw, 3), dtype=np.uint8))
    t = test_transform(*out_hw)
    torch.manual_seed(0)
    out = t(img)
    assert out.dtype == torch.float32 and out.shape == (3, *out_hw)
    # float32 rounding only (measured max 7e-7); one grey level is 1 / (255 * 0.229) ~ 0.017
    torch.testing.assert_close(out.double(), reference_test_transform(img, *out_hw), atol=2e-6, rtol=0)
    torch.manual_seed(12345)  # a different global RNG state must not change the output
    assert torch.equal(t(img), out)


def test_train_transform_size_pad_and_erasing():
    torch.manual_seed(0)
    img = solid((200, 50, 100))
    plain = test_transform(64, 32)(img)
    t = train_transform(64, 32, pad=10, flip_p=0.5, erase_p=1.0)
    outs = [t(img) for _ in range(20)]
    assert all(o.shape == (3, 64, 32) and o.dtype == torch.float32 for o in outs)
    zero = torch.tensor([(0 - m) / s for m, s in zip(IMAGENET_MEAN, IMAGENET_STD)])[:, None, None]
    for o in outs:
        padded = torch.isclose(o, zero.expand_as(o), atol=1e-5).all(0)  # black padding pixels
        erased = (o == 0).all(0)  # erased with 0 = mean colour after normalising
        kept = torch.isclose(o, plain, atol=1e-5).all(0)
        assert (padded | erased | kept).all()
        area = erased.float().mean().item()
        assert 0.0 < area <= 0.45  # erasing always on (p=1), area <= 0.4 up to rounding
    assert any(padded_frac > 0 for padded_frac in
               [torch.isclose(o, zero.expand_as(o), atol=1e-5).all(0).float().mean() for o in outs])
    none = train_transform(64, 32, pad=0, flip_p=0.0, erase_p=0.0)(img)
    torch.testing.assert_close(none, plain)


def test_train_flip():
    arr = np.zeros((64, 32, 3), dtype=np.uint8)
    arr[:, :16] = 255  # left half white
    out = train_transform(64, 32, pad=0, flip_p=1.0, erase_p=0.0)(Image.fromarray(arr))
    assert out[0, :, 24:].mean() > 1.0 and out[0, :, :8].mean() < -1.0  # white moved right


def test_transform_bad_args():
    with pytest.raises(ValueError, match="height=0"):
        test_transform(0, 32)
    with pytest.raises(ValueError, match="erase_p=1.5"):
        train_transform(64, 32, erase_p=1.5)


def test_image_dataset_items_and_errors(tmp_path):
    (tmp_path / "a").mkdir()
    solid((10, 20, 30)).save(tmp_path / "a" / "x.jpg")
    Image.new("L", (20, 40), 99).save(tmp_path / "g.png")  # greyscale -> RGB
    (tmp_path / "bad.jpg").write_bytes(b"not an image")
    t = test_transform(32, 16)
    ds = ImageDataset(tmp_path, ["a/x.jpg", "g.png"], t)
    img, i = ds[1]
    assert len(ds) == 2 and img.shape == (3, 32, 16) and i == 1
    img, target, i = ImageDataset(tmp_path, ["a/x.jpg", "g.png"], t, targets=[7, 3])[0]
    assert target == 7 and i == 0
    with pytest.raises(ImageReadError, match="bad.jpg"):
        ImageDataset(tmp_path, ["bad.jpg"], t)[0]
    with pytest.raises(ImageReadError, match="nope.jpg"):
        ImageDataset(tmp_path, ["nope.jpg"], t)[0]
    with pytest.raises(ValueError, match="targets"):
        ImageDataset(tmp_path, ["a/x.jpg"], t, targets=[1, 2])


def test_pad_scales_with_the_input_height():
    from calr_core.data.transforms import scaled_pad
    for height, pad in ((256, 10), (384, 15), (128, 5), (64, 2), (32, 1), (8, 1)):
        assert scaled_pad(height) == pad
    # the default transform shifts a 32 x 16 solid image by at most 1 pixel: a 1-pixel border
    torch.manual_seed(0)
    t = train_transform(32, 16, flip_p=0.0, erase_p=0.0)
    img = solid((200, 50, 100))
    zero = torch.tensor([(0 - m) / s for m, s in zip(IMAGENET_MEAN, IMAGENET_STD)])[:, None, None]
    for _ in range(20):
        padded = torch.isclose(t(img), zero.expand(3, 32, 16), atol=1e-5).all(0)  # (32, 16)
        assert not padded[1:-1, 1:-1].any()
