"""Where and how tensors run: the one place that turns "auto" | "cpu" | "cuda" into a
torch.device, and a CPU mode (memory format, bf16 autocast) into what a model runs with."""
from __future__ import annotations

import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch

from calr_core.config import CpuMode

Device = Literal["auto", "cpu", "cuda"]


def resolve_device(device: Device = "auto") -> torch.device:
    """``"auto"`` is CUDA when available, else CPU; ``"cuda"`` without a GPU is an error."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device='cuda': no CUDA device is available (use 'auto' or 'cpu')")
    if device not in ("cpu", "cuda"):
        raise ValueError(f"device={device!r}: expected 'auto', 'cpu' or 'cuda'")
    return torch.device(device)


CPU_MODES: tuple[str, ...] = typing.get_args(CpuMode)
# What "auto" runs on a CPU, per arch: the fastest mode of a real training round on the project's
# 2-core Zen 4 (docs/benchmarks.md "CPU modes", `python -m benchmarks.bench_round --modes`).
# bf16 modes fall back to their fp32 form on a CPU without native bf16 (where bf16 is emulated).
AUTO_CPU_MODE: dict[str, str] = {
    "resnet18": "bf16_channels_last",
    "mobilenet_v2": "channels_last",
    "resnet50": "bf16_channels_last",
    "resnet50_ibn_a": "bf16_channels_last",
}


@dataclass(frozen=True)
class Compute:
    """How a model runs: its name (recorded in checkpoints), memory format and bf16 autocast."""
    name: str
    memory_format: torch.memory_format
    bf16: bool


def native_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AVX512-BF16 or AMX), read from /proc/cpuinfo."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:  # not Linux: assume emulated
        return False
    return any(f in flags.split() for f in ("avx512_bf16", "amx_bf16"))


def compute_mode(device: torch.device, cpu_mode: CpuMode = "auto", arch: str | None = None) -> Compute:
    """The run mode of a model of ``arch`` on ``device``: on CUDA always bf16 autocast and
    channels_last; on a CPU ``cpu_mode``, where ``"auto"`` takes AUTO_CPU_MODE (fp32 for an
    arch not in it, such as an ONNX file)."""
    if cpu_mode not in CPU_MODES:
        raise ValueError(f"cpu_mode={cpu_mode!r}: expected one of {', '.join(CPU_MODES)}")
    if device.type == "cuda":
        return Compute("cuda_bf16_channels_last", torch.channels_last, True)
    mode = AUTO_CPU_MODE.get(arch or "", "fp32") if cpu_mode == "auto" else cpu_mode
    if cpu_mode == "auto" and mode.startswith("bf16") and not native_bf16():
        mode = {"bf16": "fp32", "bf16_channels_last": "channels_last"}[mode]
    fmt = torch.channels_last if mode.endswith("channels_last") else torch.contiguous_format
    return Compute(mode, fmt, mode.startswith("bf16"))
