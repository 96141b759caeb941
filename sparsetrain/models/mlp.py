"""LeNet-300-100 fully connected network."""

import math

from torch import nn

from .init import glorot_normal_
from .layers import fc_stack


class LeNet300100(nn.Sequential):
    """Flatten -> 300 -> 100 -> classes with ReLU, Glorot normal weights, zero biases; inputs of any shape (images,
    flat features).

    LeCun et al. 1998, "Gradient-based learning applied to document recognition";
    initialisation as in Frankle & Carbin 2019, "The Lottery Ticket Hypothesis".
    """

    def __init__(self, in_shape: tuple[int, ...], num_classes: int, dropout: float = 0.0):
        super().__init__(nn.Flatten(), *fc_stack(math.prod(in_shape), (300, 100), num_classes, dropout))
        glorot_normal_(self)
