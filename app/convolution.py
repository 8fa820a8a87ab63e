"""A CPU kernel for each convolution, oneDNN or NNPACK, whichever this machine runs faster.

PyTorch runs CPU convolutions through oneDNN, which computes output channels in blocks of the
vector width: 16 floats with AVX-512, so a layer with 20 or 24 output channels does the work of
32. NNPACK (also in PyTorch's CPU build) computes large kernels by FFT or Winograd transforms
and has no such blocks; on an AMD EPYC with AVX-512 it runs the Inception net's 88 -> 20 and
16 -> 24 5x5 convolutions 2.1x and 2.7x as fast on a batch of 48, and its 1x1 convolutions
several times slower. Which kernel wins depends on the layer and the CPU, so it is measured:
once, at startup, per layer, on that layer's own activations (``tune_convolutions``). Both
kernels compute the same convolution: the outputs agree to float32 rounding (1e-6).
"""

import logging
import math
import time
from collections.abc import Callable

import torch
from torch import nn

logger = logging.getLogger("app.convolution")

MIN_BATCH = 4
"""NNPACK is used for batches of at least this many images; oneDNN runs smaller ones (a lone
image is no faster through NNPACK, and usually slower)."""
MARGIN = 0.85
"""NNPACK is chosen only where it takes at most this fraction of oneDNN's time, so that a layer
near the line does not change kernel from one start to the next on timing noise."""


class NnpackConv2d(nn.Conv2d):
    """A ``Conv2d`` that runs batches of ``MIN_BATCH`` images or more through NNPACK."""

    def _conv_forward(
        self, input: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None
    ) -> torch.Tensor:
        if input.shape[0] < MIN_BATCH:
            out: torch.Tensor = super()._conv_forward(input, weight, bias)
            return out
        # NNPACK reads and writes channels-first tensors; the rest of the net stays as it was.
        channels_last = input.is_contiguous(memory_format=torch.channels_last)
        padding = [int(p) for p in self.padding]
        out = torch._nnpack_spatial_convolution(input.contiguous(), weight, bias, padding)
        return out.contiguous(memory_format=torch.channels_last) if channels_last else out

    @classmethod
    def sharing(cls, conv: nn.Conv2d) -> "NnpackConv2d":
        """The same (``eligible``) layer, its parameters shared: the state dict's names and values
        are unchanged."""
        if not eligible(conv) or isinstance(conv.padding, str):  # (the str test: for mypy)
            raise ValueError(f"NNPACK cannot compute {conv}")
        (kh, kw), (ph, pw) = conv.kernel_size, conv.padding
        layer = cls(
            conv.in_channels,
            conv.out_channels,
            (kh, kw),
            padding=(int(ph), int(pw)),
            bias=conv.bias is not None,
            device="meta",
        )
        layer.weight = conv.weight
        layer.bias = conv.bias
        return layer.train(conv.training)


def eligible(conv: nn.Module) -> bool:
    """Whether NNPACK can compute this layer: a plain dense 2-D float32 convolution on the CPU
    with stride 1, no dilation and zero padding given in pixels."""
    return (
        type(conv) is nn.Conv2d
        and conv.weight.device.type == "cpu"
        and conv.weight.dtype == torch.float32
        and conv.groups == 1
        and conv.stride == (1, 1)
        and conv.dilation == (1, 1)
        and conv.padding_mode == "zeros"
        and isinstance(conv.padding, tuple)
    )


def _seconds(run: Callable[[], object], repeats: int) -> float:
    """The shortest time of ``repeats`` calls, after one call to warm up: whatever else runs on
    the machine only ever adds time, so the shortest is the kernel's own."""
    run()
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return best


def tune_convolutions(
    model: nn.Module, example: torch.Tensor, *, margin: float = MARGIN, repeats: int = 5
) -> list[str]:
    """Give each eligible ``Conv2d`` of ``model`` the faster kernel on ``example`` (a batch of
    at least ``MIN_BATCH`` inputs), in place; returns the names of the layers now on NNPACK.

    Each layer is timed on its own input from a forward pass of ``example``, both kernels
    alternately (the best of three rounds of ``repeats`` calls each), and moves to NNPACK where
    that takes at most ``margin`` times oneDNN's time.
    Nothing changes where NNPACK is not available.
    """
    if example.shape[0] < MIN_BATCH or not torch._nnpack_available():
        return []
    convs = {name: m for name, m in model.named_modules() if eligible(m)}
    if not convs:  # e.g. on a GPU
        return []
    inputs: dict[str, torch.Tensor] = {}
    hooks = [
        conv.register_forward_hook(
            lambda m, args, out, name=name: inputs.__setitem__(name, args[0])
        )
        for name, conv in convs.items()
    ]
    try:
        with torch.inference_mode():
            model(example)
    finally:
        for hook in hooks:
            hook.remove()
    chosen = []
    with torch.inference_mode():
        for name, conv in convs.items():
            x = inputs.get(name)
            if x is None:
                continue
            fast = NnpackConv2d.sharing(conv)
            try:
                onednn = nnpack = math.inf
                for _ in range(3):  # alternately, so that drift in the machine hits both alike
                    onednn = min(onednn, _seconds(lambda: conv(x), repeats))  # noqa: B023
                    nnpack = min(nnpack, _seconds(lambda: fast(x), repeats))  # noqa: B023
            except RuntimeError as exc:  # a shape or build NNPACK does not handle
                logger.debug("%s stays on oneDNN: %s", name, exc)
                continue
            if nnpack <= margin * onednn:
                parent_name, _, child = name.rpartition(".")
                setattr(model.get_submodule(parent_name), child, fast)
                chosen.append(name)
    return chosen


def nnpack_layers(model: nn.Module) -> list[str]:
    """The layers of ``model`` that ``tune_convolutions`` moved to NNPACK."""
    return [name for name, m in model.named_modules() if isinstance(m, NnpackConv2d)]
