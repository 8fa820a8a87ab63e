"""The GoogLeNet-style Inception net of the advanced-CNN lecture, for 28x28 MNIST digits."""

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from models.detector import DigitDetector, detected


class InceptionA(nn.Module):
    """Four parallel branches concatenated on channels: 16 + 24 + 24 + 24 = 88 channels out.

    1x1 (16); 1x1 (16) -> 5x5 (24); 1x1 (16) -> 3x3 (24) -> 3x3 (24); avg-pool 3 -> 1x1 (24).
    Spatial size is kept by padding, so the branches can be concatenated.
    """

    out_channels = 88

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.branch1x1 = nn.Conv2d(in_channels, 16, kernel_size=1)
        self.branch5x5_1 = nn.Conv2d(in_channels, 16, kernel_size=1)
        self.branch5x5_2 = nn.Conv2d(16, 24, kernel_size=5, padding=2)
        self.branch3x3dbl_1 = nn.Conv2d(in_channels, 16, kernel_size=1)
        self.branch3x3dbl_2 = nn.Conv2d(16, 24, kernel_size=3, padding=1)
        self.branch3x3dbl_3 = nn.Conv2d(24, 24, kernel_size=3, padding=1)
        self.branch_pool = nn.Conv2d(in_channels, 24, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branch1x1 = self.branch1x1(x)
        branch5x5 = self.branch5x5_2(self.branch5x5_1(x))
        branch3x3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        pooled = F.avg_pool2d(x, kernel_size=3, stride=1, padding=1)
        branch_pool = self.branch_pool(pooled)
        return torch.cat([branch1x1, branch5x5, branch3x3, branch_pool], dim=1)  # B x 88 x H x W


@dataclass(frozen=True)
class InceptionNetConfig:
    """Hyperparameters of :class:`InceptionNet`; the defaults are the lecture's network."""

    in_channels: int = 1
    num_classes: int = 10
    conv1_channels: int = 10
    conv2_channels: int = 20
    kernel_size: int = 5
    image_size: int = 28
    detector: int = 0
    """Hidden units of a digit detector on the features (``models.detector``); 0: none."""


class InceptionNet(nn.Module):
    """conv 1->10 k5, InceptionA, conv 88->20 k5, InceptionA; max-pool 2 after each conv; fc.

    With ``config.detector`` units, a :class:`~models.detector.DigitDetector` reads the
    features (``conv2``'s pooled activations) and the net returns the mixture's log-probabilities
    in place of its logits (``models.detector``): the same first label, spread towards even for
    what the detector takes for a non-digit.
    """

    def __init__(self, config: InceptionNetConfig) -> None:
        super().__init__()
        self.config = config
        k = config.kernel_size
        self.conv1 = nn.Conv2d(config.in_channels, config.conv1_channels, kernel_size=k)
        self.incept1 = InceptionA(config.conv1_channels)
        self.conv2 = nn.Conv2d(InceptionA.out_channels, config.conv2_channels, kernel_size=k)
        self.incept2 = InceptionA(config.conv2_channels)
        side = ((config.image_size - k + 1) // 2 - k + 1) // 2  # 28 -> 24 -> 12 -> 8 -> 4
        self.side = side
        self.fc = nn.Linear(InceptionA.out_channels * side * side, config.num_classes)
        self.detector = (
            DigitDetector(config.conv2_channels * side * side, config.detector)
            if config.detector
            else None
        )

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """B x 1 x 28 x 28 normalised images -> B x 320: conv2's pooled, rectified output."""
        x = F.relu(F.max_pool2d(self.conv1(x), 2))  # B x 10 x 12 x 12
        x = self.incept1(x)  # B x 88 x 12 x 12
        x = F.relu(F.max_pool2d(self.conv2(x), 2))  # B x 20 x 4 x 4
        return x.flatten(1)

    def classify(self, features: torch.Tensor) -> torch.Tensor:
        """B x 320 features -> B x 10 logits of the digits."""
        x = features.view(-1, self.config.conv2_channels, self.side, self.side)  # B x 20 x 4 x 4
        x = self.incept2(x)  # B x 88 x 4 x 4
        logits: torch.Tensor = self.fc(x.flatten(1))  # B x 1408 -> B x 10
        return logits

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map B x 1 x 28 x 28 normalised images to B x 10 logits (with a detector, the
        mixture's log-probabilities)."""
        features = self.features(x)
        return detected(self.classify(features), features, self.detector)
