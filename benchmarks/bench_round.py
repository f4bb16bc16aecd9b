"""A real training round's speed on the CPU, before and after, side by side in one run.

    python -m benchmarks.bench_round [--settings demo,usl] [--iters 60] [--modes] [--base REV]

For each setting (demo: ResNet-18 at 32 x 16; usl: MobileNetV2 at 64 x 32; both batch 64 =
8 ids x 8 instances on the demo's synthetic world, 962 training JPEGs of 4 cameras) it times,
in a fresh process per code version:
- extraction of the training images (JPEG decoding included), images/s;
- one round of ``train_round`` with the camera head (rounds 0-2 of the demo) and one without
  (rounds 3-4): images/s over the round's iterations, as the pipeline's training curve counts
  them (data included, start-up not);
- ``train_step`` alone on one fixed batch of random tensors (the same model, memory and Adam):
  the ceiling a real round could reach.
"before" is the code at ``--base`` (default: main before the CPU-pace work), checked out with
``git worktree`` in a temporary folder; "after" is this tree. ``--modes`` also times every CPU
mode of this tree (what ``calr_core.device.AUTO_CPU_MODE`` is chosen from). GFLOP/s count the
model's forward and backward (3 x the forward's, by torch's FLOP counter), against the CPU's fp32
peak (about 200 GFLOP/s for the 2 cores).
Each finished measurement is kept in benchmarks/results/round_cpu.json as it ends: a killed run
started again skips what it has (``--fresh`` starts over).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
OUT = RESULTS / "round_cpu.json"
BASE = "b809a8c"  # main before the CPU-pace work (issue 28)
SETTINGS = {"demo": ("resnet18", 32, 16), "usl": ("mobilenet_v2", 64, 32)}
EXTRAS = {"threads1": {"threads": 1}, "interop1": {"interop": 1}, "streamed-workers0": {"cache_mb": 0, "workers": 0},
          "streamed-workers1": {"cache_mb": 0, "workers": 1}, "flush-denormal": {"flush_denormal": True},
          "compile": {"compile": True}}
PEAK_FP32_GFLOPS = 200  # 2 Zen 4 cores, AVX-512: 2 FMA x 16 lanes x 2 ops x ~3.1 GHz, x 2 cores


def worker(spec: dict) -> dict:
    """Run in a subprocess whose ``calr_core`` is the tree under test; returns the figures."""
    import inspect
    import time

    import numpy as np
    import torch
    import torch.nn.functional as F
    from torch.utils.flop_counter import FlopCounterMode

    from calr_core.config import Data, Model, Train
    from calr_core.data.datasets import read_dataset
    from calr_core.model.backbone import build_model
    from calr_core.model.extract import extract_features
    from calr_core.train.loop import train_round, train_step
    from calr_core.train.settings import RoundData, RoundSettings

    arch, h, w = SETTINGS[spec["setting"]]
    mode = spec.get("cpu_mode")
    if spec.get("threads"):
        torch.set_num_threads(spec["threads"])
    if spec.get("interop"):
        torch.set_num_interop_threads(spec["interop"])
    if spec.get("flush_denormal"):
        torch.set_flush_denormal(True)
    df = read_dataset("market1501", spec["world"], check_images=False)
    train = df[df.split == "train"]
    paths, pids, cams = train.path.tolist(), train.pid.to_numpy(), train.camid.to_numpy()
    new_api = "cache_mb" in inspect.signature(extract_features).parameters
    cache_mb = spec.get("cache_mb", getattr(Data(), "cache_mb", None))  # None: the old tree has no cache
    kw = dict(cache_mb=cache_mb, **({"cpu_mode": mode} if mode else {})) if new_api else {}
    model = build_model(arch, weights="none", seed=1)
    extract_features(model, Path(spec["world"]), paths[:128], height=h, width=w, batch_size=128,
                     workers=0, device="cpu", progress=False, **kw)  # warm-up
    t0 = time.perf_counter()
    feats = extract_features(model, Path(spec["world"]), paths, height=h, width=w, batch_size=128,
                             workers=0, device="cpu", progress=False, **kw)
    extract_s = time.perf_counter() - t0
    labels = np.unique(pids, return_inverse=True)[1]
    data = RoundData(root=spec["world"], paths=paths, labels=labels, camids=cams, init_features=feats)
    sections = [Train(), Model(arch=arch, height=h, width=w)] + \
        ([Data()] if len(inspect.signature(RoundSettings.from_params).parameters) > 3 else [])
    out = {"extract_img_per_s": round(len(paths) / extract_s, 1)}
    for camera in (True, False):
        fields = dict(n_cams=4, camera_alignment=camera, iters=spec["iters"], batch_size=64,
                      num_instances=8, save_every=10**6, device="cpu", workers=spec.get("workers", 0),
                      epoch=0 if camera else 3, **(kw if new_api else {}))
        settings = RoundSettings.from_params(*sections, **fields)
        model = build_model(arch, weights="none", seed=1)
        history: list[dict] = []
        timers = _timers(model) if spec.get("profile") and camera else None
        t0 = time.perf_counter()
        state = train_round(model, data, settings, history=history, progress=False)
        wall = time.perf_counter() - t0
        if timers is not None:
            out["profile_ms_per_iter"] = _breakdown(timers, history)
        secs = [r["seconds"] for r in history]
        tag = "camera" if camera else "plain"
        out[f"{tag}_img_per_s"] = round(64 * len(secs) / sum(secs), 1)
        out[f"{tag}_round_wall_s"] = round(wall, 2)
        out["compute"] = state["params"].get("compute", "fp32")
    # the same step on one fixed random batch, no data path: the ceiling of a real round
    fmt, amp = torch.contiguous_format, False
    if new_api:
        from calr_core.device import compute_mode
        c = compute_mode(torch.device("cpu"), mode or "auto", arch)
        fmt, amp = c.memory_format, c.bf16
    from calr_core.model.camera import CameraClassifier
    from calr_core.train.memory import ClusterMemory
    g = torch.Generator().manual_seed(0)
    model = build_model(arch, weights="none", seed=1).to(memory_format=fmt).train()
    head = CameraClassifier(model.feat_dim, 4).train()
    memory = ClusterMemory(torch.as_tensor(feats), torch.as_tensor(labels))
    params = [p for p in model.parameters() if p.requires_grad] + list(head.parameters())
    opt = torch.optim.Adam(params, lr=3.5e-4, weight_decay=5e-4, fused=True if new_api else None)
    x = torch.randn(64, 3, h, w, generator=g).contiguous(memory_format=fmt)
    y = torch.as_tensor(labels[:64]).long()
    cam = torch.as_tensor(cams[:64]).long()
    net = model
    if spec.get("compile"):
        net = torch.compile(model)
    for n, timed in ((3, False), (spec["iters"], True)):
        t0 = time.perf_counter()
        for _ in range(n):
            train_step(net, memory, opt, params, x, y, head=head, cams=cam, amp=amp)
        if timed:
            out["tensor_img_per_s"] = round(64 * n / (time.perf_counter() - t0), 1)
        elif spec.get("compile"):
            out["compile_and_3_steps_s"] = round(time.perf_counter() - t0, 1)
    with FlopCounterMode(display=False) as fc, torch.no_grad():
        model(x)
    # forward + backward = 3 x forward (torch's counter overcounts depthwise convolutions'
    # backward by the group count: 19x the forward's for MobileNetV2)
    out["gflop_per_img"] = round(3 * fc.get_total_flops() / 64 / 1e9, 4)
    out["gflops_camera"] = round(out["gflop_per_img"] * out["camera_img_per_s"], 1)
    out["threads"] = torch.get_num_threads()
    import calr_core
    out["code"] = str(Path(calr_core.__file__).parent.parent)
    return out


def _timers(model) -> dict:
    """Wrap the parts of a training step with wall-clock timers (same names in every tree):
    model forward, memory loss, camera head forward, backward, Adam step, memory update."""
    import time

    import torch

    from calr_core.model.camera import CameraClassifier
    from calr_core.train.memory import ClusterMemory

    timers = {k: 0.0 for k in ("forward", "memory loss", "camera head", "backward", "Adam", "memory update")}

    def wrap(owner, name, key):
        fn = getattr(owner, name)

        def timed(*a, **k):
            t0 = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                timers[key] += time.perf_counter() - t0
        setattr(owner, name, timed)
    wrap(model, "forward", "forward")
    wrap(ClusterMemory, "forward", "memory loss")
    wrap(ClusterMemory, "update", "memory update")
    wrap(CameraClassifier, "forward", "camera head")
    wrap(torch.Tensor, "backward", "backward")
    wrap(torch.optim.Adam, "step", "Adam")
    return timers


def _breakdown(timers: dict, history: list[dict]) -> dict:
    """ms per iteration of each timed part; 'data and the rest' is what the iterations' wall time
    leaves: fetching, decoding and augmenting the batch, seeding, logging."""
    total = sum(r["seconds"] for r in history)
    n = len(history)
    out = {k: round(1000 * v / n, 2) for k, v in timers.items()}
    out["data and the rest"] = round(1000 * (total - sum(timers.values())) / n, 2)
    out["total"] = round(1000 * total / n, 2)
    return out


def _world(cache: Path) -> Path:
    world = cache / "demo-seed1"
    if not (world / "bounding_box_train").is_dir():
        from calr_core.data.synth import render_world
        render_world(world, seed=1, size="demo")
    return world


def _run(tree: Path, spec: dict) -> dict:
    # this file's worker, run with the tree's calr_core first on the path
    env = {**os.environ, "PYTHONPATH": str(tree)}
    cmd = [sys.executable, __file__, "--worker", json.dumps(spec)]
    proc = subprocess.run(cmd, cwd=tree, env=env, capture_output=True, text=True)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode or not lines:
        raise SystemExit(f"{tree}: worker failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(lines[-1][7:])


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--settings", default="demo,usl")
    ap.add_argument("--iters", type=int, default=60)
    ap.add_argument("--base", default=BASE, help="git revision of 'before'")
    ap.add_argument("--modes", action="store_true", help="also time each CPU mode of this tree")
    ap.add_argument("--profile", action="store_true", help="also time the parts of a step, before and after")
    ap.add_argument("--extras", action="store_true",
                    help="also time this tree with 1 thread, 1 inter-op thread, streamed images (0 and 1 workers), "
                         "denormals flushed, and torch.compile on the tensor step")
    ap.add_argument("--repeat", type=int, default=1, help="run each measurement this many times")
    ap.add_argument("--skip-before", action="store_true")
    ap.add_argument("--fresh", action="store_true", help="forget kept results")
    ap.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "calr-bench")
    args = ap.parse_args(argv)
    kept = {} if args.fresh or not OUT.is_file() else json.loads(OUT.read_text()).get("runs", {})
    world = _world(args.cache)
    jobs = []
    for setting in args.settings.split(","):
        if not args.skip_before:
            jobs.append((f"{setting}/before", "before", {}))
        jobs.append((f"{setting}/after", "after", {}))
        if args.modes:
            jobs += [(f"{setting}/after/{m}", "after", {"cpu_mode": m})
                     for m in ("fp32", "channels_last", "bf16", "bf16_channels_last")]
        if args.profile:
            jobs += [(f"{setting}/{v}/profile", v, {"profile": True})
                     for v in (("after",) if args.skip_before else ("before", "after"))]
        if args.extras:
            jobs += [(f"{setting}/after/{k}", "after", extra) for k, extra in EXTRAS.items()]
    jobs = [(f"{name}#{i}" if i else name, v, e) for i in range(args.repeat) for name, v, e in jobs]
    base_tree = args.cache / f"tree-{args.base}"
    if any(v == "before" for _, v, _ in jobs) and not base_tree.is_dir():
        subprocess.run(["git", "worktree", "add", "--detach", str(base_tree), args.base], cwd=ROOT,
                       check=True, capture_output=True)
    from calr_core.io.atomic import atomic_write_text
    for name, version, extra in jobs:
        if name in kept:
            continue
        spec = {"setting": name.split("/")[0], "world": str(world), "iters": args.iters, **extra}
        print(f"{name} ...", flush=True)
        kept[name] = _run(base_tree if version == "before" else ROOT, spec)
        print(f"{name}: {kept[name]}", flush=True)
        result = {"machine": f"{platform.machine()}, {os.cpu_count()} cores, "
                             f"{_cpu_name()}", "base": args.base, "iters": args.iters, "runs": kept}
        RESULTS.mkdir(parents=True, exist_ok=True)
        atomic_write_text(OUT, json.dumps(result, indent=2) + "\n")
    _table(kept)
    return kept


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _table(runs: dict) -> None:
    print("| run | compute | extract img/s | round img/s (camera / plain) | step on tensors img/s "
          "| real / tensors | GFLOP/s (of ~200 fp32 peak) |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for name, r in runs.items():
        print(f"| {name} | {r['compute']} | {r['extract_img_per_s']:.0f} | {r['camera_img_per_s']:.0f} / "
              f"{r['plain_img_per_s']:.0f} | {r['tensor_img_per_s']:.0f} | "
              f"{r['camera_img_per_s'] / r['tensor_img_per_s']:.2f} | {r['gflops_camera']:.0f} |")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--worker"]:
        print("RESULT " + json.dumps(worker(json.loads(sys.argv[2]))))
    else:
        main()
