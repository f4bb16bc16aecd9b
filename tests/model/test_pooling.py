import pytest
import torch

from calr_core.model.pooling import GeM, build_pool


def gem_by_hand(x: torch.Tensor, p: float, eps: float) -> torch.Tensor:
    b, c, h, w = x.shape
    out = torch.zeros(b, c, dtype=torch.float64)
    for i in range(b):
        for j in range(c):
            s = 0.0
            for u in range(h):
                for v in range(w):
                    s += max(float(x[i, j, u, v]), eps) ** p
            out[i, j] = (s / (h * w)) ** (1.0 / p)
    return out


@pytest.mark.parametrize("p", [1.0, 3.0, 4.5])
def test_gem_matches_formula(p):
    x = torch.randn(2, 3, 4, 5)  # negatives are clamped to eps
    got = GeM(p=p)(x)
    assert got.shape == (2, 3)
    torch.testing.assert_close(got.double(), gem_by_hand(x, p, 1e-6), rtol=1e-5, atol=1e-6)


def test_gem_p1_is_average_pool_and_p_is_trainable():
    x = torch.rand(3, 4, 6, 2) + 0.1
    torch.testing.assert_close(GeM(p=1.0)(x), build_pool("avg")(x))
    gem = build_pool("gem")
    assert isinstance(gem, GeM) and gem.p.item() == 3.0 and gem.p.requires_grad
    gem(x).sum().backward()
    assert gem.p.grad is not None and gem.p.grad.abs().item() > 0
    assert not GeM(trainable=False).p.requires_grad


def test_gem_ge_average_for_p_gt_1():
    x = torch.rand(2, 8, 5, 5)
    assert (GeM(p=3.0)(x) >= build_pool("avg")(x) - 1e-6).all()


def test_build_pool_rejects_unknown():
    with pytest.raises(ValueError, match="pooling='max'"):
        build_pool("max")
