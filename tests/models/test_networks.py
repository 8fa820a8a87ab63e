"""Shapes, parameter counts and the padding-invariance of every network."""

import pytest
import torch

from models import (
    CharRNN,
    CharRNNConfig,
    InceptionNet,
    InceptionNetConfig,
    NameGRU,
    NameGRUConfig,
    ResNet,
    ResNetConfig,
    build_model,
    count_parameters,
)


@pytest.mark.parametrize(
    ("model", "params"),
    [
        (InceptionNet(InceptionNetConfig()), 97_298),
        (ResNet(ResNetConfig()), 41_514),
    ],
)
def test_digit_nets_map_images_to_ten_logits(model: torch.nn.Module, params: int) -> None:
    assert count_parameters(model) == params
    assert model(torch.randn(3, 1, 28, 28)).shape == (3, 10)


def test_name_gru_has_the_lecture_size_and_shapes() -> None:
    model = NameGRU(NameGRUConfig())
    assert count_parameters(model) == 318_818
    codes = torch.randint(1, 128, (4, 9))
    logits = model(codes, torch.tensor([9, 3, 5, 1]))
    assert logits.shape == (4, 18)


def test_name_gru_output_does_not_depend_on_padding_or_batch() -> None:
    torch.manual_seed(0)
    model = NameGRU(NameGRUConfig()).eval()
    name = torch.tensor([[ord(c) for c in "Nguyen"]])
    alone = model(name, torch.tensor([6]))
    batch = torch.zeros(3, 15, dtype=torch.long)
    batch[0, :11] = torch.tensor([ord(c) for c in "Dostoevsky"] + [ord("x")])
    batch[1, :6] = name[0]
    batch[2, :2] = torch.tensor([ord("O"), ord("h")])
    in_batch = model(batch, torch.tensor([11, 6, 2]))
    torch.testing.assert_close(in_batch[1:2], alone, rtol=1e-5, atol=1e-6)


def test_char_rnn_steps_one_character_at_a_time_like_a_whole_sequence() -> None:
    torch.manual_seed(0)
    model = CharRNN(
        CharRNNConfig(vocab_size=65, embedding_dim=16, hidden_size=32, num_layers=2, cell="gru")
    ).eval()
    idx = torch.randint(0, 65, (2, 7))
    whole, _ = model(idx)
    assert whole.shape == (2, 7, 65)
    hidden = None
    steps = []
    for t in range(7):
        logits, hidden = model(idx[:, t : t + 1], hidden)
        steps.append(logits)
    torch.testing.assert_close(torch.cat(steps, dim=1), whole, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
def test_char_rnn_family_builds_every_cell(cell: str) -> None:
    model = build_model("CharRNN", {"vocab_size": 4, "cell": cell})
    logits, _ = model(torch.tensor([[0, 1, 2, 2, 3]]))
    assert logits.shape == (1, 5, 4)


def test_registry_refuses_unknown_architecture_and_config_keys() -> None:
    with pytest.raises(ValueError, match="unknown architecture 'VGG'"):
        build_model("VGG", {})
    with pytest.raises(ValueError, match="unknown config keys"):
        build_model("ResNet", {"widht": 3})
