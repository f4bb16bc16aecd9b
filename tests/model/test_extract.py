import numpy as np
import pytest
import torch
from PIL import Image

from calr_core.data.images import load_resized
from calr_core.data.transforms import normalise
from calr_core.device import AUTO_CPU_MODE, compute_mode, resolve_device
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
    x = normalise(torch.stack([load_resized(root / p, H, W) for p in paths]))  # (N, 3, H, W)
    model.eval()
    with torch.no_grad():
        return model(x).numpy()


def test_matches_manual_batch_and_keeps_order(jpegs, model):
    root, paths = jpegs
    model.train()
    feats = extract_features(model, root, paths, height=H, width=W, batch_size=3, workers=0,
                             device="cpu", cpu_mode="fp32", cache_mb=1, progress=False)
    assert model.training  # previous mode restored
    assert feats.dtype == np.float32 and feats.shape == (7, 512)
    np.testing.assert_allclose(np.linalg.norm(feats, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(feats, manual(model, root, paths), atol=1e-5)
    perm = [5, 0, 6, 2, 1, 4, 3]
    model.eval()
    again = extract_features(model, root, [paths[i] for i in perm], height=H, width=W, batch_size=4,
                             workers=2, device="cpu", cpu_mode="fp32", cache_mb=0, progress=True)  # streamed
    assert not model.training
    np.testing.assert_allclose(again, feats[perm], atol=1e-5)


def test_deterministic_on_cpu_and_empty(jpegs, model):
    root, paths = jpegs
    kw = dict(height=H, width=W, batch_size=4, workers=0, device="cpu", cache_mb=1, progress=False)
    for mode in ("fp32", "channels_last", "bf16", "bf16_channels_last"):
        assert np.array_equal(extract_features(model, root, paths, cpu_mode=mode, **kw),
                              extract_features(model, root, paths, cpu_mode=mode, **kw))
    assert extract_features(model, root, [], **kw).shape == (0, 512)


def test_cpu_modes_close_to_fp32(jpegs, model):
    """channels_last changes the order of sums only; bf16 autocast keeps features within a cosine
    of 0.99 of fp32's (the same bound as bf16 on CUDA)."""
    root, paths = jpegs
    kw = dict(height=H, width=W, batch_size=4, workers=0, device="cpu", cache_mb=1, progress=False)
    fp32 = extract_features(model, root, paths, cpu_mode="fp32", **kw)
    np.testing.assert_allclose(extract_features(model, root, paths, cpu_mode="channels_last", **kw), fp32, atol=1e-5)
    for mode in ("bf16", "bf16_channels_last"):
        assert (np.sum(extract_features(model, root, paths, cpu_mode=mode, **kw) * fp32, axis=1) > 0.99).all()


def test_compute_mode_rules():
    cpu = torch.device("cpu")
    assert compute_mode(cpu, "fp32", "mobilenet_v2") == compute_mode(cpu, "fp32", None)
    c = compute_mode(cpu, "bf16_channels_last", None)  # an explicit mode runs as asked
    assert c.bf16 and c.memory_format == torch.channels_last
    assert compute_mode(cpu, "auto", None).name == "fp32"  # an arch without a measurement (ONNX)
    for arch, mode in AUTO_CPU_MODE.items():
        c = compute_mode(cpu, "auto", arch)
        assert c.name == mode and not c.bf16  # auto keeps fp32 precision
    if torch.cuda.is_available():
        assert compute_mode(torch.device("cuda"), "fp32", "resnet18").bf16
    with pytest.raises(ValueError, match="cpu_mode='fast'"):
        compute_mode(cpu, "fast", "resnet18")


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
    kw = dict(height=H, width=W, workers=0, cache_mb=1, progress=False)
    cpu = extract_features(m, root, paths, device="cpu", cpu_mode="fp32", **kw)
    gpu = extract_features(m, root, paths, device="cuda", **kw)
    assert (np.sum(cpu * gpu, axis=1) > 0.99).all()  # bf16 autocast: cosine, not exact
