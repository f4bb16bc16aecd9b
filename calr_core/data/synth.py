"""The synthetic camera world: a small Market-1501 where the camera gap is real.

CALR's premise (docs/method.md "Why cameras matter") is that two people under one camera can look
closer than one person under two. This world makes that true by construction: identities are
clothes/body/hair/bag combinations drawn from a small shared palette, and every camera applies
its own colour cast, exposure, gamma, blur, noise, background and preferred viewpoint (a backpack
is seen from the back, a chest print only from the front). ``camera_gap`` measures it with plain
colour statistics: top-1 retrieval inside a camera is high, across cameras much lower.

``render_world`` writes a Market-1501 layout (bounding_box_train / query / bounding_box_test,
names ``PPPP_cCs1_FFFFFF_01.jpg``, cameras 1-based) that ``read_dataset("market1501", out)``
reads. Train and test identities are disjoint; each identity is seen by 2..n_cams cameras;
query holds one or two images per test identity and camera, gallery the rest plus distractors
(pid 0). Rendering is deterministic: every image has its own numpy Generator seeded from
(seed, identity, camera, index), so the same seed gives byte-identical JPEGs.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import time
from pathlib import Path

import numpy as np
from PIL import Image

from calr_core.data.datasets import read_dataset
from calr_core.data.synth_render import (
    VIEWS,
    render_image,
    sample_camera,
    sample_identity,
)
from calr_core.progress import progress as show_progress

log = logging.getLogger(__name__)

SIZES: dict[str, dict] = {
    # DAG tests: renders in well under a second
    "tiny": dict(n_train_ids=12, n_test_ids=8, n_cams=3, imgs_per_cam=3.0, n_distractors=4),
    # the demo: full CALR pipeline in minutes on 2 CPU cores (~900 train images)
    "demo": dict(n_train_ids=60, n_test_ids=40, n_cams=4, imgs_per_cam=5.0, n_distractors=20),
    # Market-1501 scale: ~750 train ids, ~12,900 train images, 6 cameras
    "market": dict(n_train_ids=750, n_test_ids=750, n_cams=6, imgs_per_cam=4.3,
                   n_distractors=500),
}
DEFAULTS: dict = dict(height=128, width=64, occlusion_p=0.2, view_change_p=0.15,
                      jpeg_quality=90, camera_strength=1.0)
FOLDERS = {"train": "bounding_box_train", "query": "query", "gallery": "bounding_box_test"}
_DISTRACTOR_KEY = 100_000  # identity keys of distractors (pid 0) start here


def plan_world(seed: int, *, n_train_ids: int, n_test_ids: int, n_cams: int,
               imgs_per_cam: float, n_distractors: int) -> list[tuple[str, int, int, int, int]]:
    """Which images exist: rows (split, pid, camera 0-based, identity key, index in tracklet).

    Identity i (pid i+1; test pids follow the train pids) is seen by a random 2..n_cams cameras
    with 1 + Poisson(imgs_per_cam - 1) images each (at least 2 for test identities, so a query
    and a gallery image can come from one camera's tracklet).
    """
    if not 2 <= n_cams <= 6:
        raise ValueError(f"n_cams={n_cams}: expected 2..6 (the Market-1501 layout has 6 cameras)")
    if n_train_ids < 1 or n_test_ids < 1 or n_train_ids + n_test_ids > 9999:
        raise ValueError(f"n_train_ids={n_train_ids}, n_test_ids={n_test_ids}: expected >= 1 "
                         "each and at most 9999 in all (4-digit pids)")
    if imgs_per_cam < 1:
        raise ValueError(f"imgs_per_cam={imgs_per_cam}: expected a mean >= 1")
    rng = np.random.default_rng([seed, 0])
    rows = []
    for key in range(n_train_ids + n_test_ids):
        test = key >= n_train_ids
        cams = np.sort(rng.choice(n_cams, size=rng.integers(2, n_cams + 1), replace=False))
        for cam in cams:
            n = 1 + rng.poisson(imgs_per_cam - 1)
            n = max(n, 2) if test else n
            n_query = (1 + (n >= 6)) if test else 0
            for k in range(n):
                split = "train" if not test else ("query" if k < n_query else "gallery")
                rows.append((split, key + 1, int(cam), key, k))
    for j in range(n_distractors):
        rows.append(("gallery", 0, int(rng.integers(n_cams)), _DISTRACTOR_KEY + j, 0))
    return rows


def render_world(out: str | os.PathLike, *, seed: int, size: str = "demo", **overrides) -> dict:
    """Render a synthetic Market-1501-layout dataset into ``out`` and return a summary dict.

    ``size`` picks a preset of ``SIZES``; ``overrides`` replace any preset or ``DEFAULTS`` key
    (n_train_ids, n_test_ids, n_cams, imgs_per_cam, n_distractors, height, width, occlusion_p,
    view_change_p, jpeg_quality, camera_strength: 0 removes the colour casts). ``out`` must not exist or be empty; the world is rendered in
    a sibling temp folder and moved into place, so a killed render leaves nothing behind.
    """
    if size not in SIZES:
        raise ValueError(f"size={size!r}: expected one of {list(SIZES)}")
    cfg = {**SIZES[size], **DEFAULTS}
    unknown = set(overrides) - set(cfg)
    if unknown:
        raise ValueError(f"render_world: unknown override(s) {sorted(unknown)}; expected some of "
                         f"{sorted(cfg)}")
    cfg.update(overrides)
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ValueError(f"out={out}: exists and is not an empty folder; expected a new folder")
    t0 = time.perf_counter()
    plan = plan_world(seed, **{k: cfg[k] for k in SIZES["demo"]})
    h, w = cfg["height"], cfg["width"]
    cams = [sample_camera(np.random.default_rng([seed, 2, c]), h, w, cfg["camera_strength"])
            for c in range(cfg["n_cams"])]
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    for folder in FOLDERS.values():
        (tmp / folder).mkdir(parents=True)
    try:
        frames = [0] * cfg["n_cams"]
        identity, tracklet = None, None
        with show_progress("render", len(plan), unit="img") as bar:
            for split, pid, cam, key, k in plan:
                if identity is None or identity[0] != key:
                    identity = (key, sample_identity(np.random.default_rng([seed, 1, key])))
                if k == 0:  # a tracklet: one viewpoint and distance per (identity, camera)
                    trng = np.random.default_rng([seed, 3, key, cam])
                    tracklet = (str(trng.choice(VIEWS, p=cams[cam].view_p)),
                                cams[cam].scale * trng.uniform(0.92, 1.05))
                rng = np.random.default_rng([seed, 4, key, cam, k])
                view = tracklet[0] if rng.random() >= cfg["view_change_p"] else str(rng.choice(VIEWS))
                img = render_image(identity[1], cams[cam], rng, view=view, scale=tracklet[1],
                                   height=h, width=w, occlusion_p=cfg["occlusion_p"])
                frames[cam] += 1 + int(rng.integers(1, 40))  # frame numbers grow along the video
                name = f"{pid:04d}_c{cam + 1}s1_{frames[cam]:06d}_01.jpg"
                Image.fromarray(img).save(tmp / FOLDERS[split] / name, quality=cfg["jpeg_quality"])
                bar.advance()
        summary = _summary(plan, cfg, seed, size, time.perf_counter() - t0)
        kept = {k: v for k, v in summary.items() if k != "seconds"}  # the file: same seed, same bytes
        (tmp / "world.json").write_text(json.dumps({**kept, "cameras": [_camera_dict(c) for c in cams]}, indent=1))
        if out.exists():
            out.rmdir()
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log.info("rendered %s world (seed %d) in %.1f s: %s", size, seed, summary["seconds"],
             summary["images"])
    return summary


def _summary(plan, cfg: dict, seed: int, size: str, seconds: float) -> dict:
    splits = list(FOLDERS)
    return {
        "size": size, "seed": seed, "config": cfg, "seconds": round(seconds, 2),
        "images": {s: sum(r[0] == s for r in plan) for s in splits},
        "ids": {s: len({r[1] for r in plan if r[0] == s and r[1] > 0}) for s in splits},
        "distractors": sum(r[1] == 0 for r in plan), "cams": cfg["n_cams"],
    }


def _camera_dict(cam) -> dict:
    return {"gain": cam.gain.round(3).tolist(), "brightness": round(cam.brightness, 3),
            "gamma": round(cam.gamma, 3), "saturation": round(cam.saturation, 3),
            "blur": round(cam.blur, 3), "noise": round(cam.noise, 4),
            "view_p": dict(zip(VIEWS, cam.view_p.round(3).tolist())), "scale": round(cam.scale, 3)}


# --- measuring the camera gap ---------------------------------------------------------------

def colour_features(images: np.ndarray) -> np.ndarray:
    """Mean and std of RGB in head / upper / lower bands of the central half of each image.

    images: (N, H, W, 3) uint8 -> (N, 18) float32, L2-normalised. Deliberately naive: it is
    what a camera-blind colour matcher sees, so it exposes the camera gap.
    """
    x = np.asarray(images, np.float32) / 255  # (N, H, W, 3)
    if x.ndim != 4 or x.shape[-1] != 3:
        raise ValueError(f"images shape {x.shape}: expected (N, H, W, 3)")
    H, W = x.shape[1:3]
    x = x[:, :, W // 4: W - W // 4]
    bands = [(0.0, 0.2), (0.2, 0.55), (0.55, 1.0)]
    parts = []
    for a, b in bands:
        r = x[:, int(a * H): int(b * H)].reshape(len(x), -1, 3)  # (N, pixels, 3)
        parts += [r.mean(1), r.std(1)]
    f = np.concatenate(parts, 1)  # (N, 18)
    return f / np.maximum(np.linalg.norm(f, axis=1, keepdims=True), 1e-12)


def retrieval_top1(feats: np.ndarray, pids: np.ndarray, cams: np.ndarray,
                   chunk: int = 2048) -> dict:
    """Top-1 identity retrieval of every image against (a) the other images of its camera and
    (b) the images of the other cameras, by cosine similarity; a query counts only where its
    identity has another image in that gallery."""
    pids, cams = np.asarray(pids), np.asarray(cams)
    hits = {"same": [0, 0], "cross": [0, 0]}
    for s in range(0, len(feats), chunk):
        sim = feats[s:s + chunk] @ feats.T  # (B, N)
        idx = np.arange(s, min(s + chunk, len(feats)))
        same_cam = cams[idx, None] == cams[None, :]
        same_pid = pids[idx, None] == pids[None, :]
        not_self = idx[:, None] != np.arange(len(feats))[None, :]
        for name, mask in (("same", same_cam & not_self), ("cross", ~same_cam)):
            valid = (mask & same_pid).any(1)
            best = np.where(mask, sim, -np.inf).argmax(1)
            hits[name][0] += int((pids[best] == pids[idx])[valid].sum())
            hits[name][1] += int(valid.sum())
    same, cross = (h[0] / max(h[1], 1) for h in (hits["same"], hits["cross"]))
    return {"same_cam_top1": same, "cross_cam_top1": cross, "gap": same - cross,
            "n_same": hits["same"][1], "n_cross": hits["cross"][1]}


def camera_gap(root: str | os.PathLike) -> dict:
    """``retrieval_top1`` of ``colour_features`` on the train split of a Market-layout world."""
    root = Path(root)
    df = read_dataset("market1501", root, check_images=False)
    df = df[df["split"] == "train"]
    feats = np.concatenate([
        colour_features(np.stack([np.asarray(Image.open(root / p).convert("RGB")) for p in chunk]))
        for chunk in np.array_split(df["path"].to_numpy(), max(1, len(df) // 1024))])
    return retrieval_top1(feats, df["pid"].to_numpy(), df["camid"].to_numpy())
