"""Feature-extraction throughput and peak memory.

    python -m benchmarks.bench_extract [--device cpu|cuda] [--arch resnet50] [--batch 256]
        [--height 256 --width 128] [--batches 10] [--jpegs 0]

Times the model on random tensors already in memory (no disk, no decoding), and with
``--jpegs N`` also the full ``extract_features`` path on N random JPEGs written to a temp folder.
Weights are random ("none"): speed does not depend on them. Writes
benchmarks/results/extract_<device>.json and prints a markdown table row.
"""
from __future__ import annotations

import argparse
import json
import platform
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from calr_core.config import Data
from calr_core.device import resolve_device
from calr_core.io.atomic import atomic_write_text
from calr_core.model.backbone import build_model
from calr_core.model.extract import embed, extract_features

RESULTS = Path(__file__).parent / "results"


def cpu_name() -> str:
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        return next(l.split(":", 1)[1].strip() for l in lines if l.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or "cpu"


def peak_mb(dev: torch.device) -> float:
    if dev.type == "cuda":
        return torch.cuda.max_memory_allocated(dev) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB -> MiB


def sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def bench_tensors(model, dev, batch, height, width, batches, warmup, amp) -> float:
    fmt = torch.channels_last if dev.type == "cuda" else torch.contiguous_format
    model.to(dev, memory_format=fmt).eval()
    x = torch.randn(batch, 3, height, width, device=dev).contiguous(memory_format=fmt)  # (B, 3, H, W)
    for _ in range(warmup):
        embed(model, x, amp=amp)
    sync(dev)
    t0 = time.perf_counter()
    for _ in range(batches):
        embed(model, x, amp=amp).cpu()  # include the copy back, as extraction does
    sync(dev)
    return batch * batches / (time.perf_counter() - t0)


def bench_jpegs(model, dev, n, batch, height, width, workers) -> float:
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        paths = [f"{i:05d}.jpg" for i in range(n)]
        for p in paths:  # Market-like 128 x 64 crops, upscaled by the transform
            Image.fromarray(rng.integers(0, 256, (128, 64, 3), dtype=np.uint8)).save(Path(tmp) / p)
        extract_features(model, tmp, paths[: min(n, batch)], height=height, width=width,
                         batch_size=batch, workers=workers, cache_mb=Data().cache_mb, device=dev.type,
                         progress=False)  # warm-up
        sync(dev)
        t0 = time.perf_counter()
        extract_features(model, tmp, paths, height=height, width=width, batch_size=batch,
                         workers=workers, cache_mb=Data().cache_mb, device=dev.type, progress=False)
        sync(dev)
        return n / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    ap.add_argument("--arch", default="resnet50", choices=["resnet50", "resnet18", "resnet50_ibn_a"])
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--height", type=int, default=256)
    ap.add_argument("--width", type=int, default=128)
    ap.add_argument("--batches", type=int, default=10, help="timed batches on random tensors")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--jpegs", type=int, default=0, help="also time extract_features on N JPEGs")
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--no-amp", action="store_true", help="fp32 on CUDA too")
    args = ap.parse_args()

    dev = resolve_device(args.device)
    amp = dev.type == "cuda" and not args.no_amp
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.cuda.reset_peak_memory_stats(dev)
    model = build_model(args.arch, weights="none")
    ips = bench_tensors(model, dev, args.batch, args.height, args.width, args.batches, args.warmup, amp)
    jpeg_ips = (bench_jpegs(model, dev, args.jpegs, args.batch, args.height, args.width, args.workers)
                if args.jpegs else None)
    result = {
        "device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else cpu_name(),
        "device_type": dev.type, "torch_threads": torch.get_num_threads(), "arch": args.arch,
        "batch": args.batch, "height": args.height, "width": args.width, "amp_bf16": amp,
        "batches": args.batches, "tensor_images_per_s": round(ips, 2),
        "jpegs": args.jpegs, "jpeg_images_per_s": None if jpeg_ips is None else round(jpeg_ips, 2),
        "peak_mem_mb": round(peak_mb(dev), 1),
        "peak_mem_kind": "torch.cuda.max_memory_allocated" if dev.type == "cuda" else "process max RSS",
        "torch": torch.__version__,
    }
    atomic_write_text(RESULTS / f"extract_{dev.type}.json", json.dumps(result, indent=2) + "\n")
    print("| device | arch | batch | HxW | amp | img/s (tensors) | img/s (JPEGs) | peak MiB |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    print(f"| {result['device']} ({result['torch_threads']} thr) | {args.arch} | {args.batch} | "
          f"{args.height}x{args.width} | {amp} | {ips:.1f} | "
          f"{'-' if jpeg_ips is None else f'{jpeg_ips:.1f}'} | {result['peak_mem_mb']:.0f} |")


if __name__ == "__main__":
    main()
