"""Digit images -> MNIST form -> a batched CNN."""

import base64
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from app.convolution import nnpack_layers, tune_convolutions
from app.folding import fold_inception
from app.imaging import load_image, normalize, to_mnist, to_png
from app.ink import FIELD
from models import InceptionNet
from models.checkpoint import Checkpoint

INLINE_PIXELS = 48 * 48
"""Uploads up to this size are prepared on the event loop: a fraction of a millisecond, less than
handing them to a worker thread and back."""


def prepare_image(image: Image.Image) -> np.ndarray:
    """An opened (``open_image``) upload as a 28x28 MNIST-style array (raises 400/422)."""
    return to_mnist(load_image(image))


def prepare_inline(image: Image.Image) -> bool:
    """Whether an opened upload is small enough to prepare without leaving the event loop."""
    return image.width * image.height <= INLINE_PIXELS


def png_data_url(array: np.ndarray) -> str:
    return "data:image/png;base64," + base64.b64encode(to_png(array)).decode()


class DigitClassifier:
    """Batched inference over one digit checkpoint, normalised as its card says."""

    def __init__(self, checkpoint: Checkpoint, device: torch.device, *, fold: bool = True) -> None:
        self.checkpoint = checkpoint
        self.device = device
        self.net: torch.nn.Module = checkpoint.model
        """What runs: the checkpoint's net, or its folded form (``app.folding``)."""
        if fold and isinstance(checkpoint.model, InceptionNet):
            probe = torch.randn(8, 1, FIELD, FIELD, device=device)
            self.net = fold_inception(checkpoint.model, probe) or checkpoint.model
        # On the CPU, oneDNN runs the nets' small convolutions 1.2-2.8x faster on channels-last
        # (NHWC) tensors: no reordering between layers (same outputs to 4e-6). The folded net
        # reads its one-channel input as it comes.
        self.memory_format = (
            torch.channels_last
            if device.type == "cpu" and not self.folded
            else torch.contiguous_format
        )
        self.net.to(memory_format=self.memory_format)  # type: ignore[call-overload]
        pre = checkpoint.card["preprocessing"]
        self.mean, self.std = float(pre["mean"]), float(pre["std"])
        self.labels: list[str] = list(checkpoint.card["labels"])

    @property
    def folded(self) -> bool:
        return self.net is not self.checkpoint.model

    def serving(self) -> dict[str, object]:
        """How this server computes the net, for its model card."""
        return {"folded": self.folded, "nnpack_layers": nnpack_layers(self.net)}

    def tune(self, batch: int) -> list[str]:
        """Give each convolution the faster CPU kernel for batches like ``batch`` images (see
        ``app.convolution``); returns the layers moved to NNPACK."""
        example = torch.randn(batch, 1, FIELD, FIELD, device=self.device)
        return tune_convolutions(self.net, example.contiguous(memory_format=self.memory_format))

    def predict_batch(self, images: Sequence[np.ndarray]) -> list[list[float]]:
        """Class probabilities for 28x28 arrays in [0, 1], one list per image."""
        x = normalize(np.stack(images), self.mean, self.std)  # B x 1 x 28 x 28
        x = x.to(self.device).contiguous(memory_format=self.memory_format)
        with torch.inference_mode():
            logits = self.net(x)
            probs: list[list[float]] = F.softmax(logits.float(), dim=1).tolist()
            return probs
