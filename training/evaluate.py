"""``python -m training evaluate NAME``: re-measure a committed checkpoint on held-out data."""

from pathlib import Path
from typing import Any

import torch

from models import CharRNN
from models.checkpoint import load_checkpoint
from training.char import CharLMRecipe, nats_per_char, split_text
from training.data import (
    checksums,
    load_mnist,
    load_shakespeare,
    mnist_paths,
    names_paths,
    shakespeare_paths,
)
from training.digits import evaluate_digits
from training.names import evaluate_names
from training.walkthroughs import HELLO_INPUT, HELLO_TARGET, encode_hello


def evaluate(name: str, weights_dir: Path, data_dir: Path, device: torch.device) -> dict[str, Any]:
    """Metrics of ``weights_dir/name`` on the held-out data, with a check of the data checksums."""
    checkpoint = load_checkpoint(weights_dir / name, device)
    model, card = checkpoint.model, checkpoint.card
    result: dict[str, Any] = {"name": name}
    if name.startswith("digit-"):
        test = load_mnist(data_dir, "test")
        metrics = evaluate_digits(model, test.images, test.labels, device)
        result |= {
            "test_accuracy": metrics["accuracy"],
            "test_loss": metrics["loss"],
            "test_examples": len(test.images),
        }
        files = mnist_paths(data_dir)
    elif name == "name-gru":
        metrics = evaluate_names(model, card["labels"], data_dir, device)
        result |= {f"test_{k}": v for k, v in metrics.items()}
        files = names_paths(data_dir)
    elif name == "char-rnn-shakespeare":
        assert isinstance(model, CharRNN)
        text = load_shakespeare(data_dir)
        lookup = {c: i for i, c in enumerate(card["vocabulary"])}
        _, _, test_text = split_text(text, CharLMRecipe(**card["hyperparameters"]))
        ids = torch.tensor([lookup[c] for c in test_text])
        result |= {"test_nats_per_char": nats_per_char(model, ids, device), "test_chars": len(ids)}
        files = shakespeare_paths(data_dir)
    else:
        with torch.inference_mode():
            logits, _ = model(encode_hello(HELLO_INPUT).unsqueeze(0).to(device))
        predicted = "".join(card["vocabulary"][i] for i in logits[0].argmax(1).tolist())
        return result | {"predicted": predicted, "exact_match": predicted == HELLO_TARGET}
    result["data_matches_card"] = checksums(files) == card["data"]["sha256"]
    result["card_metrics"] = card["metrics"]
    return result
