"""Checkpoint round trip and refusal of anything tampered with."""

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from models import ResNet, ResNetConfig
from models.checkpoint import CheckpointError, load_checkpoint, save_checkpoint


def _card() -> dict[str, object]:
    return {"name": "digit-resnet", "task": "t", "architecture": "ResNet", "config": {}}


@pytest.fixture
def saved(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    save_checkpoint(tmp_path / "m", ResNet(ResNetConfig()), _card())
    return tmp_path / "m"


def test_round_trip_gives_the_same_outputs_in_eval_mode(saved: Path) -> None:
    torch.manual_seed(0)
    original = ResNet(ResNetConfig()).eval()
    loaded = load_checkpoint(saved)
    assert not loaded.model.training
    x = torch.randn(2, 1, 28, 28)
    torch.testing.assert_close(loaded.model(x), original(x))
    assert loaded.card["num_parameters"] == 41_514
    assert len(loaded.card["weights_sha256"]) == 64


def test_tampered_weights_are_refused_naming_the_file(saved: Path) -> None:
    weights = saved / "model.safetensors"
    blob = bytearray(weights.read_bytes())
    blob[-1] ^= 0xFF
    weights.write_bytes(bytes(blob))
    with pytest.raises(CheckpointError, match=r"model\.safetensors: sha256 mismatch"):
        load_checkpoint(saved)


def test_tampered_card_is_refused(saved: Path) -> None:
    card_path = saved / "card.json"
    card = json.loads(card_path.read_text())
    card["architecture"] = "Transformer"
    card_path.write_text(json.dumps(card))
    with pytest.raises(CheckpointError, match=r"card\.json: unknown architecture 'Transformer'"):
        load_checkpoint(saved)
    card_path.write_text("{not json")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        load_checkpoint(saved)


def test_missing_tensor_is_refused_even_with_a_matching_checksum(saved: Path) -> None:
    from safetensors.torch import load_file

    from models.checkpoint import sha256_file

    tensors = load_file(str(saved / "model.safetensors"))
    del tensors["fc.bias"]
    save_file(tensors, str(saved / "model.safetensors"))
    card = json.loads((saved / "card.json").read_text())
    card["weights_sha256"] = sha256_file(saved / "model.safetensors")
    (saved / "card.json").write_text(json.dumps(card))
    with pytest.raises(CheckpointError, match=r"does not match the architecture.*fc\.bias"):
        load_checkpoint(saved)


def test_missing_files_are_named(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match=r"card\.json is missing"):
        load_checkpoint(tmp_path)
