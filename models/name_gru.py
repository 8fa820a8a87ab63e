"""The bidirectional GRU surname classifier of the RNN lecture."""

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence


@dataclass(frozen=True)
class NameGRUConfig:
    """Hyperparameters of :class:`NameGRU`; the defaults are the lecture's network."""

    vocab_size: int = 128  # ASCII codes
    embedding_dim: int = 100
    hidden_size: int = 100
    num_layers: int = 2
    bidirectional: bool = True
    num_classes: int = 18
    dropout: float = 0.0  # between GRU layers; 0 in the lecture


class NameGRU(nn.Module):
    """Embedding over character codes -> GRU over a packed batch -> fc on the final hidden state.

    The classifier reads the last layer's hidden state of each direction, concatenated
    ``[h_fwd; h_bwd]``. Packing makes every sequence stop at its own length, so the padding of
    a batch never changes any name's output.
    """

    def __init__(self, config: NameGRUConfig) -> None:
        super().__init__()
        self.config = config
        self.directions = 2 if config.bidirectional else 1
        self.embedding = nn.Embedding(config.vocab_size, config.embedding_dim)
        self.gru = nn.GRU(
            config.embedding_dim,
            config.hidden_size,
            num_layers=config.num_layers,
            bidirectional=config.bidirectional,
            dropout=config.dropout if config.num_layers > 1 else 0.0,
        )
        self.fc = nn.Linear(config.hidden_size * self.directions, config.num_classes)

    def forward(self, codes: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Map B x T padded character codes and their B lengths (on the CPU) to B x C logits."""
        embedded = self.embedding(codes)  # B x T x E
        packed = pack_padded_sequence(
            embedded, lengths.cpu(), batch_first=True, enforce_sorted=False
        )
        _, hidden = self.gru(packed)  # (layers * directions) x B x H
        last = hidden[-self.directions :]  # directions x B x H, the last layer
        features = torch.cat(list(last), dim=1)  # B x (directions * H)
        logits: torch.Tensor = self.fc(features)  # B x C
        return logits
