"""Digit accuracy on realistic uploads made from MNIST test digits, before and after preprocessing.

Each MNIST test digit in a stratified, seeded sample becomes one image imitating a real user:
pen on paper photographed by a phone (JPEG, uneven light, texture, off-centre), greyscale scans,
canvas drawings (light on dark, dark on transparent) and tiny thumbnails. "before" is a naive
baseline (greyscale, plain resize to 28 x 28); "after" is ``decode_image`` + ``to_mnist``.

    python -m bench.realistic_digits [--limit N] [--out FILE] [--examples DIR]
"""

import argparse
import contextlib
import io
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from app.imaging import decode_image, to_mnist, to_png
from PIL import Image, ImageDraw, ImageFilter

from app.errors import NoDigitFound
from models.checkpoint import Checkpoint, load_checkpoint
from training.data import default_data_dir, load_mnist

WEIGHTS = Path(__file__).resolve().parent.parent / "weights"
KINDS = {"photo": 0.5, "scan": 0.1, "canvas-dark": 0.12, "canvas-clear": 0.12, "tiny": 0.16}
SEED = 20240611


@dataclass
class Sample:
    """One encoded upload and its true label."""

    kind: str
    label: int
    data: bytes


def _skeleton(mask: np.ndarray) -> np.ndarray:
    """Zhang-Suen thinning of a boolean image to one-pixel-wide centre lines."""
    img = mask.copy()
    changed = True
    while changed:
        changed = False
        for step in (0, 1):
            p = np.pad(img, 1).astype(np.uint8)
            h, w = img.shape
            n = [
                p[dy : dy + h, dx : dx + w]
                for dy, dx in ((0, 1), (0, 2), (1, 2), (2, 2), (2, 1), (2, 0), (1, 0), (0, 0))
            ]  # P2..P9
            count = sum(n, np.zeros_like(n[0]))
            turns = sum(((n[i] == 0) & (n[(i + 1) % 8] == 1)).astype(np.uint8) for i in range(8))
            a, b = (
                (n[0] * n[2] * n[4], n[2] * n[4] * n[6])
                if step == 0
                else (n[0] * n[2] * n[6], n[0] * n[4] * n[6])
            )
            kill = img & (count >= 2) & (count <= 6) & (turns == 1) & (a == 0) & (b == 0)
            if kill.any():
                img &= ~kill
                changed = True
    return img


def _strokes(digit: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """An MNIST digit redrawn at ``size`` px with a pen of random width, slightly rotated."""
    up = np.asarray(Image.fromarray(digit).resize((112, 112), Image.Resampling.BICUBIC))
    centre = _skeleton(up > 100)
    pen = size * float(rng.choice([0.02, 0.04, 0.07, 0.07, 0.1, 0.14, 0.18]))
    pen = max(pen, 1.5)
    scale = 2 * size / 112
    canvas = Image.new("L", (2 * size, 2 * size), 0)
    draw = ImageDraw.Draw(canvas)
    r = pen  # twice the radius in the 2x canvas
    ys, xs = np.nonzero(centre)
    on = set(zip(ys.tolist(), xs.tolist(), strict=True))
    for y, x in on:
        cy, cx = (y + 0.5) * scale, (x + 0.5) * scale
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=255)
        for dy, dx in ((0, 1), (1, 0), (1, 1), (1, -1)):
            if (y + dy, x + dx) in on:
                end = ((x + dx + 0.5) * scale, (y + dy + 0.5) * scale)
                draw.line(((cx, cy), end), fill=255, width=max(1, round(2 * r)))
    ink = canvas.reduce(2)
    angle = float(rng.uniform(-10, 10))
    ink = ink.rotate(angle, Image.Resampling.BICUBIC, expand=True, fillcolor=0)
    return np.asarray(ink, dtype=np.float32) / 255  # h x w


def _place(ink: np.ndarray, rng: np.random.Generator, lo: float, hi: float) -> np.ndarray:
    """The strokes on a larger transparent sheet with random, unequal margins."""
    h, w = ink.shape
    s = max(h, w)
    top, bottom, left, right = (int(rng.uniform(lo, hi) * s) for _ in range(4))
    sheet = np.zeros((h + top + bottom, w + left + right), dtype=np.float32)
    sheet[top : top + h, left : left + w] = ink
    return sheet


def _lighting(shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """A multiplicative light field: a linear fall-off and a soft shadow."""
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    theta = rng.uniform(0, 2 * math.pi)
    ramp = (np.cos(theta) * xx / w + np.sin(theta) * yy / h) + 1
    light = 1 - rng.uniform(0, 0.3) * ramp / 2
    shadow = Image.new("L", (w, h), 0)
    cx, cy, r = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(0.3, 0.8) * max(h, w)
    ImageDraw.Draw(shadow).ellipse((cx - r, cy - r, cx + r, cy + r), fill=255)
    shadow = shadow.filter(ImageFilter.BoxBlur(max(h, w) / 6))
    field: np.ndarray = light * (1 - rng.uniform(0, 0.35) * np.asarray(shadow, np.float32) / 255)
    return field


def _texture(shape: tuple[int, int], rng: np.random.Generator, amount: float) -> np.ndarray:
    """Paper grain and blotches, zero mean, in 0..1 units."""
    h, w = shape
    blotch = Image.fromarray(rng.normal(0, 1, (6, 6)).astype(np.float32))
    blotch_arr = np.asarray(blotch.resize((w, h), Image.Resampling.BICUBIC))
    return (rng.normal(0, amount, (h, w)) + 0.01 * blotch_arr).astype(np.float32)


def _encode(image: Image.Image, fmt: str, **params: object) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format=fmt, **params)
    return buf.getvalue()


def _photo(digit: np.ndarray, rng: np.random.Generator) -> bytes:
    """Pen on paper photographed by a phone: colour JPEG, uneven light, sometimes EXIF-rotated."""
    size = int(math.exp(rng.uniform(math.log(50), math.log(500))))
    a = _place(_strokes(digit, size, rng), rng, 0.1, 1.2)
    paper = np.array(rng.choice([[250, 250, 248], [245, 238, 215], [235, 235, 240]]), np.float32)
    pen = np.array(
        rng.choice([[25, 25, 30], [30, 45, 150], [60, 60, 70], [20, 30, 90]]), np.float32
    )
    opacity = rng.uniform(0.75, 1.0)
    rgb = paper * (1 - opacity * a[..., None]) + pen * opacity * a[..., None]  # h x w x 3
    rgb = rgb * (1 + _texture(a.shape, rng, rng.uniform(0.01, 0.04)))[..., None]
    rgb = rgb * _lighting(a.shape, rng)[..., None]
    if rng.random() < 0.2:
        edge, width = int(rng.integers(4)), int(rng.integers(2, 7))
        view = np.rot90(rgb, edge)
        view[:width] = view[:width] * 0.35
    image = Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8))
    image = image.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.2)))
    quality = int(rng.integers(35, 96))
    if rng.random() < 0.2:
        exif = Image.Exif()
        exif[0x0112] = 6
        rotated = image.transpose(Image.Transpose.ROTATE_90)
        return _encode(rotated, "JPEG", quality=quality, exif=exif.tobytes())
    return _encode(image, "JPEG", quality=quality)


def _scan(digit: np.ndarray, rng: np.random.Generator) -> bytes:
    """A greyscale scan: mostly dark on white, sometimes inverted, light noise, PNG."""
    size = int(rng.integers(60, 300))
    a = _place(_strokes(digit, size, rng), rng, 0.1, 0.8)
    grey = 245 - 215 * a + rng.normal(0, 3, a.shape)
    if rng.random() < 0.3:
        grey = 255 - grey
    return _encode(Image.fromarray(np.clip(grey, 0, 255).astype(np.uint8)), "PNG")


def _canvas_dark(digit: np.ndarray, rng: np.random.Generator) -> bytes:
    """A web canvas drawing: light strokes on a dark background, RGB PNG."""
    size = int(rng.integers(100, 260))
    a = _place(_strokes(digit, size, rng), rng, 0.05, 0.5)
    back = np.array(rng.choice([[0, 0, 0], [30, 30, 35], [10, 20, 60]]), np.float32)
    pen = np.array(rng.choice([[255, 255, 255], [250, 230, 80], [140, 200, 255]]), np.float32)
    rgb = back * (1 - a[..., None]) + pen * a[..., None]
    return _encode(Image.fromarray(rgb.astype(np.uint8)), "PNG")


def _canvas_clear(digit: np.ndarray, rng: np.random.Generator) -> bytes:
    """A canvas drawing exported with transparency: dark strokes, transparent black elsewhere."""
    size = int(rng.integers(100, 260))
    a = _place(_strokes(digit, size, rng), rng, 0.05, 0.5)
    pen = np.array(rng.choice([[0, 0, 0], [20, 20, 120], [40, 40, 40]]), np.float32)
    rgba = np.zeros((*a.shape, 4), dtype=np.uint8)  # h x w x 4
    rgba[..., :3] = np.where(a[..., None] > 0, pen, 0).astype(np.uint8)
    rgba[..., 3] = np.round(a * 255).astype(np.uint8)
    return _encode(Image.fromarray(rgba), "PNG")


def _tiny(digit: np.ndarray, rng: np.random.Generator) -> bytes:
    """A thumbnail of 28 to 40 px, either polarity, PNG or JPEG."""
    side = int(rng.integers(28, 41))
    ink = Image.fromarray(digit).resize((int(side * rng.uniform(0.55, 0.85)),) * 2)
    ink = ink.rotate(float(rng.uniform(-10, 10)), Image.Resampling.BICUBIC, expand=True)
    sheet = np.zeros((side, side), dtype=np.float32)
    h, w = min(ink.height, side), min(ink.width, side)
    y, x = int(rng.integers(0, side - h + 1)), int(rng.integers(0, side - w + 1))
    sheet[y : y + h, x : x + w] = np.asarray(ink, dtype=np.float32)[:h, :w] / 255
    grey = 240 - 210 * sheet + rng.normal(0, 4, sheet.shape)
    if rng.random() < 0.4:
        grey = 255 - grey
    image = Image.fromarray(np.clip(grey, 0, 255).astype(np.uint8)).convert("RGB")
    if rng.random() < 0.5:
        return _encode(image, "JPEG", quality=int(rng.integers(70, 96)))
    return _encode(image, "PNG")


RENDER: dict[str, Callable[[np.ndarray, np.random.Generator], bytes]] = {
    "photo": _photo,
    "scan": _scan,
    "canvas-dark": _canvas_dark,
    "canvas-clear": _canvas_clear,
    "tiny": _tiny,
}


def build_suite(images: np.ndarray, labels: np.ndarray, n: int) -> list[Sample]:
    """``n`` uploads, stratified by label and kind, the same on every run."""
    rng = np.random.default_rng(SEED)
    order = rng.permutation(len(labels))
    by_label = [order[labels[order] == d] for d in range(10)]
    kinds = [k for k, share in KINDS.items() for _ in range(math.ceil(share * n))][:n]
    kinds = [kinds[i] for i in rng.permutation(len(kinds))]
    suite = []
    for i, kind in enumerate(kinds):
        label = i % 10
        index = int(by_label[label][i // 10])
        suite.append(Sample(kind, label, RENDER[kind](images[index], rng)))
    return suite


def naive(data: bytes) -> np.ndarray:
    """The baseline: greyscale and a plain resize to 28 x 28, nothing else."""
    image = Image.open(io.BytesIO(data)).convert("L").resize((28, 28), Image.Resampling.BILINEAR)
    return np.asarray(image, dtype=np.float32) / 255


def predict(checkpoint: Checkpoint, arrays: np.ndarray) -> np.ndarray:
    """Predicted labels for N x 28 x 28 arrays in [0, 1]."""
    pre = checkpoint.card["preprocessing"]
    x = (torch.from_numpy(arrays).float().unsqueeze(1) - pre["mean"]) / pre["std"]
    with torch.inference_mode():
        return torch.cat([checkpoint.model(b).argmax(1) for b in x.split(500)]).numpy()


def _prepare(datas: list[bytes]) -> np.ndarray:
    """decode_image + to_mnist for each upload; an upload refused as holding no digit becomes
    an empty field (and so, almost surely, a wrong answer)."""
    out = np.zeros((len(datas), 28, 28), dtype=np.float32)
    for i, data in enumerate(datas):
        with contextlib.suppress(NoDigitFound):
            out[i] = to_mnist(decode_image(data))
    return out


def _jpeg_200(digit: np.ndarray) -> bytes:
    """An MNIST digit as a 200 px dark-on-white RGB JPEG."""
    image = Image.fromarray(255 - digit).resize((200, 200), Image.Resampling.BICUBIC)
    return _encode(image.convert("RGB"), "JPEG", quality=90)


def _timing(digit: np.ndarray) -> list[str]:
    """Median wall time of the preprocessing on a 4000 x 3000 phone photo and a 28 x 28 digit."""
    rng = np.random.default_rng(1)
    page = Image.new("L", (4000, 3000), 232)
    strokes = ImageDraw.Draw(page)
    strokes.line([(1500, 900), (2300, 900), (1800, 2200)], fill=40, width=9, joint="curve")
    noisy = np.asarray(page, np.float32) + rng.normal(0, 4, (3000, 4000))
    photo = Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8)).convert("RGB")
    jpeg = _encode(photo, "JPEG", quality=85)
    full = Image.open(io.BytesIO(jpeg))
    full.load()
    small = decode_image(_encode(Image.fromarray(digit), "PNG"))
    cases: list[tuple[str, Callable[[], object]]] = [
        ("to_mnist, 4000 x 3000 RGB photo, fully decoded", lambda: to_mnist(full)),
        ("decode_image + to_mnist, 4000 x 3000 JPEG bytes", lambda: to_mnist(decode_image(jpeg))),
        ("to_mnist, 28 x 28 MNIST digit", lambda: to_mnist(small)),
    ]
    lines = []
    for name, fn in cases:
        times = []
        for _ in range(7):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
        lines.append(f"| {name} | {1000 * float(np.median(times)):.1f} ms |")
    return lines


def _accuracy(predicted: np.ndarray, truth: np.ndarray) -> str:
    return f"{100 * float((predicted == truth).mean()):.1f} %"


def run(limit: int, examples: Path | None) -> str:
    """Build the suites, run every digit model present, return the markdown report."""
    test = load_mnist(default_data_dir(), "test")
    images, labels = test.images.numpy(), test.labels.numpy()
    checkpoints = {p.name: load_checkpoint(p) for p in sorted(WEIGHTS.glob("digit-*"))}
    suite = build_suite(images, labels, limit)
    truth = np.array([s.label for s in suite])
    kinds = np.array([s.kind for s in suite])
    before = np.stack([naive(s.data) for s in suite])
    start = time.perf_counter()
    after = _prepare([s.data for s in suite])
    per_image = 1000 * (time.perf_counter() - start) / len(suite)
    if examples:
        examples.mkdir(parents=True, exist_ok=True)
        for i, s in enumerate(suite[:40]):
            fmt = str(Image.open(io.BytesIO(s.data)).format).lower()
            (examples / f"{i:03d}-{s.kind}-{s.label}-upload.{fmt}").write_bytes(s.data)
            (examples / f"{i:03d}-{s.kind}-{s.label}.png").write_bytes(to_png(after[i]))
    names = list(checkpoints)
    head = " | ".join(f"{n} before | {n} after" for n in names)
    out = [
        f"## Realistic uploads ({len(suite)} MNIST test digits, seed {SEED})",
        "",
        f"| kind | n | {head} |",
        "|---|---:|" + "---:|---:|" * len(names),
    ]
    preds = {n: (predict(c, before), predict(c, after)) for n, c in checkpoints.items()}
    for kind in [*KINDS, "all"]:
        sel = np.ones(len(suite), bool) if kind == "all" else kinds == kind
        cells = " | ".join(
            f"{_accuracy(b[sel], truth[sel])} | {_accuracy(a[sel], truth[sel])}"
            for b, a in preds.values()
        )
        out.append(f"| {kind} | {int(sel.sum())} | {cells} |")
    out += ["", f"decode_image + to_mnist: {per_image:.1f} ms per image on average.", ""]
    raw = images.astype(np.float32) / 255
    roundtrip = _prepare([_encode(Image.fromarray(d), "PNG") for d in images])
    jpegs = [_jpeg_200(d) for d in images]
    jpeg_after = _prepare(jpegs)
    jpeg_before = np.stack([naive(d) for d in jpegs])
    out += [
        "## All 10,000 MNIST test digits",
        "",
        "| model | raw tensors | PNG round trip | 200 px dark-on-white JPEG before | after |",
        "|---|---:|---:|---:|---:|",
    ]
    for n, c in checkpoints.items():
        accs = [(predict(c, x) == labels).mean() for x in (raw, roundtrip, jpeg_before, jpeg_after)]
        out.append(f"| {n} | " + " | ".join(f"{100 * a:.2f} %" for a in accs) + " |")
    diff = np.abs(roundtrip - raw)
    moved = int((diff.max(axis=(1, 2)) > 0.1).sum())
    out += [
        "",
        f"PNG round trip: mean |difference| from the raw digits {diff.mean():.4f}; {moved} of "
        f"{len(raw)} differ anywhere by more than 0.1 (specks dropped, 1 px recentring, rescale).",
        "",
    ]
    out += ["## Timing (median of 7)", "", "| case | time |", "|---|---:|", *_timing(images[0])]
    return "\n".join(out) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=1500, help="number of realistic uploads")
    parser.add_argument("--out", type=Path, help="also write the markdown report here")
    parser.add_argument("--examples", type=Path, help="write the first 40 uploads and outputs here")
    args = parser.parse_args()
    torch.set_num_threads(1)
    report = run(args.limit, args.examples)
    print(report)
    if args.out:
        args.out.write_text(report)


if __name__ == "__main__":
    main()
