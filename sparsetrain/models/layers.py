"""Small layer constructors shared by the model zoo."""

from torch import nn


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
