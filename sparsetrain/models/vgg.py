"""VGG networks with BatchNorm for CIFAR-sized inputs."""

from torch import nn

from .init import kaiming_normal_
from .layers import conv3x3

PLANS: dict[str, tuple[int | str, ...]] = {
    "vgg11": (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"),
    "vgg16": (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"),
    "vgg19": (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
              512, 512, 512, 512, "M"),
}


class VGG(nn.Sequential):
    """conv3x3-BN-ReLU stacks with 2x2 max pools ("M"), global average pool, Linear 512 -> classes.

    Simonyan & Zisserman 2015, "Very Deep Convolutional Networks" (configurations A, D, E), with
    BatchNorm and a single linear classifier as in the CIFAR VGG of Frankle et al. 2020
    (OpenLTH). Kaiming normal (fan_out) conv init, BN weight 1 / bias 0.
    """

    def __init__(self, plan: tuple[int | str, ...], in_shape: tuple[int, int, int], num_classes: int):
        channels = in_shape[0]
        layers: list[nn.Module] = []
        for item in plan:
            if item == "M":
                layers.append(nn.MaxPool2d(2))
            else:
                layers += [conv3x3(channels, item), nn.BatchNorm2d(item), nn.ReLU(inplace=True)]
                channels = item
        super().__init__(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, num_classes))
        kaiming_normal_(self, mode="fan_out")
