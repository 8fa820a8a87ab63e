"""``python -m bench.calibration``: how well the served probabilities match accuracy, measured
through the API, in one process.

The 10,000 MNIST test digits go to ``POST /digit`` as PNGs (the service's MNIST-form path),
once per digit net, and the 6,700 rows of names_test to ``POST /classify-name/batch``; the
answers' ``probability`` (the first label's) against whether that label is right gives the
expected calibration error (15 equal-width bins, ``training.calibration``). Each is measured
twice: with the committed cards (calibrated where the card has a ``calibration`` entry) and with
the same checkpoints whose cards have that entry removed (the plain softmax), which also shows
how many first answers the calibration changed.
"""

import argparse
import asyncio
import io
import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import httpx
import torch
from PIL import Image

from app.errors import ServiceError
from app.main import create_app
from app.services.names import fold_name
from app.settings import Settings
from models.calibration import CARD_KEY
from models.checkpoint import CARD_FILE, write_card
from training.calibration import top_label_ece
from training.data import default_data_dir, load_mnist, load_names

ROOT = Path(__file__).resolve().parent.parent
DIGIT_NETS = ("digit-inception", "digit-resnet")
CLASSIFIERS = (*DIGIT_NETS, "name-gru")
CONCURRENCY = 64
NAMES_PER_REQUEST = 256


@dataclass
class Answers:
    """The first label and its probability for each example, and whether it is right."""

    labels: list[str]
    probabilities: list[float]
    correct: list[bool]

    def ece(self) -> float:
        return top_label_ece(torch.tensor(self.probabilities), torch.tensor(self.correct))

    def accuracy(self) -> float:
        return sum(self.correct) / len(self.correct)


def png(pixels: torch.Tensor) -> bytes:
    out = io.BytesIO()
    Image.fromarray(pixels.numpy()).save(out, format="PNG")
    return out.getvalue()


async def digits(
    client: httpx.AsyncClient, model: str, blobs: list[bytes], truth: list[int]
) -> Answers:
    async def one(blob: bytes) -> tuple[str, float]:
        response = await client.post(
            "/digit",
            params={"model": model, "top_k": 1, "answer_anyway": "true"},  # every guess
            files={"file": ("d.png", blob, "image/png")},
        )
        response.raise_for_status()
        best = response.json()["predictions"][0]
        return best["label"], best["probability"]

    answers: list[tuple[str, float]] = []
    for start in range(0, len(blobs), CONCURRENCY):
        answers += await asyncio.gather(*(one(b) for b in blobs[start : start + CONCURRENCY]))
    labels = [label for label, _ in answers]
    return Answers(
        labels, [p for _, p in answers], [int(a) == t for a, t in zip(labels, truth, strict=True)]
    )


async def names(client: httpx.AsyncClient, rows: list[tuple[str, str]]) -> Answers:
    labels: list[str] = []
    probabilities: list[float] = []
    for start in range(0, len(rows), NAMES_PER_REQUEST):
        chunk = [name for name, _ in rows[start : start + NAMES_PER_REQUEST]]
        response = await client.post("/classify-name/batch", json={"names": chunk, "top_k": 1})
        response.raise_for_status()
        for result in response.json()["results"]:
            labels.append(result["predictions"][0]["label"])
            probabilities.append(result["predictions"][0]["probability"])
    correct = [a == country for a, (_, country) in zip(labels, rows, strict=True)]
    return Answers(labels, probabilities, correct)


async def measure(weights: Path, data_dir: Path) -> dict[str, Answers]:
    """Every classifier's answers on its test set, through the API on ``weights``."""
    test = load_mnist(data_dir, "test")
    blobs, truth = [png(image) for image in test.images], test.labels.tolist()
    rows = []
    for name, country in load_names(data_dir, "test"):
        try:
            fold_name(name)
        except ServiceError:
            continue  # the API refuses it (422): no answer to measure
        rows.append((name, country))
    app = create_app(Settings(weights_dir=weights, log_level="WARNING"))
    out = {}
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
            for model in DIGIT_NETS:
                out[model] = await digits(client, model, blobs, truth)
            out["name-gru"] = await names(client, rows)
    return out


def without_calibration(source: Path, target: Path) -> None:
    """Copy the classifiers' checkpoints, their cards' calibration entries removed."""
    for model in CLASSIFIERS:
        shutil.copytree(source / model, target / model)
        card = json.loads((target / model / CARD_FILE).read_text())
        card.pop(CARD_KEY, None)
        write_card(target / model, card)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.calibration", description=__doc__)
    parser.add_argument("--weights", type=Path, default=ROOT / "weights")
    parser.add_argument("--data-dir", type=Path, default=None)
    args = parser.parse_args()
    data_dir = args.data_dir or default_data_dir()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory(prefix="bench-calibration-") as tmp:
        served = Path(tmp) / "served"
        raw = Path(tmp) / "softmax"
        for model in CLASSIFIERS:
            shutil.copytree(args.weights / model, served / model)
        without_calibration(args.weights, raw)
        calibrated = asyncio.run(measure(served, data_dir))
        plain = asyncio.run(measure(raw, data_dir))
    columns = ("calibration", "examples", "accuracy", "ECE, softmax", "ECE, served", "changed")
    print(f"| model | {' | '.join(columns)} |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
    for model in CLASSIFIERS:
        card = json.loads((args.weights / model / CARD_FILE).read_text())
        method = card.get(CARD_KEY, {}).get("method", "none")
        after, before = calibrated[model], plain[model]
        changed = sum(a != b for a, b in zip(after.labels, before.labels, strict=True))
        print(
            f"| `{model}` | {method} | {len(after.correct):,} | {after.accuracy():.2%} "
            f"| {before.ece():.2%} | {after.ece():.2%} | {changed} |"
        )


if __name__ == "__main__":
    main()
