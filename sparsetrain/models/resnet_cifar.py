"""CIFAR ResNet-20/32/56 with parameter-free shortcuts."""

from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

from .init import kaiming_normal_
from .layers import conv3x3
from .resnet import BasicBlock, ResNet, residual_stages


class PadShortcut(nn.Module):
    """Option-A shortcut: strided identity, new channels zero-padded (He et al. 2016, Sec. 4.2)."""

    def __init__(self, in_ch: int, out_ch: int, stride: int):
        super().__init__()
        self.extra, self.stride = out_ch - in_ch, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.pad(x[:, :, ::self.stride, ::self.stride], (0, 0, 0, 0, 0, self.extra))


def cifar_resnet(depth: int, in_shape: tuple[int, int, int], num_classes: int) -> ResNet:
    """ResNet-``depth`` for CIFAR (He et al. 2016, "Deep Residual Learning for Image Recognition").

    3x3 conv stem with 16 channels, three stages of (depth - 2) / 6 basic blocks with 16/32/64
    channels, option-A shortcuts. Kaiming normal (fan_in) init, BN weight 1 / bias 0.
    """
    n = (depth - 2) // 6
    stem = nn.Sequential(conv3x3(in_shape[0], 16), nn.BatchNorm2d(16), nn.ReLU(inplace=True))
    stages, features = residual_stages(partial(BasicBlock, shortcut=PadShortcut), 16, (16, 32, 64), (n, n, n))
    model = ResNet(stem, nn.Sequential(*stages), features, num_classes)
    kaiming_normal_(model, mode="fan_in")
    return model
