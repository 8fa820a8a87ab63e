"""The lecture-12 walkthroughs: RNNCell and nn.RNN shapes, and "hello" -> "ohlol" three ways."""

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from models import CharRNN, CharRNNConfig

HELLO_VOCAB = ["h", "e", "l", "o"]
HELLO_INPUT, HELLO_TARGET = "hello", "ohlol"
Variant = Literal["rnncell", "rnn", "embedding"]


def rnncell_shapes(
    batch_size: int = 1, seq_len: int = 5, input_size: int = 4, hidden_size: int = 2
) -> list[tuple[int, ...]]:
    """Feed one-hot characters through ``nn.RNNCell`` one step at a time.

    Each step takes a B x input_size input and a B x hidden_size state and returns the next
    state; the returned list holds the hidden shape after every step (``seq_len`` entries of
    ``(batch_size, hidden_size)``).
    """
    cell = nn.RNNCell(input_size=input_size, hidden_size=hidden_size)
    inputs = torch.eye(input_size)[torch.randint(input_size, (seq_len, batch_size))]  # T x B x I
    hidden = torch.zeros(batch_size, hidden_size)  # B x H
    shapes = []
    for x in inputs:
        hidden = cell(x, hidden)  # B x H
        shapes.append(tuple(hidden.shape))
    return shapes


def rnn_shapes(
    batch_size: int = 3,
    seq_len: int = 5,
    input_size: int = 4,
    hidden_size: int = 2,
    num_layers: int = 2,
) -> dict[str, tuple[int, ...]]:
    """Run a whole batch of sequences through ``nn.RNN(batch_first=True, num_layers=...)``.

    Returns the shapes of the input (B x T x I), the per-step output of the top layer
    (B x T x H) and the final hidden state of every layer (layers x B x H).
    """
    rnn = nn.RNN(input_size, hidden_size, num_layers=num_layers, batch_first=True)
    x = torch.randn(batch_size, seq_len, input_size)  # B x T x I
    out, hidden = rnn(x, torch.zeros(num_layers, batch_size, hidden_size))
    return {"input": tuple(x.shape), "output": tuple(out.shape), "hidden": tuple(hidden.shape)}


def encode_hello(text: str) -> torch.Tensor:
    return torch.tensor([HELLO_VOCAB.index(c) for c in text])


class _OneHotRNN(nn.Module):
    """Lecture's one-hot ``nn.RNN`` whose 4 hidden units are the 4 output classes."""

    def __init__(self) -> None:
        super().__init__()
        self.rnn = nn.RNN(input_size=4, hidden_size=4, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.rnn(x)  # 1 x T x 4
        steps: torch.Tensor = out.squeeze(0)  # T x 4
        return steps


class _CellRNN(nn.Module):
    """Lecture's ``nn.RNNCell`` unrolled by hand over the one-hot characters."""

    def __init__(self) -> None:
        super().__init__()
        self.cell = nn.RNNCell(input_size=4, hidden_size=4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hidden = torch.zeros(1, 4)
        outputs = []
        for step in x.squeeze(0):  # T x 4
            hidden = self.cell(step.unsqueeze(0), hidden)  # 1 x 4
            outputs.append(hidden)
        return torch.cat(outputs)  # T x 4


def hello_model(variant: Variant) -> nn.Module:
    """A fresh model for one of the three lecture variants."""
    if variant == "rnncell":
        return _CellRNN()
    if variant == "rnn":
        return _OneHotRNN()
    return CharRNN(CharRNNConfig())


def train_hello_model(
    variant: Variant, epochs: int = 15, seed: int = 0, lr: float = 0.1, verbose: bool = True
) -> tuple[nn.Module, str]:
    """Teach "hello" -> "ohlol" with Adam as the lecture does; return model and prediction."""
    torch.manual_seed(seed)
    model = hello_model(variant)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    x, y = encode_hello(HELLO_INPUT), encode_hello(HELLO_TARGET)
    one_hot = F.one_hot(x, len(HELLO_VOCAB)).float().unsqueeze(0)  # 1 x T x 4
    predicted = ""
    for epoch in range(1, epochs + 1):
        model.train()
        logits = (
            model(x.unsqueeze(0))[0].squeeze(0) if isinstance(model, CharRNN) else model(one_hot)
        )  # T x 4
        loss = F.cross_entropy(logits, y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        predicted = "".join(HELLO_VOCAB[i] for i in logits.argmax(1).tolist())
        if verbose:
            print(f"epoch {epoch:3d}  loss {loss.item():.3f}  predicted string: {predicted}")
    model.eval()
    with torch.no_grad():
        predicted = _predict(model, x, one_hot)
    return model, predicted


def _predict(model: nn.Module, x: torch.Tensor, one_hot: torch.Tensor) -> str:
    logits = model(x.unsqueeze(0))[0].squeeze(0) if isinstance(model, CharRNN) else model(one_hot)
    return "".join(HELLO_VOCAB[i] for i in logits.argmax(1).tolist())


def run_hello(variant: Variant, epochs: int = 15, seed: int = 0) -> str:
    """CLI entry: train one variant, printing the predicted string each epoch."""
    _, predicted = train_hello_model(variant, epochs=epochs, seed=seed)
    print(f"learning finished: {HELLO_INPUT!r} -> {predicted!r}")
    return predicted
