"""``python -m training evaluate NAME``: re-measure a committed checkpoint on held-out data, with
the calibration error of its probabilities, raw and as served (calibrated by its card)."""

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from models import CharRNN
from models.calibration import Calibration
from models.checkpoint import load_checkpoint
from training.calibration import answer_metrics, expected_calibration_error
from training.char import CharLMRecipe, nats_per_char, split_text
from training.data import (
    checksums,
    load_mnist,
    load_shakespeare,
    mnist_paths,
    names_paths,
    shakespeare_paths,
)
from training.digits import digit_logits, digit_metrics
from training.names import name_logits, name_metrics, names_test_set
from training.walkthroughs import HELLO_INPUT, HELLO_TARGET, encode_hello


def evaluate(name: str, weights_dir: Path, data_dir: Path, device: torch.device) -> dict[str, Any]:
    """Metrics of ``weights_dir/name`` on the held-out data, with a check of the data checksums."""
    checkpoint = load_checkpoint(weights_dir / name, device)
    model, card = checkpoint.model, checkpoint.card
    result: dict[str, Any] = {"name": name}
    if name.startswith("digit-"):
        test = load_mnist(data_dir, "test")
        logits = digit_logits(model, test.images, device)  # N x 10
        metrics = digit_metrics(logits, test.labels)
        result |= {
            "test_accuracy": metrics["accuracy"],
            "test_loss": metrics["loss"],
            "test_examples": len(test.images),
            **calibration_metrics(checkpoint.calibration, logits, test.labels),
        }
        files = mnist_paths(data_dir)
    elif name == "name-gru":
        names, targets, seen = names_test_set(data_dir, card["labels"])
        logits = name_logits(model, names, device)  # N x 18
        metrics = name_metrics(F.softmax(logits, dim=1), targets, seen, len(card["labels"]))
        result |= {f"test_{k}": v for k, v in metrics.items()}
        result |= calibration_metrics(checkpoint.calibration, logits, targets, answers=True)
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


def calibration_metrics(
    calibration: Calibration, logits: torch.Tensor, targets: torch.Tensor, answers: bool = False
) -> dict[str, Any]:
    """ECE, right-versus-wrong AUROC and the share of answers on the most common top value of
    the raw softmax and of the calibrated probabilities the service answers with, and the
    largest of those; with ``answers``, also accuracy and balanced accuracy of both and how
    many first labels differ."""
    raw, served = F.softmax(logits.float(), dim=1), calibration.probabilities(logits)
    before, after = answer_metrics(raw, targets), answer_metrics(served, targets)
    out: dict[str, Any] = {
        "calibration": calibration.method,
        "test_ece": expected_calibration_error(raw, targets),
        "test_ece_calibrated": expected_calibration_error(served, targets),
        "test_auroc": before["auroc"],
        "test_auroc_calibrated": after["auroc"],
        "test_top_share": before["top_share"],
        "test_top_share_calibrated": after["top_share"],
        "test_max_probability_calibrated": float(served.max()),
    }
    if answers:
        classes = logits.shape[1]
        out |= {
            "test_accuracy_calibrated": float((served.argmax(1) == targets).double().mean()),
            "test_balanced_accuracy": balanced_accuracy(raw.argmax(1), targets, classes),
            "test_balanced_accuracy_calibrated": balanced_accuracy(
                served.argmax(1), targets, classes
            ),
            "test_answers_changed": int((served.argmax(1) != raw.argmax(1)).sum()),
        }
    return out


def balanced_accuracy(predicted: torch.Tensor, targets: torch.Tensor, classes: int) -> float:
    """The mean over the classes present of the share of that class answered right."""
    recalls = [
        float((predicted[targets == c] == c).double().mean())
        for c in range(classes)
        if bool((targets == c).any())
    ]
    return sum(recalls) / len(recalls)
