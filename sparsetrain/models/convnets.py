"""Conv-2/4/6 networks of the lottery-ticket paper."""

from torch import nn

from .init import glorot_normal_
from .layers import fc_stack

PLANS: dict[str, tuple[int | str, ...]] = {
    "conv2": (64, 64, "M"),
    "conv4": (64, 64, "M", 128, 128, "M"),
    "conv6": (64, 64, "M", 128, 128, "M", 256, 256, "M"),
}


class ConvNet(nn.Sequential):
    """3x3 convs (padding 1) with ReLU and 2x2 max pools, then FC 256 -> 256 -> classes.

    Frankle & Carbin 2019, "The Lottery Ticket Hypothesis" (Figure 2); Glorot normal init,
    zero biases. ``plan`` lists conv widths, with "M" for a max pool.
    """

    def __init__(self, plan: tuple[int | str, ...], in_shape: tuple[int, int, int], num_classes: int,
                 dropout: float = 0.0):
        channels, height, width = in_shape
        layers: list[nn.Module] = []
        for item in plan:
            if item == "M":
                layers.append(nn.MaxPool2d(2))
                height, width = height // 2, width // 2
            else:
                layers += [nn.Conv2d(channels, item, 3, padding=1), nn.ReLU(inplace=True)]
                channels = item
        classifier = fc_stack(channels * height * width, (256, 256), num_classes, dropout)
        super().__init__(*layers, nn.Flatten(), *classifier)
        glorot_normal_(self)
