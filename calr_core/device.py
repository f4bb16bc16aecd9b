"""Where and how tensors run: the one place that turns "auto" | "cpu" | "cuda" into a
torch.device, and a CPU mode (memory format, bf16 autocast) into what a model runs with."""
from __future__ import annotations

import typing
from dataclasses import dataclass
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
# What "auto" runs on a CPU, per arch: the fastest fp32 memory format of a training step on the
# project's 2-core Zen 4 (docs/benchmarks.md "CPU modes"). bf16 autocast is faster still for
# ResNet-50 (2x) and ResNet-18 at 64 x 32, but it cost the demo about 8 points of mAP (two
# seeds), so it is never automatic: ask for it with cpu_mode bf16 or bf16_channels_last.
AUTO_CPU_MODE: dict[str, str] = {
    "resnet18": "fp32",
    "mobilenet_v2": "channels_last",
    "resnet50": "channels_last",
    "resnet50_ibn_a": "channels_last",
}


@dataclass(frozen=True)
class Compute:
    """How a model runs: its name (recorded in checkpoints), memory format and bf16 autocast."""
    name: str
    memory_format: torch.memory_format
    bf16: bool


def compute_mode(device: torch.device, cpu_mode: CpuMode = "auto", arch: str | None = None) -> Compute:
    """The run mode of a model of ``arch`` on ``device``: on CUDA always bf16 autocast and
    channels_last; on a CPU ``cpu_mode``, where ``"auto"`` takes AUTO_CPU_MODE (fp32 for an
    arch not in it, such as an ONNX file)."""
    if cpu_mode not in CPU_MODES:
        raise ValueError(f"cpu_mode={cpu_mode!r}: expected one of {', '.join(CPU_MODES)}")
    if device.type == "cuda":
        return Compute("cuda_bf16_channels_last", torch.channels_last, True)
    mode = AUTO_CPU_MODE.get(arch or "", "fp32") if cpu_mode == "auto" else cpu_mode
    fmt = torch.channels_last if mode.endswith("channels_last") else torch.contiguous_format
    return Compute(mode, fmt, mode.startswith("bf16"))
