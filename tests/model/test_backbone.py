import pytest
import torch
from torch import nn

from calr_core.io.checkpoint import save_checkpoint
from calr_core.model.backbone import WeightsError, build_model
from calr_core.model.ibn import IBN


def unit_rows(y: torch.Tensor) -> bool:
    return torch.allclose(y.norm(dim=1), torch.ones(len(y)), atol=1e-5)


@pytest.mark.parametrize("arch,dim", [("resnet18", 512), ("resnet50", 2048), ("resnet50_ibn_a", 2048)])
def test_shapes_and_unit_norm_in_both_modes(arch, dim):
    m = build_model(arch, weights="none", pooling="avg" if arch == "resnet18" else "gem")
    x = torch.randn(3, 3, 64, 32)
    assert m.feat_dim == dim
    y_train = m(x)
    m.eval()
    with torch.no_grad():
        y_eval = m(x)
    assert y_train.shape == y_eval.shape == (3, dim)
    assert unit_rows(y_train) and unit_rows(y_eval)


def test_last_stride_one_doubles_spatial_size():
    x = torch.randn(2, 3, 64, 32)
    s1 = build_model("resnet18", weights="none", last_stride=1).backbone(x)
    s2 = build_model("resnet18", weights="none", last_stride=2).backbone(x)
    assert s1.shape[2:] == (4, 2) and s2.shape[2:] == (2, 1)
    with pytest.raises(ValueError, match="last_stride=3"):
        build_model("resnet18", weights="none", last_stride=3)


def test_neck_bias_frozen_at_zero_after_step():
    m = build_model("resnet18", weights="none")
    assert not m.neck.bias.requires_grad
    opt = torch.optim.Adam([p for p in m.parameters() if p.requires_grad], lr=0.1, weight_decay=5e-4)
    w0 = m.neck.weight.detach().clone()
    (m(torch.randn(4, 3, 64, 32))[:, 0]).sum().backward()
    opt.step()
    assert torch.equal(m.neck.bias, torch.zeros_like(m.neck.bias))
    assert not torch.equal(m.neck.weight, w0)  # the rest of the neck trains


def test_ibn_a_blocks_have_instance_norm_on_half_channels():
    m = build_model("resnet50_ibn_a", weights="none")
    trunk = m.backbone
    for name in ("layer1", "layer2", "layer3"):
        for block in getattr(trunk, name):
            ibn = block.bn1
            assert isinstance(ibn, IBN)
            c = block.conv1.out_channels
            assert ibn.IN.num_features == c // 2 and ibn.IN.affine
            assert ibn.BN.num_features == c - c // 2
            assert isinstance(block.bn2, nn.BatchNorm2d) and isinstance(block.bn3, nn.BatchNorm2d)
    assert not any(isinstance(mod, (IBN, nn.InstanceNorm2d)) for mod in trunk.layer4.modules())
    assert type(trunk.bn1) is nn.BatchNorm2d  # plain stem


def test_ibn_forward_by_hand():
    ibn = IBN(6).eval()
    with torch.no_grad():
        ibn.BN.running_mean.copy_(torch.tensor([0.5, -1.0, 2.0]))
        ibn.BN.running_var.copy_(torch.tensor([4.0, 1.0, 0.25]))
    x = torch.randn(2, 6, 5, 4)
    y = ibn(x)
    a = x[:, :3]
    ref_in = (a - a.mean(dim=(2, 3), keepdim=True)) / torch.sqrt(a.var(dim=(2, 3), unbiased=False, keepdim=True) + 1e-5)
    ref_bn = (x[:, 3:] - ibn.BN.running_mean[None, :, None, None]) / torch.sqrt(ibn.BN.running_var[None, :, None, None] + 1e-5)
    torch.testing.assert_close(y[:, :3], ref_in, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(y[:, 3:], ref_bn, atol=1e-5, rtol=1e-5)


def test_none_weights_deterministic_and_global_rng_untouched():
    torch.manual_seed(123)
    before = torch.get_rng_state()
    a = build_model("resnet18", weights="none", seed=5)
    assert torch.equal(torch.get_rng_state(), before)
    b = build_model("resnet18", weights="none", seed=5)
    c = build_model("resnet18", weights="none", seed=6)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not torch.equal(sa["backbone.conv1.weight"], sc["backbone.conv1.weight"])


def test_state_dict_round_trip(tmp_path):
    src = build_model("resnet18", weights="none", seed=3)
    with torch.no_grad():
        src.pool.p.fill_(4.0)
        src.neck.running_mean.uniform_()
    x = torch.randn(2, 3, 64, 32)
    src.eval()
    with torch.no_grad():
        y = src(x)
    torch.save(src.state_dict(), tmp_path / "plain.pt")
    save_checkpoint(tmp_path / "ckpt.pt", {"model": src.state_dict(), "round": 4})
    torch.save({f"module.{k}": v for k, v in src.state_dict().items()}, tmp_path / "dp.pt")
    for name in ("plain.pt", "ckpt.pt", "dp.pt"):
        m = build_model("resnet18", weights=str(tmp_path / name), seed=99).eval()
        with torch.no_grad():
            torch.testing.assert_close(m(x), y)
        assert m.pool.p.item() == 4.0


def test_bare_trunk_state_dict_loads_into_backbone(tmp_path):
    from calr_core.compat import torchvision

    torch.manual_seed(0)
    net = torchvision.models.resnet18(weights=None)  # torchvision keys, with fc
    old_style = {k: v for k, v in net.state_dict().items() if not k.endswith("num_batches_tracked")}
    torch.save(old_style, tmp_path / "trunk.pth")  # like files saved before torch 0.4.1
    m = build_model("resnet18", weights=str(tmp_path / "trunk.pth"))
    torch.testing.assert_close(m.backbone.conv1.weight, net.conv1.weight)
    torch.testing.assert_close(m.backbone.layer4[1].bn2.running_var, net.layer4[1].bn2.running_var)


def test_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="arch='vgg16'"):
        build_model("vgg16", weights="none")
    torch.save(build_model("resnet18", weights="none").state_dict(), tmp_path / "r18.pt")
    with pytest.raises(WeightsError, match="does not fit the model"):
        build_model("resnet50", weights=str(tmp_path / "r18.pt"))
    sd = build_model("resnet18", weights="none").state_dict()
    sd["neck.weight"] = torch.ones(7)
    torch.save(sd, tmp_path / "bad.pt")
    with pytest.raises(WeightsError, match="shape mismatch at neck.weight"):
        build_model("resnet18", weights=str(tmp_path / "bad.pt"))
    with pytest.raises(WeightsError, match="expected 'imagenet', 'none' or a state-dict file"):
        build_model("resnet18", weights=str(tmp_path / "missing.pt"))
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="junk.pt"):
        build_model("resnet18", weights=str(tmp_path / "junk.pt"))


def test_imagenet_ibn_without_file_names_the_file(monkeypatch, tmp_path):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    with pytest.raises(WeightsError, match=r"checkpoints/resnet50_ibn_a-d9d0bb7b\.pth"):
        build_model("resnet50_ibn_a", weights="imagenet")
