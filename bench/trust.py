"""How far the classifiers' answers can be trusted, measured on the service's own path.

For each digit checkpoint: the MNIST test digits posted as PNGs and as 200 px JPEGs (dark on
white, ``bench.corpus``'s ``jpeg``), the realistic suite
(``bench.corpus``) and uploads that are not digits (``bench.nondigits``), each through the
service's open, decode, preprocess and calibrated ``predict_batch``, then its abstention rule
(``app.services.digits.doubt``). Reported: accuracy (an upload refused counts as wrong), expected
calibration error (15 bins on the top probability, answered uploads), how many are refused,
and how many non-digits are answered as a digit with probability >= 0.9. For name-gru: accuracy,
balanced accuracy and calibration error on names_test through ``NameNet``. The report is
Markdown.

    python -m bench.trust [--limit N] [--nondigits N] [--weights DIR] [--out FILE]
"""

import argparse
import io
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image

from app.errors import NoDigitFound
from app.services.digits import DigitNet, Limits, Pipeline
from app.services.names import NameNet
from bench import corpus, nondigits
from models.checkpoint import load_checkpoint
from models.text import normalize_name
from training.calibration import expected_calibration_error
from training.data import default_data_dir, load_mnist, load_names

WEIGHTS = Path(__file__).resolve().parent.parent / "weights"
PIPELINE = Pipeline(Limits(max_pixels=50_000_000, max_decoded_bytes=1 << 30))
CONFIDENT = 0.9
KINDS = ("scan-thick", "scan-crop", "canvas", "photo", "old-scan", "old-canvas-dark", "old-tiny")


def png(digit: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(digit).save(buffer, "PNG")
    return buffer.getvalue()


def prepared(pipeline: Pipeline, uploads: Sequence[bytes]) -> tuple[np.ndarray, np.ndarray]:
    """The 28 x 28 inputs of the uploads, and which ones the preprocessing refused."""
    inputs, refused = [], []
    for data in uploads:
        try:
            inputs.append(pipeline.prepare(pipeline.open(data)))
            refused.append(False)
        except NoDigitFound:
            inputs.append(np.zeros((28, 28), np.float32))
            refused.append(True)
    return np.stack(inputs), np.array(refused)


def answers(service: DigitNet, inputs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Calibrated probabilities (N x 10) and whether the net abstains, in batches of 256."""
    probs: list[list[float]] = []
    abstain: list[bool] = []
    for start in range(0, len(inputs), 256):
        p, a = service.score_batch(list(inputs[start : start + 256]))
        probs += p
        abstain += a
    return np.array(probs), np.array(abstain)


def digit_row(
    name: str, what: str, probs: np.ndarray, labels: np.ndarray, refused: np.ndarray
) -> str:
    right = (probs.argmax(1) == labels) & ~refused
    answered = ~refused
    ece = expected_calibration_error(
        torch.from_numpy(probs[answered]), torch.from_numpy(labels[answered])
    )
    return (
        f"| {name} | {what} | {len(labels)} | {right.mean():.2%} | {refused.mean():.2%} "
        f"| {ece:.2%} |"
    )


def digits_report(weights: Path, limit: int, n_nondigits: int) -> list[str]:
    lines = [
        "| model | uploads | n | accuracy (refused = wrong) | refused | ECE (answered) |",
        "|---|---|---:|---:|---:|---:|",
    ]
    odd_lines = [
        "",
        "| model | non-digits | refused by preprocessing | refused by the net "
        f"| answered with p >= {CONFIDENT} | of which |",
        "|---|---:|---:|---:|---:|---|",
    ]
    test = load_mnist(default_data_dir(), "test")
    mnist_uploads = [png(d) for d in test.images.numpy()]
    mnist_labels = test.labels.numpy()
    suite = {kind: corpus.build(kind, limit) for kind in KINDS}
    jpegs = corpus.build("jpeg", limit)
    odd = nondigits.build(n_nondigits)
    for path in sorted(weights.glob("digit-*")):
        service = DigitNet(load_checkpoint(path, torch.device("cpu")), torch.device("cpu"))
        x, pre = prepared(PIPELINE, mnist_uploads)
        probs, doubt = answers(service, x)
        lines.append(digit_row(service.name, "MNIST test PNGs", probs, mnist_labels, pre | doubt))
        x, pre = prepared(PIPELINE, [s.data for s in jpegs])
        probs, doubt = answers(service, x)
        labels = np.array([s.label for s in jpegs])
        lines.append(
            digit_row(service.name, "200 px JPEGs, dark on white", probs, labels, pre | doubt)
        )
        suite_right = []
        for kind, samples in suite.items():
            x, pre = prepared(PIPELINE, [s.data for s in samples])
            probs, doubt = answers(service, x)
            labels = np.array([s.label for s in samples])
            lines.append(digit_row(service.name, kind, probs, labels, pre | doubt))
            suite_right.append(((probs.argmax(1) == labels) & ~pre & ~doubt).mean())
        lines.append(
            f"| {service.name} | realistic suite, mean of kinds | "
            f"| {np.mean(suite_right):.2%} | | |"
        )
        x, pre = prepared(PIPELINE, [s.data for s in odd])
        probs, doubt = answers(service, x)
        confident = ~pre & ~doubt & (probs.max(1) >= CONFIDENT)
        kinds = Counter(s.content for s, c in zip(odd, confident, strict=True) if c)
        odd_lines.append(
            f"| {service.name} | {len(odd)} | {pre.mean():.1%} | {(doubt & ~pre).mean():.1%} "
            f"| **{confident.mean():.1%}** "
            f"| {', '.join(f'{k} {v}' for k, v in kinds.most_common())} |"
        )
    return lines + odd_lines


def names_report(weights: Path) -> list[str]:
    checkpoint = load_checkpoint(weights / "name-gru", torch.device("cpu"))
    classifier = NameNet(checkpoint, torch.device("cpu"))
    rows = load_names(default_data_dir(), "test")
    names, countries = [n for n, _ in rows], [c for _, c in rows]
    index = {c: i for i, c in enumerate(classifier.labels)}
    folded = [normalize_name(n) for n in names]
    probs = np.array(
        [
            p
            for start in range(0, len(folded), 512)
            for p in classifier.predict_batch(folded[start : start + 512])
        ]
    )
    labels = np.array([index[c] for c in countries])
    right = probs.argmax(1) == labels
    balanced = np.mean([right[labels == c].mean() for c in np.unique(labels)])
    ece = expected_calibration_error(torch.from_numpy(probs), torch.from_numpy(labels))
    return [
        "",
        "| model | names | accuracy | balanced accuracy | ECE |",
        "|---|---:|---:|---:|---:|",
        f"| name-gru | {len(names)} | {right.mean():.2%} | {balanced:.2%} | {ece:.2%} |",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=300, help="uploads per realistic kind")
    parser.add_argument("--nondigits", type=int, default=1500)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--weights", type=Path, default=WEIGHTS, help="default: weights/")
    args = parser.parse_args()
    cv2.setNumThreads(1)
    torch.set_num_threads(1)
    start = time.perf_counter()
    text = "\n".join(
        [*digits_report(args.weights, args.limit, args.nondigits), *names_report(args.weights)]
    )
    text += f"\n\n{time.perf_counter() - start:.0f} s on one thread.\n"
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
