""":class:`NameGRU` as ONNX ``GRU`` operators that read each name's length, for export.

``pack_padded_sequence`` does not survive ``torch.export`` (a packed batch's sizes are data,
not shapes), and ``nn.GRU`` over a padded batch fixes the sequence length of the traced
example into the graph. ONNX's own ``GRU`` operator does what packing does: its
``sequence_lens`` input stops each sequence at its length, the backward direction starts at
each sequence's last element, and ``Y_h`` holds each direction's state at its own end. So in
an export this module writes one ``GRU`` node per layer (``torch.onnx.ops.symbolic_multi_out``)
with the net's weights in ONNX's gate order; run eagerly it is the packed net itself.

The exported graph is checked against the packed net on held-out names of mixed lengths, in
one batch, by ``python -m training export`` and ``tests/training/test_export.py``.
"""

import torch
from torch import nn

from models.name_gru import NameGRU


def onnx_gate_order(tensor: torch.Tensor) -> torch.Tensor:
    """Rows (or entries) in PyTorch's gate order r, z, n -> ONNX's z, r, h."""
    r, z, n = tensor.chunk(3, dim=0)
    return torch.cat([z, r, n])


def _stacked(gru: nn.GRU, name: str, layer: int) -> torch.Tensor:
    """One layer's ``name`` parameter of each direction in ONNX's gate order: D x 3H (x ...)."""
    suffixes = ["", "_reverse"] if gru.bidirectional else [""]
    return torch.stack(
        [onnx_gate_order(getattr(gru, f"{name}_l{layer}{s}").detach()) for s in suffixes]
    )


class NameGRUForExport(nn.Module):
    """A :class:`NameGRU` (in eval mode) that exports as ONNX ``GRU`` nodes with lengths."""

    def __init__(self, net: NameGRU) -> None:
        super().__init__()
        self.net = net.eval()
        gru = net.gru
        self.hidden_size = gru.hidden_size
        self.num_layers = gru.num_layers
        self.directions = 2 if gru.bidirectional else 1
        for layer in range(self.num_layers):
            w = _stacked(gru, "weight_ih", layer)  # D x 3H x I
            r = _stacked(gru, "weight_hh", layer)  # D x 3H x H
            b = torch.cat(
                [_stacked(gru, "bias_ih", layer), _stacked(gru, "bias_hh", layer)], dim=1
            )  # D x 6H
            self.register_buffer(f"w{layer}", w)
            self.register_buffer(f"r{layer}", r)
            self.register_buffer(f"b{layer}", b)
        self.eval()

    def forward(self, codes: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Map B x T padded character codes and their B lengths to B x C logits."""
        if not torch.onnx.is_in_onnx_export():
            logits: torch.Tensor = self.net(codes, lengths)
            return logits
        x = self.net.embedding(codes.t())  # T x B x E
        steps, batch = x.shape[0], x.shape[1]
        sequence_lens = lengths.to(torch.int32)  # ONNX's GRU takes int32 lengths
        hidden = x.new_empty(0)
        for layer in range(self.num_layers):
            y, hidden = torch.onnx.ops.symbolic_multi_out(
                "GRU",
                [x, *(self.get_buffer(f"{k}{layer}") for k in "wrb"), sequence_lens],
                {
                    "hidden_size": self.hidden_size,
                    "direction": "bidirectional" if self.directions == 2 else "forward",
                    "linear_before_reset": 1,  # PyTorch's form of the candidate state
                },
                dtypes=[x.dtype, x.dtype],
                shapes=[
                    [steps, self.directions, batch, self.hidden_size],
                    [self.directions, batch, self.hidden_size],
                ],
            )  # y: T x D x B x H, hidden: D x B x H
            x = y.permute(0, 2, 1, 3).flatten(2)  # T x B x DH
        features = hidden.permute(1, 0, 2).flatten(1)  # B x DH, [h_fwd; h_bwd]
        out: torch.Tensor = self.net.fc(features)  # B x C
        return out
