"""Wide residual networks."""

from functools import partial

import torch
from torch import nn

from .init import kaiming_normal_
from .layers import conv1x1, conv3x3
from .resnet import ResNet, residual_stages


class PreActBlock(nn.Module):
    """BN-ReLU-conv3x3 (-dropout) BN-ReLU-conv3x3 with a residual connection.

    A 1x1 conv on the pre-activated input replaces the identity when the shape changes.
    """

    def __init__(self, in_ch: int, out_ch: int, stride: int, dropout: float = 0.0):
        super().__init__()
        self.out_channels = out_ch
        self.bn1, self.conv1 = nn.BatchNorm2d(in_ch), conv3x3(in_ch, out_ch, stride)
        self.bn2, self.conv2 = nn.BatchNorm2d(out_ch), conv3x3(out_ch, out_ch)
        self.dropout = nn.Dropout(dropout)
        self.shortcut = conv1x1(in_ch, out_ch, stride) if stride != 1 or in_ch != out_ch else None
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre = self.relu(self.bn1(x))
        out = self.conv2(self.dropout(self.relu(self.bn2(self.conv1(pre)))))
        return out + (x if self.shortcut is None else self.shortcut(pre))


def wide_resnet(in_shape: tuple[int, int, int], num_classes: int, depth: int | None = None,
                width: int | None = None, dropout: float = 0.0) -> ResNet:
    """WRN-``depth``-``width`` (Zagoruyko & Komodakis 2016, "Wide Residual Networks").

    3x3 conv stem with 16 channels, three stages of (depth - 4) / 6 pre-activation blocks with
    16k/32k/64k channels, final BN-ReLU, average pool, linear. Kaiming normal (fan_in) init,
    BN weight 1 / bias 0, as the authors' code.
    """
    if depth is None:
        raise ValueError("model.depth is required for model wrn (depth = 6n + 4, e.g. 28)")
    if width is None:
        raise ValueError("model.width is required for model wrn (widening factor k, e.g. 10)")
    if not isinstance(depth, int) or depth < 10 or (depth - 4) % 6:
        raise ValueError(f"model.depth={depth!r} is invalid for model wrn: need depth = 6n + 4 with n >= 1 "
                         "(e.g. 16, 22, 28, 40)")
    if not isinstance(width, int) or width < 1:
        raise ValueError(f"model.width={width!r} is invalid for model wrn: need a positive integer")
    n = (depth - 4) // 6
    widths = (16 * width, 32 * width, 64 * width)
    stages, features = residual_stages(partial(PreActBlock, dropout=dropout), 16, widths, (n, n, n))
    body = nn.Sequential(*stages, nn.BatchNorm2d(features), nn.ReLU(inplace=True))
    model = ResNet(conv3x3(in_shape[0], 16), body, features, num_classes)
    kaiming_normal_(model, mode="fan_in")
    return model
