"""The character RNN family of lecture 12: Embedding -> recurrent layer -> Linear."""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

Cell = Literal["rnn", "gru", "lstm"]
Hidden = torch.Tensor | tuple[torch.Tensor, torch.Tensor]


@dataclass(frozen=True)
class CharRNNConfig:
    """Hyperparameters of :class:`CharRNN`; the defaults are the lecture's "hello" model."""

    vocab_size: int = 4
    embedding_dim: int = 10
    hidden_size: int = 4  # = vocabulary size, as in the lecture
    num_layers: int = 1
    cell: Cell = "rnn"
    dropout: float = 0.0


_CELLS: dict[str, Callable[..., nn.Module]] = {"rnn": nn.RNN, "gru": nn.GRU, "lstm": nn.LSTM}


class CharRNN(nn.Module):
    """Per-step next-character logits; usable for transduction and autoregressive generation.

    ``forward`` takes B x T character indices and an optional hidden state and returns B x T x V
    logits and the new hidden state, so generation can feed one character at a time.
    """

    def __init__(self, config: CharRNNConfig) -> None:
        super().__init__()
        self.config = config
        self.embedding = nn.Embedding(config.vocab_size, config.embedding_dim)
        self.rnn = _CELLS[config.cell](
            config.embedding_dim,
            config.hidden_size,
            num_layers=config.num_layers,
            batch_first=True,
            dropout=config.dropout if config.num_layers > 1 else 0.0,
        )
        self.drop = nn.Dropout(config.dropout)
        self.fc = nn.Linear(config.hidden_size, config.vocab_size)

    def forward(
        self, idx: torch.Tensor, hidden: Hidden | None = None
    ) -> tuple[torch.Tensor, Hidden]:
        """Map B x T indices (and a hidden state) to B x T x V logits and the next hidden state."""
        x = self.embedding(idx)  # B x T x E
        out, hidden = self.rnn(x, hidden)  # B x T x H
        return self.fc(self.drop(out)), hidden  # B x T x V
