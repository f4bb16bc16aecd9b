"""Training-step throughput (images/s) and peak memory, on random tensors (no disk, no decoding).

    python -m benchmarks.bench_train [--device cpu|cuda] [--arch resnet50] [--batch 256] [--iters N]

Times ``calr_core.train.loop.train_step`` (bf16 autocast + channels_last on CUDA, fp32 on CPU):
forward, memory loss, optional camera loss, backward, Adam, memory update. Writes
benchmarks/results/train_<device>.json.
"""
from __future__ import annotations

import argparse
import json
import platform
import resource
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from calr_core.device import resolve_device
from calr_core.io.atomic import atomic_write_text
from calr_core.model.backbone import build_model
from calr_core.model.camera import CameraClassifier
from calr_core.train.loop import train_step
from calr_core.train.memory import ClusterMemory

RESULTS = Path(__file__).resolve().parent / "results"


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description="training throughput on random tensors")
    ap.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    ap.add_argument("--arch", default="resnet50", choices=["resnet50", "resnet18", "resnet50_ibn_a"])
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--instances", type=int, default=16)
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--height", type=int, default=256)
    ap.add_argument("--width", type=int, default=128)
    ap.add_argument("--clusters", type=int, default=700)
    ap.add_argument("--bn-group", type=int, default=0)
    ap.add_argument("--camera", action="store_true", help="include the camera-alignment head")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch default)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    dev = resolve_device(args.device)
    cuda = dev.type == "cuda"
    fmt = torch.channels_last if cuda else torch.contiguous_format
    torch.backends.cudnn.benchmark = cuda

    model = build_model(args.arch, weights="none").to(dev, memory_format=fmt).train()
    g = torch.Generator().manual_seed(0)
    bank = F.normalize(torch.randn(args.clusters * 4, model.feat_dim, generator=g), dim=1)
    memory = ClusterMemory(bank.to(dev), (torch.arange(args.clusters * 4) % args.clusters).to(dev))
    head = CameraClassifier(model.feat_dim, 6).to(dev).train() if args.camera else None
    params = [p for p in model.parameters() if p.requires_grad] + ([] if head is None else list(head.parameters()))
    optimizer = torch.optim.Adam(params, lr=3.5e-4, weight_decay=5e-4, fused=cuda or None)
    imgs = torch.randn(args.batch, 3, args.height, args.width, generator=g).to(dev, memory_format=fmt)
    pids = torch.randperm(args.clusters, generator=g)[: args.batch // args.instances]
    targets = pids.repeat_interleave(args.instances).to(dev)  # (B,) P x K
    cams = torch.randint(0, 6, (args.batch,), generator=g).to(dev)

    def step() -> None:
        train_step(model, memory, optimizer, params, imgs, targets, head=head, cams=cams,
                   bn_group=args.bn_group, amp=cuda)

    for _ in range(args.warmup):
        step()
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    for _ in range(args.iters):
        step()
    if cuda:
        torch.cuda.synchronize()
    dt = (time.perf_counter() - t0) / args.iters
    peak = (torch.cuda.max_memory_allocated() if cuda
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024) / 2**30
    result = {
        "device": torch.cuda.get_device_name(dev) if cuda else f"cpu ({torch.get_num_threads()} threads, {platform.processor() or platform.machine()})",
        "torch": torch.__version__, "arch": args.arch, "batch": args.batch, "input": [args.height, args.width],
        "bn_group": args.bn_group, "camera_head": args.camera, "amp_bf16": cuda, "channels_last": cuda,
        "iters_timed": args.iters, "s_per_iter": round(dt, 4), "images_per_s": round(args.batch / dt, 1),
        "s_per_400_iter_round": round(400 * dt, 1),
        "peak_memory_gib": round(peak, 2), "peak_memory_kind": "cuda max allocated" if cuda else "process max RSS",
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"train_{dev.type}.json"
    atomic_write_text(out, json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    print(f"-> {out}")
    return result


if __name__ == "__main__":
    main()
