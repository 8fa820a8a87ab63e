"""Per-layer CPU convolution kernels (oneDNN or NNPACK): same outputs, same parameters."""

import pytest
import torch
from torch import nn

from app.convolution import MIN_BATCH, NnpackConv2d, eligible, nnpack_layers, tune_convolutions
from models.inception import InceptionNet, InceptionNetConfig

pytestmark = pytest.mark.skipif(
    not torch.backends.nnpack.is_available(), reason="this PyTorch build has no NNPACK"
)


def _net() -> InceptionNet:
    torch.manual_seed(0)
    return InceptionNet(InceptionNetConfig()).eval()


def test_layers_moved_to_nnpack_compute_the_same_outputs_from_the_same_parameters() -> None:
    net = _net()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    images = torch.randn(12, 1, 28, 28)
    with torch.inference_mode():
        expected = net(images)
    moved = tune_convolutions(net, images[:MIN_BATCH], margin=float("inf"))  # every one moves
    convs = [name for name, m in net.named_modules() if isinstance(m, nn.Conv2d)]
    assert sorted(moved) == sorted(convs) and len(moved) == 16
    assert all(isinstance(net.get_submodule(name), NnpackConv2d) for name in moved)
    assert nnpack_layers(net) == moved
    after = net.state_dict()
    assert after.keys() == before.keys()
    assert all(torch.equal(after[k], before[k]) for k in before)
    with torch.inference_mode():
        batched = net(images)  # NNPACK: 12 >= MIN_BATCH
        alone = torch.cat([net(images[i : i + 1]) for i in range(3)])  # oneDNN
        channels_last = net.to(memory_format=torch.channels_last)(
            images.contiguous(memory_format=torch.channels_last)
        )
    torch.testing.assert_close(batched, expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(alone, expected[:3], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(channels_last, expected, rtol=1e-5, atol=1e-5)


def test_nothing_moves_when_nnpack_is_not_faster_or_the_batch_is_small() -> None:
    net = _net()
    assert tune_convolutions(net, torch.randn(MIN_BATCH, 1, 28, 28), margin=0.0) == []
    assert tune_convolutions(net, torch.randn(MIN_BATCH - 1, 1, 28, 28), margin=10.0) == []
    assert nnpack_layers(net) == []


def test_only_plain_dense_float_convolutions_are_eligible() -> None:
    assert eligible(nn.Conv2d(4, 8, 3, padding=1))
    assert not eligible(nn.Conv2d(4, 8, 3, stride=2))
    assert not eligible(nn.Conv2d(4, 8, 3, groups=2))
    assert not eligible(nn.Conv2d(4, 8, 3, dilation=2))
    assert not eligible(nn.Conv2d(4, 8, 3, padding="same"))
    assert not eligible(nn.Conv2d(4, 8, 3, padding=1, padding_mode="reflect"))
    assert not eligible(nn.Conv2d(4, 8, 3).double())
    assert not eligible(nn.Linear(4, 8))
