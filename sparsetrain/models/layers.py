"""Small layer constructors shared by the model zoo, and the output channels of a layer (channel pruning)."""

from __future__ import annotations

from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.conv import _ConvNd

CHANNEL_LAYERS = (_ConvNd, nn.Linear)  # the layers whose output channels channel pruning removes


def output_channels(module: nn.Module) -> int | None:
    """Output channels of a convolution, linear layer or BatchNorm (None for any other module)."""
    if isinstance(module, _ConvNd):
        return module.out_channels
    if isinstance(module, nn.Linear):
        return module.out_features
    return module.num_features if isinstance(module, _BatchNorm) else None


def conv3x3(in_ch: int, out_ch: int, stride: int = 1) -> nn.Conv2d:
    """Bias-free 3x3 convolution with padding 1 (for use before BatchNorm)."""
    return nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=1, bias=False)


def conv1x1(in_ch: int, out_ch: int, stride: int = 1) -> nn.Conv2d:
    """Bias-free 1x1 convolution (for use before BatchNorm)."""
    return nn.Conv2d(in_ch, out_ch, 1, stride=stride, bias=False)


def fc_stack(in_features: int, hidden: tuple[int, ...], num_classes: int, dropout: float) -> nn.Sequential:
    """Linear-ReLU(-Dropout) hidden layers followed by a Linear classifier."""
    layers: list[nn.Module] = []
    for width in hidden:
        layers += [nn.Linear(in_features, width), nn.ReLU(inplace=True)]
        if dropout:
            layers.append(nn.Dropout(dropout))
        in_features = width
    layers.append(nn.Linear(in_features, num_classes))
    return nn.Sequential(*layers)
