import numpy as np
import pytest
import torch
from PIL import Image

from calr_core.data.transforms import test_transform
from calr_core.device import resolve_device
from calr_core.model.backbone import build_model
from calr_core.model.extract import extract_features

H, W = 64, 32


@pytest.fixture(scope="module")
def jpegs(tmp_path_factory):
    root = tmp_path_factory.mktemp("imgs")
    rng = np.random.default_rng(0)
    paths = []
    for i in range(7):
        rel = f"c{i % 2}/{i:03d}.jpg"
        (root / rel).parent.mkdir(exist_ok=True)
        arr = rng.integers(0, 256, (48 + 4 * i, 24 + 2 * i, 3), dtype=np.uint8)  # mixed sizes
        Image.fromarray(arr).save(root / rel, quality=90)
        paths.append(rel)
    return root, paths


@pytest.fixture(scope="module")
def model():
    return build_model("resnet18", weights="none", seed=2)


def manual(model, root, paths):
    t = test_transform(H, W)
    x = torch.stack([t(Image.open(root / p).convert("RGB")) for p in paths])  # (N, 3, H, W)
    model.eval()
    with torch.no_grad():
        return model(x).numpy()


def test_matches_manual_batch_and_keeps_order(jpegs, model):
    root, paths = jpegs
    model.train()
    feats = extract_features(model, root, paths, height=H, width=W, batch_size=3, workers=0,
                             device="cpu", progress=False)
    assert model.training  # previous mode restored
    assert feats.dtype == np.float32 and feats.shape == (7, 512)
    np.testing.assert_allclose(np.linalg.norm(feats, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(feats, manual(model, root, paths), atol=1e-5)
    perm = [5, 0, 6, 2, 1, 4, 3]
    model.eval()
    again = extract_features(model, root, [paths[i] for i in perm], height=H, width=W, batch_size=4,
                             workers=2, device="cpu", progress=True)
    assert not model.training
    np.testing.assert_allclose(again, feats[perm], atol=1e-5)


def test_deterministic_on_cpu_and_empty(jpegs, model):
    root, paths = jpegs
    kw = dict(height=H, width=W, batch_size=4, workers=0, device="cpu", progress=False)
    assert np.array_equal(extract_features(model, root, paths, **kw), extract_features(model, root, paths, **kw))
    assert extract_features(model, root, [], **kw).shape == (0, 512)


def test_resolve_device():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ValueError, match="device='tpu'"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="device='cuda'"):
            resolve_device("cuda")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_bf16_close_to_cpu(jpegs):
    root, paths = jpegs
    m = build_model("resnet18", weights="none", seed=2)
    cpu = extract_features(m, root, paths, height=H, width=W, workers=0, device="cpu", progress=False)
    gpu = extract_features(m, root, paths, height=H, width=W, workers=0, device="cuda", progress=False)
    assert (np.sum(cpu * gpu, axis=1) > 0.99).all()  # bf16 autocast: cosine, not exact
