"""The synthetic camera world: layout, determinism and a real camera gap."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from calr_core.data.datasets import read_dataset
from calr_core.data.synth import (
    SIZES,
    camera_gap,
    colour_features,
    render_world,
    retrieval_top1,
)


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth") / "demo"
    return out, render_world(out, seed=0, size="demo")


def files(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*.jpg"))}


def test_tiny_layout_reads_as_market(tmp_path):
    summary = render_world(tmp_path / "w", seed=3, size="tiny")
    df = read_dataset("market1501", tmp_path / "w")
    counts = df.groupby("split").size().to_dict()
    assert counts == summary["images"]
    train, test = df[df.split == "train"], df[df.split != "train"]
    assert train["pid"].nunique() == SIZES["tiny"]["n_train_ids"]
    assert not set(train["pid"]) & set(test["pid"])  # disjoint identities
    assert (test["pid"] == 0).sum() == SIZES["tiny"]["n_distractors"]
    assert set(df["camid"]) == set(range(SIZES["tiny"]["n_cams"]))
    # every identity spans >= 2 cameras; every query has a true match in another camera
    assert (df[df.pid > 0].groupby("pid")["camid"].nunique() >= 2).all()
    gal = df[df.split == "gallery"]
    for _, q in df[df.split == "query"].iterrows():
        assert ((gal.pid == q.pid) & (gal.camid != q.camid)).any()
    # at most two queries per identity and camera
    assert df[df.split == "query"].groupby(["pid", "camid"]).size().max() <= 2
    with Image.open(tmp_path / "w" / df["path"].iloc[0]) as im:
        assert im.size == (64, 128) and im.mode == "RGB"


def test_determinism(tmp_path):
    kw = dict(size="tiny", n_train_ids=4, n_test_ids=2, n_distractors=1)
    render_world(tmp_path / "a", seed=5, **kw)
    render_world(tmp_path / "b", seed=5, **kw)
    render_world(tmp_path / "c", seed=6, **kw)
    a, b, c = (files(tmp_path / x) for x in "abc")
    assert a == b  # byte-identical
    assert a != c
    common = set(a) & set(c)
    assert sum(a[k] != c[k] for k in common) == len(common)  # every shared name differs


def test_overrides_and_errors(tmp_path):
    s = render_world(tmp_path / "w", seed=0, size="tiny", n_cams=2, height=64, width=32,
                     n_train_ids=3, n_test_ids=2)
    assert s["cams"] == 2 and s["ids"]["train"] == 3
    with Image.open(next((tmp_path / "w" / "query").iterdir())) as im:
        assert im.size == (32, 64)
    with pytest.raises(ValueError, match="exists"):
        render_world(tmp_path / "w", seed=0, size="tiny")
    with pytest.raises(ValueError, match="unknown override"):
        render_world(tmp_path / "x", seed=0, size="tiny", n_camz=3)
    with pytest.raises(ValueError, match="n_cams=7"):
        render_world(tmp_path / "x", seed=0, size="tiny", n_cams=7)
    assert not (tmp_path / "x").exists() and not list(tmp_path.glob(".x.tmp*"))


def test_colour_features_regions():
    img = np.zeros((2, 20, 8, 3), np.uint8)
    img[0, :4] = (255, 0, 0)  # head band red
    img[1, 11:] = (0, 0, 255)  # lower band blue
    f = colour_features(img)
    assert f.shape == (2, 18)
    np.testing.assert_allclose(np.linalg.norm(f, axis=1), 1, rtol=1e-6)
    assert f[0, 0] == pytest.approx(1.0) and f[1, 14] == pytest.approx(1.0)  # mean R head, mean B lower


def test_retrieval_top1_matches_brute_force():
    rng = np.random.default_rng(0)
    feats = rng.normal(size=(40, 5))
    pids, cams = rng.integers(0, 8, 40), rng.integers(0, 3, 40)
    got = retrieval_top1(feats, pids, cams, chunk=7)
    for name, same in (("same", True), ("cross", False)):
        hit = n = 0
        for i in range(40):
            gal = [j for j in range(40) if j != i and (cams[j] == cams[i]) == same]
            if not any(pids[j] == pids[i] for j in gal):
                continue
            best = max(gal, key=lambda j: feats[i] @ feats[j])
            n += 1
            hit += pids[best] == pids[i]
        assert got[f"n_{name}"] == n
        assert got[f"{name}_cam_top1"] == pytest.approx(hit / n)


def test_demo_camera_gap_is_real(demo):
    out, summary = demo
    assert 800 <= summary["images"]["train"] <= 1100
    assert summary["ids"] == {"train": 60, "query": 40, "gallery": 40}
    gap = camera_gap(out)
    assert gap["same_cam_top1"] >= 0.7  # identities separable inside a camera
    assert gap["gap"] >= 0.2           # ... far less so across cameras
    assert gap["n_same"] > 700 and gap["n_cross"] > 800
