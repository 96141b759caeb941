"""LeNet-5 convolutional network."""

from torch import nn

from .init import glorot_normal_
from .layers import fc_stack


class LeNet5(nn.Sequential):
    """conv 6@5x5 (pad 2) -> pool -> conv 16@5x5 -> pool -> fc 120 -> fc 84 -> classes, ReLU.

    LeCun et al. 1998, "Gradient-based learning applied to document recognition"
    (ReLU and max pooling instead of tanh and subsampling); Glorot normal init, zero biases.
    """

    def __init__(self, in_shape: tuple[int, int, int], num_classes: int, dropout: float = 0.0):
        channels, height, width = in_shape
        flat = 16 * ((height // 2 - 4) // 2) * ((width // 2 - 4) // 2)
        super().__init__(
            nn.Conv2d(channels, 6, 5, padding=2), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            nn.Conv2d(6, 16, 5), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            nn.Flatten(),
            *fc_stack(flat, (120, 84), num_classes, dropout),
        )
        glorot_normal_(self)
