"""IBN-a ResNet-50 (Pan et al., "Two at Once: Enhancing Learning and Generalization Capacities
via IBN-Net", ECCV 2018): the paper's IBN backbone variant (docs/method.md "Shared settings").

Instance normalisation removes per-image appearance (colour cast, contrast), which is much of
what separates cameras; batch normalisation keeps the content discriminative. IBN-a puts both
side by side in the first norm layer of every bottleneck of layer1-3: InstanceNorm (affine) on
the first half of the channels, BatchNorm on the rest. layer4 and the stem are plain ResNet.
"""
from __future__ import annotations

import torch
from torch import nn

from calr_core.compat import torchvision

# The authors' released ImageNet weights (IBN-Net v1.0). Module names below (bn1.IN / bn1.BN)
# match that file, so it loads as is once placed in the torch hub cache.
IBN_A_URL = "https://github.com/XingangPan/IBN-Net/releases/download/v1.0/resnet50_ibn_a-d9d0bb7b.pth"


class IBN(nn.Module):
    """InstanceNorm(affine) on the first ``int(channels * ratio)`` channels, BatchNorm on the rest."""

    def __init__(self, channels: int, ratio: float = 0.5):
        super().__init__()
        self.half = int(channels * ratio)
        self.IN = nn.InstanceNorm2d(self.half, affine=True)
        self.BN = nn.BatchNorm2d(channels - self.half)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W)
        a, b = torch.split(x, [self.half, x.shape[1] - self.half], dim=1)
        return torch.cat([self.IN(a.contiguous()), self.BN(b.contiguous())], dim=1)  # (B, C, H, W)


def resnet50_ibn_a() -> torchvision.models.ResNet:
    """A randomly initialised IBN-a ResNet-50 (torchvision ResNet with IBN in layer1-3)."""
    net = torchvision.models.resnet50(weights=None)
    for layer in (net.layer1, net.layer2, net.layer3):
        for block in layer:
            block.bn1 = IBN(block.bn1.num_features)
    return net
