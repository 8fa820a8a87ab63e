"""What an exported classifier computes: raw inputs -> probabilities, one graph per family.

The exported graphs take the tensors a client of another runtime has at hand and return
probabilities, so nothing of the service's model code is needed beside them:

- digit nets: ``pixels`` FP32 B x 28 x 28 in MNIST's form (ink bright on dark, 0..1, as the
  service's Open Inference Protocol ``pixels`` input), normalised inside the graph with the
  card's mean and std; out ``probabilities`` FP32 B x 10;
- ``name-gru``: ``codes`` INT64 B x T, the ASCII codes of normalised names zero-padded to the
  longest, and ``lengths`` INT64 B; out ``probabilities`` FP32 B x 18.

A card's ``calibration`` entry of method ``temperature`` divides the logits by its temperature
inside the graph (without the service's cap below 1, ``models.calibration.MAX_TOP``); any other
method (class biases, a map of the top probability or log-odds) leaves the graph at the plain
softmax, and the export writes the entry beside the model for the client to apply.
"""

from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn
from torch.export import Dim

from models.calibration import Calibration
from models.checkpoint import Checkpoint
from models.name_gru import NameGRU
from models.name_gru_onnx import NameGRUForExport

EXPORTABLE = ("digit-resnet", "digit-inception", "name-gru")
"""The classifiers ``python -m training export`` writes."""
BATCH = Dim("batch")
STEPS = Dim("steps")


@dataclass(frozen=True)
class TensorSpec:
    """One input or output of an exported graph, as Triton's model configuration names it."""

    name: str
    data_type: Literal["TYPE_FP32", "TYPE_INT64"]
    dims: tuple[int, ...]
    """Shape without the batch axis; -1 is any size."""
    reshape: tuple[int, ...] | None = None
    """The graph's own shape (without the batch axis) where Triton's ``dims`` cannot be it:
    a B-vector is ``dims: [1]`` reshaped to ``[]``."""
    labels: bool = False
    """Whether the classes' names are in ``labels.txt`` (Triton's ``label_filename``)."""
    description: str = ""


def temperature(card: dict[str, Any]) -> float | None:
    """The temperature of a card's ``calibration`` entry, when that entry is temperature scaling."""
    calibration = Calibration.from_card(card)
    return calibration.temperature if calibration.method == "temperature" else None


def probabilities(logits: torch.Tensor, temp: float | None) -> torch.Tensor:
    """Softmax over classes of B x C logits, divided by the temperature when there is one."""
    return F.softmax(logits if temp is None else logits / temp, dim=1)


class DigitProbabilities(nn.Module):
    """A digit net from MNIST-form pixels: normalise, logits, (temperature), softmax."""

    def __init__(self, net: nn.Module, mean: float, std: float, temp: float | None) -> None:
        super().__init__()
        self.net = net.eval()
        self.mean, self.std, self.temperature = mean, std, temp
        self.eval()

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """B x 28 x 28 pixels in 0..1 -> B x 10 probabilities."""
        x = ((pixels - self.mean) / self.std).unsqueeze(1)  # B x 1 x 28 x 28
        return probabilities(self.net(x), self.temperature)


class NameProbabilities(nn.Module):
    """``name-gru`` from padded codes and lengths: logits, (temperature), softmax."""

    def __init__(self, net: NameGRU, temp: float | None) -> None:
        super().__init__()
        self.net = NameGRUForExport(net)
        self.temperature = temp
        self.eval()

    def forward(self, codes: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """B x T codes and B lengths -> B x C probabilities."""
        return probabilities(self.net(codes, lengths), self.temperature)


@dataclass(frozen=True)
class ExportGraph:
    """A module to export, an example input, its dynamic axes and its tensors' names."""

    module: nn.Module
    example: tuple[torch.Tensor, ...]
    dynamic_shapes: dict[str, dict[int, Any]]
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]


def digit_graph(checkpoint: Checkpoint) -> ExportGraph:
    """The export graph of a digit net, with the card's normalisation and temperature."""
    card = checkpoint.card
    pre = card["preprocessing"]
    module = DigitProbabilities(
        checkpoint.model, float(pre["mean"]), float(pre["std"]), temperature(card)
    )
    side = int(card["config"].get("image_size", 28))
    example = torch.rand(2, side, side, generator=torch.Generator().manual_seed(0))
    return ExportGraph(
        module=module,
        example=(example,),
        dynamic_shapes={"pixels": {0: BATCH}},
        inputs=(
            TensorSpec(
                "pixels",
                "TYPE_FP32",
                (side, side),
                description=f"{side}x{side} greyscale in MNIST's form: ink bright on dark, "
                "centred by its centre of mass, pixel / 255 (0..1); the graph applies the card's "
                "mean and std itself",
            ),
        ),
        outputs=(_probabilities_spec(card),),
    )


def name_graph(checkpoint: Checkpoint) -> ExportGraph:
    """The export graph of ``name-gru`` (ONNX GRU nodes that stop each name at its length)."""
    if not isinstance(checkpoint.model, NameGRU):
        raise TypeError(f"{checkpoint.name} is not a NameGRU")
    module = NameProbabilities(checkpoint.model, temperature(checkpoint.card))
    codes = torch.tensor([[83, 109, 105, 116, 104], [76, 105, 0, 0, 0]])  # "Smith", "Li"
    lengths = torch.tensor([5, 2])
    return ExportGraph(
        module=module,
        example=(codes, lengths),
        dynamic_shapes={"codes": {0: BATCH, 1: STEPS}, "lengths": {0: BATCH}},
        inputs=(
            TensorSpec(
                "codes",
                "TYPE_INT64",
                (-1,),
                description="ASCII codes of each normalised name (models.text.normalize_name), "
                "zero-padded to the longest name of the batch",
            ),
            TensorSpec(
                "lengths",
                "TYPE_INT64",
                (1,),
                reshape=(),
                description="each name's length, 1 or more (in Triton a [1] per name, reshaped)",
            ),
        ),
        outputs=(_probabilities_spec(checkpoint.card),),
    )


def _probabilities_spec(card: dict[str, Any]) -> TensorSpec:
    return TensorSpec(
        "probabilities",
        "TYPE_FP32",
        (len(card["labels"]),),
        labels=True,
        description="class probabilities in the order of labels.txt",
    )
