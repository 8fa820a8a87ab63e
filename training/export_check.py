"""The check every export passes: ONNX Runtime against PyTorch on held-out data.

The reference is the checkpoint's own net run the way training evaluates it (the packed GRU
for names, ``training.digits.normalize`` for digits), softmaxed with the card's temperature
when it has one; the export runs in ONNX Runtime on the same examples, in batches of the
configured largest batch (so the names of a batch have mixed lengths). The held-out data are
the first MNIST test digits and names spread evenly over ``names_test``; without the data
directory, seeded random inputs.
"""

import string
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from models.checkpoint import Checkpoint
from models.text import normalize_name
from training.data import load_mnist, load_names
from training.digits import normalize
from training.export_graphs import probabilities, temperature
from training.names import encode_batch

TOLERANCE = 1e-4
"""Largest difference allowed between exported and PyTorch probabilities."""
EXAMPLES = 1000

Feed = dict[str, np.ndarray]


@dataclass(frozen=True)
class CheckResult:
    """How closely an export matched PyTorch, and on what."""

    max_abs_diff: float
    examples: int
    source: str
    argmax_agreement: float

    @property
    def passed(self) -> bool:
        return self.max_abs_diff <= TOLERANCE

    def summary(self) -> str:
        return (
            f"onnxruntime vs PyTorch on {self.examples:,} {self.source}: max |diff| of "
            f"probabilities {self.max_abs_diff:.1e} (limit {TOLERANCE:.0e}), same top class "
            f"{self.argmax_agreement:.1%}"
        )


def digit_batches(
    checkpoint: Checkpoint, data_dir: Path, batch_size: int, n: int = EXAMPLES
) -> tuple[Iterator[tuple[Feed, torch.Tensor]], str]:
    """(ONNX feed, PyTorch probabilities) per batch of MNIST test digits, and their source."""
    if (data_dir / "mnist").is_dir():
        images, source = load_mnist(data_dir, "test").images[:n], "MNIST test digits"
    else:
        gen = torch.Generator().manual_seed(0)
        images = torch.randint(0, 256, (n, 28, 28), dtype=torch.uint8, generator=gen)
        source = "random 28x28 images (no MNIST data)"
    temp = temperature(checkpoint.card)

    def batches() -> Iterator[tuple[Feed, torch.Tensor]]:
        for start in range(0, len(images), batch_size):
            chunk = images[start : start + batch_size]  # B x 28 x 28 uint8
            with torch.inference_mode():
                reference = probabilities(checkpoint.model(normalize(chunk)), temp)
            yield {"pixels": (chunk.float() / 255.0).numpy()}, reference

    return batches(), source


def held_out_names(data_dir: Path, n: int = EXAMPLES) -> tuple[list[str], str]:
    """``n`` normalised names spread evenly over names_test, or seeded random ones."""
    if (data_dir / "names").is_dir():
        names = [normalize_name(name) for name, _ in load_names(data_dir, "test")]
        names = [name for name in names if name]
        step = max(1, len(names) // n)
        return names[::step][:n], "names_test names"
    rng = np.random.default_rng(0)
    letters = np.array(list(string.ascii_lowercase))
    random = ["".join(rng.choice(letters, rng.integers(1, 21))).title() for _ in range(n)]
    return random, "random names (no names data)"


def name_batches(
    checkpoint: Checkpoint, data_dir: Path, batch_size: int, n: int = EXAMPLES
) -> tuple[Iterator[tuple[Feed, torch.Tensor]], str]:
    """(ONNX feed, PyTorch probabilities) per batch of held-out names, and their source."""
    names, source = held_out_names(data_dir, n)
    temp = temperature(checkpoint.card)

    def batches() -> Iterator[tuple[Feed, torch.Tensor]]:
        for start in range(0, len(names), batch_size):
            codes, lengths = encode_batch(names[start : start + batch_size])  # B x T, B
            with torch.inference_mode():
                reference = probabilities(checkpoint.model(codes, lengths), temp)
            yield {"codes": codes.numpy(), "lengths": lengths.numpy()}, reference

    return batches(), source


def check_onnx(
    path: Path, checkpoint: Checkpoint, data_dir: Path, batch_size: int, n: int = EXAMPLES
) -> CheckResult:
    """Run ``path`` in ONNX Runtime (CPU) against the checkpoint in PyTorch on ``n`` examples."""
    options = ort.SessionOptions()
    # PyTorch runs between the batches: a pool of ONNX Runtime threads spinning for work would
    # take the cores from it (the check ran twice as long with one).
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    make = name_batches if checkpoint.card["architecture"] == "NameGRU" else digit_batches
    batches, source = make(checkpoint, data_dir, batch_size, n)
    worst, agree, count = 0.0, 0, 0
    for feed, reference in batches:
        (exported,) = session.run(["probabilities"], feed)
        expected = reference.numpy()
        worst = max(worst, float(np.abs(exported - expected).max()))
        agree += int((exported.argmax(1) == expected.argmax(1)).sum())
        count += len(expected)
    return CheckResult(worst, count, source, agree / count)
