"""The Inception net folded into matrix products computes what the net computes."""

from pathlib import Path

import pytest
import torch
from torch import nn

from models.checkpoint import load_checkpoint
from models.inception import InceptionNet, InceptionNetConfig
from models.inception_fold import FoldedInception, FoldError, fold_inception
from tests.conftest import WEIGHTS
from training.data import load_mnist
from training.digits import normalize


def _net(config: InceptionNetConfig | None = None) -> InceptionNet:
    torch.manual_seed(0)
    return InceptionNet(config or InceptionNetConfig()).eval()


def test_folded_net_gives_the_nets_logits_alone_and_in_any_batch() -> None:
    net = _net()
    images = torch.randn(20, 1, 28, 28)
    with torch.inference_mode():
        expected = net(images)
        folded = fold_inception(net, images[:4])
        assert isinstance(folded, FoldedInception)
        batched = folded(images)
        alone = torch.cat([folded(images[i : i + 1]) for i in range(5)])
        in_eight = folded(images[:8])
    torch.testing.assert_close(batched, expected, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(alone, batched[:5], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(in_eight, batched[:8], rtol=1e-5, atol=1e-5)
    # The fold copies what it needs: the net's own parameters are untouched.
    assert all(p.grad is None for p in net.parameters())
    assert net.conv1.bias is not None and net.incept1.branch1x1.bias is not None


@pytest.mark.parametrize(
    "config",
    [  # odd-sized conv outputs (the pools drop their last row and column), colour, other widths
        InceptionNetConfig(in_channels=3, conv1_channels=6, conv2_channels=12, image_size=31),
        InceptionNetConfig(kernel_size=3, image_size=20, num_classes=4),
    ],
)
def test_folding_follows_the_config(config: InceptionNetConfig) -> None:
    net = _net(config)
    images = torch.randn(6, config.in_channels, config.image_size, config.image_size)
    with torch.inference_mode():
        folded = fold_inception(net, images)
        assert folded is not None
        torch.testing.assert_close(folded(images), net(images), rtol=1e-4, atol=1e-5)


def test_a_net_not_affine_between_its_relus_is_refused() -> None:
    net = _net()
    net.incept1.branch5x5_1 = nn.Sequential(net.incept1.branch5x5_1, nn.ReLU())
    with pytest.raises(FoldError, match="differ"):
        fold_inception(net, torch.randn(4, 1, 28, 28))


def test_committed_inception_folded_predicts_every_mnist_test_digit_the_same(
    data_dir: Path,
) -> None:
    net = load_checkpoint(WEIGHTS / "digit-inception").model
    assert isinstance(net, InceptionNet)
    test = load_mnist(data_dir, "test")
    images = normalize(test.images)
    with torch.inference_mode():
        folded = fold_inception(net, images[:16])
        assert folded is not None
        expected = torch.cat([net(images[i : i + 1000]) for i in range(0, 10_000, 1000)])
        got = torch.cat([folded(images[i : i + 1000]) for i in range(0, 10_000, 1000)])
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)
    assert torch.equal(got.argmax(1), expected.argmax(1))
    assert float((got.argmax(1) == test.labels).float().mean()) >= 0.993
