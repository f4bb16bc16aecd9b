"""ONNX export of a re-ID model (dynamic batch), and an ONNX file run as a torch module.

The exported graph maps ``images`` (B, 3, H, W) float32, normalised as at test time, to
``features`` (B, D) float32 with unit L2 norm: what `extract` computes in eval mode.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from calr_core.io.atomic import atomic_path


class Embedder(nn.Module):
    """``model`` followed by the L2 normalisation of `extract`."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.model(images), dim=1)


def export_onnx(model: nn.Module, path: str | os.PathLike, *, height: int, width: int,
                opset: int = 17) -> None:
    """Write ``model`` (eval mode, CPU) to ``path`` as ONNX with a dynamic batch dimension."""
    net = Embedder(model).cpu().eval()
    example = torch.zeros(2, 3, height, width)
    with atomic_path(path) as tmp, torch.no_grad():
        torch.onnx.export(net, (example,), str(tmp), input_names=["images"], output_names=["features"],
                          dynamic_axes={"images": {0: "batch"}, "features": {0: "batch"}},
                          opset_version=opset, dynamo=False)


class OnnxModel(nn.Module):
    """An exported file behind the interface `extract_features` uses (CPU, onnxruntime)."""

    def __init__(self, path: str | os.PathLike):
        super().__init__()
        try:
            import onnxruntime as ort
        except ImportError:
            raise ValueError(f"{path}: running an ONNX model needs onnxruntime "
                             f"(`pip install onnxruntime`)") from None
        if not Path(path).is_file():
            raise ValueError(f"{path}: ONNX file not found")
        try:
            self.session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own types for a bad file
            raise ValueError(f"{path}: not a readable ONNX model ({type(exc).__name__}: {exc})") from None
        self.feat_dim = self.session.get_outputs()[0].shape[1]

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        (out,) = self.session.run(["features"], {"images": images.detach().cpu().float().numpy()})
        return torch.from_numpy(np.asarray(out))
