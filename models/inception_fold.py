"""The exact fold of :class:`InceptionNet`: one small convolution and two matrix products.

The lecture's Inception module has no nonlinearity inside: its branches are convolutions and an
average pool, concatenated. So between the net's ReLUs everything is affine: ``incept1`` then
``conv2`` is one affine map from the pooled ``conv1`` activations (10 x 12 x 12) to ``conv2``'s
outputs (20 x 8 x 8), and ``incept2`` then ``fc`` one from 20 x 4 x 4 to the ten logits. At
startup each map is written out as a matrix, by running its layers without their biases on
every unit input (the biases come from one run on zeros, so nothing is lost to cancellation),
and the forward pass becomes:

1. ``conv1`` and its 2x2 max-pool as one stride-2 convolution with a (k+1)x(k+1) kernel, the
   original kernel placed at each of the pool's four offsets, then the maximum over the four;
2. ReLU, one matrix product (the first map, its columns grouped by pool offset), the maximum
   over the four groups (``conv2``'s max-pool), ReLU;
3. one matrix product (the second map): the logits.

A net with a digit detector (``models.detector``) keeps it: the detector reads step 2's output,
the features it was trained on, and the logits become the same mixture as the net's.

The folded net does a third of the multiply-adds (2.1 million an image against 6.0 million),
and the first matrix product, nearly all of them, runs at the CPU's peak (about 45 billion fused
multiply-adds a second on one core of the AMD EPYC this was measured on), where the 15 small
convolutions (20 and 24 output channels, on 12x12 and 4x4 images) do not: one thread takes
2.9 ms for a batch of 48 against 9.5 ms layer by layer, and 0.22 ms for one image against 0.59 ms.
The function is the same, from the same weights; only float32 rounding differs (logits within
1e-5 on the MNIST test set, every argmax the same), and ``fold_inception`` checks it on a probe
batch before anything is served.
"""

import copy
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from models.detector import detected
from models.inception import InceptionNet


class FoldError(ValueError):
    """The folded net does not compute the net's function (its modules are not all affine)."""


TOLERANCE = 1e-3
"""Largest difference allowed between folded and unfolded logits on the probe batch (measured:
a few 1e-6), relative to the largest logit magnitude; beyond it the net is served unfolded."""
BASIS_CHUNK = 32
"""Unit inputs pushed through the layers at a time while the matrices are built: bounds the
memory this takes at startup (peak RSS 17 MB up with the matrices; 51 MB with 256 at a time,
which is no faster)."""


class FoldedInception(nn.Module):
    """An :class:`InceptionNet`'s function as a stride-2 convolution and two matrix products."""

    stem_weight: torch.Tensor
    stem_bias: torch.Tensor
    w1: torch.Tensor
    b1: torch.Tensor
    w2: torch.Tensor
    b2: torch.Tensor

    def __init__(self, net: InceptionNet) -> None:
        super().__init__()
        cfg = net.config
        k = cfg.kernel_size
        c1, c2 = cfg.conv1_channels, cfg.conv2_channels
        p1 = (cfg.image_size - k + 1) // 2  # after conv1 and its pool: 12
        p2 = (p1 - k + 1) // 2  # after conv2 (8) and its pool: 4
        weight, bias = net.conv1.weight.detach(), net.conv1.bias
        assert bias is not None
        # Output channel (dy, dx, c) is conv1's channel c at offset (dy, dx) of each pool window.
        stem = weight.new_zeros(2, 2, c1, cfg.in_channels, k + 1, k + 1)
        for dy in (0, 1):
            for dx in (0, 1):
                stem[dy, dx, :, :, dy : dy + k, dx : dx + k] = weight
        self.register_buffer("stem_weight", stem.flatten(0, 2))
        self.register_buffer("stem_bias", bias.detach().repeat(4))

        def pooled_columns(out: torch.Tensor) -> torch.Tensor:
            """N x c2 x s2 x s2 -> N x (2, 2, c2, p2, p2): one column group per pool offset."""
            n = out.shape[0]
            out = out[:, :, : 2 * p2, : 2 * p2].reshape(n, c2, p2, 2, p2, 2)
            return out.permute(0, 3, 5, 1, 2, 4).reshape(n, 4 * c2 * p2 * p2)

        first = nn.Sequential(net.incept1, net.conv2)
        w1, b1 = _affine_map(first, (c1, p1, p1), pooled_columns)
        second = nn.Sequential(net.incept2, nn.Flatten(), net.fc)
        w2, b2 = _affine_map(second, (c2, p2, p2), lambda out: out)
        self.register_buffer("w1", w1)
        self.register_buffer("b1", b1)
        self.register_buffer("w2", w2)
        self.register_buffer("b2", b2)
        self.detector = copy.deepcopy(net.detector)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """B x C x H x W normalised images -> conv2's pooled, rectified output, flattened."""
        b = x.shape[0]
        h = F.conv2d(x.contiguous(), self.stem_weight, self.stem_bias, stride=2)
        h = F.relu(h.reshape(b, 4, -1).amax(1))  # B x (c1 x p1 x p1), conv1's pool and ReLU
        z = torch.addmm(self.b1, h, self.w1)
        return F.relu(z.view(b, 4, -1).amax(1))  # B x (c2 x p2 x p2), conv2's pool and ReLU

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """B x C x H x W normalised images -> B x classes logits, as the net computes them."""
        z = self.features(x)
        return detected(torch.addmm(self.b2, z, self.w2), z, self.detector)


def _affine_map(
    layers: nn.Module,
    shape: tuple[int, int, int],
    arrange: Callable[[torch.Tensor], torch.Tensor],
) -> tuple[torch.Tensor, torch.Tensor]:
    """Matrix W and bias b with ``arrange(layers(x)) == x.flatten() @ W + b`` for affine layers.

    W's rows are the outputs of a bias-free copy of ``layers`` on each unit input (CHW order);
    b is the output of ``layers`` on zeros.
    """
    param = next(layers.parameters())
    linear = copy.deepcopy(layers)
    for module in linear.modules():
        if isinstance(module, nn.Conv2d | nn.Linear) and module.bias is not None:
            module.bias = None
    size = shape[0] * shape[1] * shape[2]
    with torch.no_grad():
        bias = arrange(layers(param.new_zeros(1, *shape)))[0]
        matrix = param.new_empty(size, bias.numel())
        for start in range(0, size, BASIS_CHUNK):
            count = min(BASIS_CHUNK, size - start)
            units = param.new_zeros(count, size)
            units[torch.arange(count), torch.arange(start, start + count)] = 1.0
            matrix[start : start + count] = arrange(linear(units.view(count, *shape)))
    return matrix, bias.contiguous()


def fold_inception(net: InceptionNet, probe: torch.Tensor) -> FoldedInception:
    """``net`` folded, checked on ``probe`` (a batch of inputs) to give the net's logits.

    The matrices are built and checked on the CPU in float32 whatever the net's device (a GPU
    may run convolutions in TF32, which would round the matrices to 10-bit mantissas), then
    moved to the net's device. The check guards against a net whose modules were changed after
    this fold was written (a nonlinearity inside an Inception module makes the maps no longer
    affine); a net that fails it raises FoldError.
    """
    device = next(net.parameters()).device
    on_cpu = net if device.type == "cpu" else copy.deepcopy(net).cpu()
    probe = probe.cpu()
    with torch.no_grad():
        folded = FoldedInception(on_cpu).eval()
        expected, got = on_cpu(probe), folded(probe)
    scale = float(expected.abs().max()) or 1.0
    error = float((expected - got).abs().max()) / scale
    if not error <= TOLERANCE:
        raise FoldError(f"folded, the net's logits differ by {error:.2g} of their scale")
    return folded.to(device)
