"""Residual network container and blocks; ImageNet-style ResNet-18/34/50."""

from collections.abc import Callable

import torch
from torch import nn

from .init import kaiming_normal_
from .layers import conv1x1, conv3x3

Shortcut = Callable[[int, int, int], nn.Module]  # (in_channels, out_channels, stride) -> module
STEMS = ("auto", "cifar", "imagenet")


def projection(in_ch: int, out_ch: int, stride: int) -> nn.Module:
    """1x1 conv + BN projection shortcut (He et al. 2016, option B)."""
    return nn.Sequential(conv1x1(in_ch, out_ch, stride), nn.BatchNorm2d(out_ch))


def _shortcut(shortcut: Shortcut, in_ch: int, out_ch: int, stride: int) -> nn.Module:
    return shortcut(in_ch, out_ch, stride) if stride != 1 or in_ch != out_ch else nn.Identity()


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers with a residual connection (He et al. 2016)."""

    expansion = 1

    def __init__(self, in_ch: int, width: int, stride: int, shortcut: Shortcut = projection):
        super().__init__()
        self.out_channels = width
        self.conv1, self.bn1 = conv3x3(in_ch, width, stride), nn.BatchNorm2d(width)
        self.conv2, self.bn2 = conv3x3(width, width), nn.BatchNorm2d(width)
        self.shortcut = _shortcut(shortcut, in_ch, width, stride)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class Bottleneck(nn.Module):
    """1x1 -> 3x3 (strided) -> 1x1 (4x width) conv-BN bottleneck (He et al. 2016; stride as torchvision)."""

    expansion = 4

    def __init__(self, in_ch: int, width: int, stride: int, shortcut: Shortcut = projection):
        super().__init__()
        self.out_channels = width * self.expansion
        self.conv1, self.bn1 = conv1x1(in_ch, width), nn.BatchNorm2d(width)
        self.conv2, self.bn2 = conv3x3(width, width, stride), nn.BatchNorm2d(width)
        self.conv3, self.bn3 = conv1x1(width, self.out_channels), nn.BatchNorm2d(self.out_channels)
        self.shortcut = _shortcut(shortcut, in_ch, self.out_channels, stride)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        return self.relu(self.bn3(self.conv3(out)) + self.shortcut(x))


def residual_stages(block: Callable[[int, int, int], nn.Module], in_ch: int, widths: tuple[int, ...],
                    depths: tuple[int, ...]) -> tuple[list[nn.Sequential], int]:
    """Stages of ``block(in_ch, width, stride)``; every stage after the first halves the resolution.

    Returns the stages and their output channel count.
    """
    stages = []
    for index, (width, depth) in enumerate(zip(widths, depths)):
        blocks = []
        for i in range(depth):
            blocks.append(block(in_ch, width, 2 if index > 0 and i == 0 else 1))
            in_ch = blocks[-1].out_channels
        stages.append(nn.Sequential(*blocks))
    return stages, in_ch


class ResNet(nn.Module):
    """stem -> body -> global average pool -> linear classifier."""

    def __init__(self, stem: nn.Module, body: nn.Module, features: int, num_classes: int):
        super().__init__()
        self.stem, self.body = stem, body
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(features, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.body(self.stem(x))), 1))


IMAGENET_DEPTHS: dict[int, tuple[type[nn.Module], tuple[int, ...]]] = {
    18: (BasicBlock, (2, 2, 2, 2)),
    34: (BasicBlock, (3, 4, 6, 3)),
    50: (Bottleneck, (3, 4, 6, 3)),
}


def resnet(depth: int, in_shape: tuple[int, int, int], num_classes: int, stem: str = "auto") -> nn.Module:
    """ResNet-18/34/50 (He et al. 2016, "Deep Residual Learning for Image Recognition").

    ``stem``: "imagenet" = 7x7/2 conv + 3x3/2 max pool; "cifar" = 3x3/1 conv, no pool;
    "auto" = cifar for inputs up to 64 px high, else imagenet. The ImageNet-stem networks are torchvision's
    (``torchvision.models.resnet<depth>``, so their weights load there by name). Projection shortcuts, Kaiming
    normal (fan_out) conv init, BN weight 1 / bias 0, as torchvision.
    """
    block, depths = IMAGENET_DEPTHS[depth]
    channels, height, _ = in_shape
    if stem == "auto":
        stem = "cifar" if height <= 64 else "imagenet"
    if stem == "imagenet":
        return _torchvision_resnet(depth, channels, num_classes)
    stem_layers = [conv3x3(channels, 64), nn.BatchNorm2d(64), nn.ReLU(inplace=True)]
    stages, features = residual_stages(block, 64, (64, 128, 256, 512), depths)
    model = ResNet(nn.Sequential(*stem_layers), nn.Sequential(*stages), features, num_classes)
    kaiming_normal_(model, mode="fan_out")
    return model


def _torchvision_resnet(depth: int, channels: int, num_classes: int) -> nn.Module:
    """torchvision's ResNet (7x7/2 stem, stride on the 3x3 conv), ``channels`` input channels, the zoo's init."""
    from torchvision.models import get_model  # slow to import

    model = get_model(f"resnet{depth}", weights=None, num_classes=num_classes)
    if channels != 3:
        model.conv1 = nn.Conv2d(channels, 64, 7, stride=2, padding=3, bias=False)
    kaiming_normal_(model, mode="fan_out")
    return model
