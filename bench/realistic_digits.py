"""Digit accuracy and preprocessing time on realistic uploads made from MNIST test digits.

The uploads come from ``bench.corpus`` (``--limit`` per kind, the same MNIST digits behind every
kind). Each is scored three ways by every digit checkpoint: ``plain`` (greyscale and a plain
resize to 28 x 28), ``naive`` (the 15-line MNIST-style recipe, ``bench.naive.naive_mnist``) and
``service`` (the service's pipeline: open_upload + decode, then to_grey + working_size +
to_mnist; an upload it refuses as holding no digit counts as wrong). Times are medians per
upload on one thread. The report is Markdown.

    python -m bench.realistic_digits [--limit N] [--kinds K ...] [--out FILE] [--failures DIR]
"""

import argparse
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image

from app.errors import NoDigitFound
from app.preprocessing.digits import to_mnist
from app.preprocessing.uploads import decode, open_upload, to_grey, working_size
from bench import corpus
from bench.naive import naive_mnist, plain_resize
from models.checkpoint import Checkpoint, load_checkpoint

WEIGHTS = Path(__file__).resolve().parent.parent / "weights"
MAX_PIXELS = 50_000_000
MAX_DECODED_BYTES = 1 << 30
METHODS = ("plain", "naive", "service")


@dataclass
class KindRun:
    """What one kind's uploads became, and how long the service's steps took on them."""

    kind: str
    labels: list[int] = field(default_factory=list)
    inputs: dict[str, list[np.ndarray]] = field(default_factory=lambda: {m: [] for m in METHODS})
    refused: list[bool] = field(default_factory=list)
    decode_s: list[float] = field(default_factory=list)
    preprocess_s: list[float] = field(default_factory=list)
    naive_s: list[float] = field(default_factory=list)
    megapixels: list[float] = field(default_factory=list)
    kilobytes: list[float] = field(default_factory=list)


def service(data: bytes) -> tuple[np.ndarray | None, int, float, float]:
    """The service's pipeline on one upload: the 28 x 28 input (None if refused as holding no
    digit), the decoded pixel count, and the seconds spent decoding and preprocessing."""
    start = time.perf_counter()
    upload = open_upload(data, max_pixels=MAX_PIXELS, max_decoded_bytes=MAX_DECODED_BYTES)
    pixels = decode(upload)
    decoded = time.perf_counter()
    try:
        x: np.ndarray | None = to_mnist(working_size(to_grey(pixels)))
    except NoDigitFound:
        x = None
    done = time.perf_counter()
    return x, upload.width * upload.height, decoded - start, done - decoded


def run_kind(kind: str, n: int, seed: int) -> KindRun:
    """Generate ``n`` uploads of a kind one at a time and put each through the three methods."""
    result = KindRun(kind)
    for i in range(n):
        s = corpus.sample(kind, i, seed)
        x, pixels, decode_s, preprocess_s = service(s.data)
        start = time.perf_counter()
        naive = naive_mnist(s.data)
        result.naive_s.append(time.perf_counter() - start)
        result.labels.append(s.label)
        result.inputs["plain"].append(plain_resize(s.data))
        result.inputs["naive"].append(naive)
        result.inputs["service"].append(np.zeros((28, 28), np.float32) if x is None else x)
        result.refused.append(x is None)
        result.decode_s.append(decode_s)
        result.preprocess_s.append(preprocess_s)
        result.megapixels.append(pixels / 1e6)
        result.kilobytes.append(len(s.data) / 1e3)
    return result


def predict(checkpoint: Checkpoint, arrays: np.ndarray) -> np.ndarray:
    """Predicted labels for N x 28 x 28 arrays in [0, 1], normalised as the card says."""
    pre = checkpoint.card["preprocessing"]
    x = (torch.from_numpy(arrays).float().unsqueeze(1) - pre["mean"]) / pre["std"]
    with torch.inference_mode():
        return torch.cat([checkpoint.model(b).argmax(1) for b in x.split(500)]).numpy()


def _pct(hits: np.ndarray) -> str:
    return f"{100 * float(hits.mean()):.1f} %"


def _ms(seconds: list[float]) -> str:
    return f"{1000 * float(np.median(seconds)):.2f}"


def report(
    runs: list[KindRun],
    preds: dict[str, dict[str, dict[str, np.ndarray]]],
    reference: dict[str, float],
    seed: int,
) -> str:
    """The Markdown report: accuracy by kind, model and method; then the times by kind."""
    names = list(reference)
    n = len(runs[0].labels)
    head = " | ".join(f"{name} {m}" for name in names for m in METHODS)
    out = [
        f"## Accuracy on realistic uploads ({n} per kind from MNIST test digits, seed {seed})",
        "",
        f"| kind | n | refused | {head} |",
        "|---|---:|---:|" + "---:|" * len(names) * len(METHODS),
    ]
    for run in runs:
        truth = np.array(run.labels)
        cells = [_pct(preds[run.kind][name][m] == truth) for name in names for m in METHODS]
        row = [run.kind, str(len(truth)), str(sum(run.refused)), *cells]
        out.append("| " + " | ".join(row) + " |")
    raw = ", ".join(f"{name} {100 * acc:.1f} %" for name, acc in reference.items())
    out += [
        "",
        f"The same {n} digits as raw MNIST tensors: {raw}. `refused`: uploads the service "
        "answered 422 no digit found (counted as wrong).",
        "",
        "## Time per upload (median, one thread; milliseconds)",
        "",
        "| kind | kpx | kB | decode | preprocess | service total | naive_mnist |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for run in runs:
        total = [a + b for a, b in zip(run.decode_s, run.preprocess_s, strict=True)]
        kpx, kb = 1000 * np.median(run.megapixels), np.median(run.kilobytes)
        out.append(
            f"| {run.kind} | {kpx:,.1f} | {kb:,.1f} "
            f"| {_ms(run.decode_s)} | {_ms(run.preprocess_s)} | {_ms(total)} "
            f"| {_ms(run.naive_s)} |"
        )
    out += [
        "",
        "decode: open_upload + decode; preprocess: to_grey + working_size + to_mnist; "
        "kpx and kB: median pixels (thousands) and file size.",
    ]
    return "\n".join(out) + "\n"


def write_failures(
    directory: Path,
    run: KindRun,
    preds: dict[str, dict[str, np.ndarray]],
    raw_right: dict[str, np.ndarray],
    seed: int,
    most: int,
) -> int:
    """Write up to ``most`` uploads the service's pipeline got wrong for a model that gets the
    same digit right as a raw MNIST tensor, beside the 28 x 28 input the pipeline made of them
    (shown 8x, nearest-neighbour); returns how many such uploads there were."""
    truth = np.array(run.labels)
    wrong = np.zeros(len(truth), dtype=bool)
    for name, by_method in preds.items():
        wrong |= (by_method["service"] != truth) & raw_right[name][: len(truth)]
    directory.mkdir(parents=True, exist_ok=True)
    for i in np.flatnonzero(wrong)[:most].tolist():
        s = corpus.sample(run.kind, i, seed)
        guesses = "-".join(
            f"{name.removeprefix('digit-')}{'x' if run.refused[i] else int(p['service'][i])}"
            for name, p in preds.items()
        )
        stem = f"{run.kind}-{i:03d}-true{s.label}-{guesses}"
        (directory / f"{stem}-upload.{s.ext}").write_bytes(s.data)
        x = np.round(run.inputs["service"][i] * 255).astype(np.uint8)
        Image.fromarray(x).resize((224, 224), Image.Resampling.NEAREST).save(
            directory / f"{stem}-28x28.png"
        )
    return int(wrong.sum())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=500, help="uploads per kind")
    parser.add_argument("--kinds", nargs="+", choices=corpus.KINDS, default=list(corpus.KINDS))
    parser.add_argument("--seed", type=int, default=corpus.SEED)
    parser.add_argument("--out", type=Path, help="also write the Markdown report here")
    parser.add_argument("--failures", type=Path, help="write failed uploads and inputs here")
    parser.add_argument("--failures-per-kind", type=int, default=6)
    args = parser.parse_args()
    cv2.setNumThreads(1)
    torch.set_num_threads(1)
    checkpoints = {p.name: load_checkpoint(p, torch.device("cpu")) for p in WEIGHTS.glob("digit-*")}
    checkpoints = dict(sorted(checkpoints.items()))
    raw = np.stack([corpus.digit(i, args.seed)[0] for i in range(args.limit)])
    labels = np.array([corpus.digit(i, args.seed)[1] for i in range(args.limit)])
    raw_right = {
        name: predict(c, raw.astype(np.float32) / 255) == labels for name, c in checkpoints.items()
    }
    reference = {name: float(right.mean()) for name, right in raw_right.items()}
    runs, preds = [], {}
    for kind in args.kinds:
        start = time.perf_counter()
        run = run_kind(kind, args.limit, args.seed)
        runs.append(run)
        preds[kind] = {
            name: {m: predict(c, np.stack(run.inputs[m])) for m in METHODS}
            for name, c in checkpoints.items()
        }
        note = f"{kind}: {time.perf_counter() - start:.0f} s"
        if args.failures:
            wrong = write_failures(
                args.failures, run, preds[kind], raw_right, args.seed, args.failures_per_kind
            )
            note += f", {wrong} wrong for a model that gets the raw digit right"
        print(note, file=sys.stderr, flush=True)
    text = report(runs, preds, reference, args.seed)
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
