"""The small residual net of the advanced-CNN lecture, for 28x28 MNIST digits."""

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from models.detector import DigitDetector, detected


class ResidualBlock(nn.Module):
    """relu(x + conv(relu(conv(x)))) with two 3x3 convolutions that keep shape."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, kernel_size=3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, kernel_size=3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv2(F.relu(self.conv1(x)))
        return F.relu(x + y)


@dataclass(frozen=True)
class ResNetConfig:
    """Hyperparameters of :class:`ResNet`; the defaults are the lecture's network."""

    in_channels: int = 1
    num_classes: int = 10
    conv1_channels: int = 16
    conv2_channels: int = 32
    kernel_size: int = 5
    image_size: int = 28
    detector: int = 0
    """Hidden units of a digit detector on the features (``models.detector``); 0: none."""


class ResNet(nn.Module):
    """conv 1->16 k5, ResidualBlock(16), conv 16->32 k5, ResidualBlock(32), max-pool 2, fc -> 10.

    With ``config.detector`` units, a :class:`~models.detector.DigitDetector` reads the
    features (``conv2``'s pooled activations, before the second residual block) and the net
    returns the mixture's log-probabilities in place of its logits (``models.detector``).
    """

    def __init__(self, config: ResNetConfig) -> None:
        super().__init__()
        self.config = config
        k = config.kernel_size
        self.conv1 = nn.Conv2d(config.in_channels, config.conv1_channels, kernel_size=k)
        self.rblock1 = ResidualBlock(config.conv1_channels)
        self.conv2 = nn.Conv2d(config.conv1_channels, config.conv2_channels, kernel_size=k)
        self.rblock2 = ResidualBlock(config.conv2_channels)
        side = ((config.image_size - k + 1) // 2 - k + 1) // 2  # 28 -> 24 -> 12 -> 8 -> 4
        self.side = side
        self.fc = nn.Linear(config.conv2_channels * side * side, config.num_classes)
        self.detector = (
            DigitDetector(config.conv2_channels * side * side, config.detector)
            if config.detector
            else None
        )

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """B x 1 x 28 x 28 normalised images -> B x 512: conv2's pooled, rectified output."""
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)  # B x 16 x 12 x 12
        x = self.rblock1(x)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)  # B x 32 x 4 x 4
        return x.flatten(1)

    def classify(self, features: torch.Tensor) -> torch.Tensor:
        """B x 512 features -> B x 10 logits of the digits."""
        x = features.view(-1, self.config.conv2_channels, self.side, self.side)
        x = self.rblock2(x)
        logits: torch.Tensor = self.fc(x.flatten(1))  # B x 512 -> B x 10
        return logits

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map B x 1 x 28 x 28 normalised images to B x 10 logits (with a detector, the
        mixture's log-probabilities)."""
        features = self.features(x)
        return detected(self.classify(features), features, self.detector)
