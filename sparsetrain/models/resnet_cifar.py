"""CIFAR ResNet-20/32/56 with parameter-free (option-A) or 1x1-convolution (OpenLTH) shortcuts."""

from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

from .init import kaiming_normal_
from .layers import conv3x3
from .resnet import BasicBlock, ResNet, projection, residual_stages


class PadShortcut(nn.Module):
    """Option-A shortcut: strided identity, new channels zero-padded (He et al. 2016, Sec. 4.2)."""

    def __init__(self, in_ch: int, out_ch: int, stride: int):
        super().__init__()
        self.extra, self.stride = out_ch - in_ch, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.pad(x[:, :, ::self.stride, ::self.stride], (0, 0, 0, 0, 0, self.extra))


SHORTCUTS = {"auto": PadShortcut, "pad": PadShortcut, "projection": projection}


def cifar_resnet(depth: int, in_shape: tuple[int, int, int], num_classes: int, shortcut: str = "auto") -> ResNet:
    """ResNet-``depth`` for CIFAR (He et al. 2016, "Deep Residual Learning for Image Recognition").

    3x3 conv stem with 16 channels, three stages of (depth - 2) / 6 basic blocks with 16/32/64
    channels. Shortcuts where the shape changes: ``pad`` (option A, the paper's; ``auto``) or ``projection``
    (1x1 conv + BN, prunable: OpenLTH's ``cifar_resnet``). Kaiming normal (fan_in) init, BN weight 1 / bias 0.
    """
    if shortcut not in SHORTCUTS:
        raise ValueError(f"model.shortcut={shortcut!r} is not a shortcut; choose one of: {', '.join(SHORTCUTS)}")
    n = (depth - 2) // 6
    stem = nn.Sequential(conv3x3(in_shape[0], 16), nn.BatchNorm2d(16), nn.ReLU(inplace=True))
    block = partial(BasicBlock, shortcut=SHORTCUTS[shortcut])
    stages, features = residual_stages(block, 16, (16, 32, 64), (n, n, n))
    model = ResNet(stem, nn.Sequential(*stages), features, num_classes)
    kaiming_normal_(model, mode="fan_in")
    return model
