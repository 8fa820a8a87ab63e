"""Realistic digit uploads made from MNIST test digits, by kind, seeded and deterministic.

Sample ``i`` of every kind is the same MNIST test digit (label ``i % 10``, digits drawn without
repetition in an order fixed by the seed), so kinds differ only in how the digit is rendered,
and the first ``n`` samples do not depend on how many are asked for. Kinds:

- ``mnist``: the digit as a 28 x 28 greyscale PNG, as it is;
- ``scan-thick``: a scanned set of thick-pen digits: strokes dilated by 1-2 px, the ink's box fitted
  into 16 x 16, thresholded to black and white, upscaled nearest-neighbour to 80-200 px square,
  black on white, greyscale or RGB PNG;
- ``scan-crop``: a tight crop of the ink (0-2 px margin) resized smoothly to odd sizes (longer
  side 80-200 px), dark on slightly grey paper with mild noise, greyscale or RGB PNG;
- ``canvas``: a 280 x 280 PNG drawn as on an HTML canvas with a round pen 12-22 px wide, white
  on black, black on white, or strokes on a transparent background (RGBA);
- ``jpeg``: the whole 28 x 28 field upscaled (bicubic) to 200 x 200, dark on white, a JPEG of
  quality 70-95, greyscale or RGB;
- ``photo``: a phone photo of the digit in ink on paper, see ``bench.photo``;
- ``old-*``: the earlier suite's kinds, see ``bench.corpus_legacy``.

    python -m bench.corpus KIND N DIR [--seed S]    # N files and labels.csv, for load tests
"""

import argparse
import functools
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from bench import corpus_legacy
from bench.photo import photo
from bench.render import encode, ink_crop, trace
from training.data import default_data_dir, load_mnist

SEED = 20240611
Render = Callable[[np.ndarray, np.random.Generator], tuple[bytes, str]]


@dataclass(frozen=True)
class Sample:
    """One encoded upload: its kind, true label, file bytes and file extension."""

    kind: str
    label: int
    data: bytes
    ext: str


def _grey_or_rgb(grey: np.ndarray, rng: np.random.Generator) -> bytes:
    """A uint8 grey image as a greyscale PNG or, half the time, an RGB one."""
    if rng.random() < 0.5:
        return encode(grey, "PNG")
    return encode(cv2.cvtColor(grey, cv2.COLOR_GRAY2RGB), "PNG")


def _fit(a: np.ndarray, side: int, interpolation: int) -> np.ndarray:
    """An image resized so that its longer side is ``side``, aspect kept."""
    h, w = a.shape
    scale = side / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return cv2.resize(a, size, interpolation=interpolation)


def _mnist(digit: np.ndarray, rng: np.random.Generator) -> tuple[bytes, str]:
    return encode(digit, "PNG"), "png"


def _scan_thick(digit: np.ndarray, rng: np.random.Generator) -> tuple[bytes, str]:
    size = (2, 2) if rng.random() < 0.5 else (3, 3)  # one pixel thicker, or two (a cross)
    thick = cv2.dilate(digit, cv2.getStructuringElement(cv2.MORPH_CROSS, size))
    small = _fit(ink_crop(thick, level=30), 16, cv2.INTER_AREA)
    field = np.zeros((16, 16), dtype=np.uint8)
    h, w = small.shape
    top, left = (16 - h) // 2, (16 - w) // 2
    field[top : top + h, left : left + w] = small
    ink = field > int(rng.integers(100, 171))
    side = int(rng.integers(80, 201))
    big = cv2.resize(ink.astype(np.uint8), (side, side), interpolation=cv2.INTER_NEAREST)
    return _grey_or_rgb(np.where(big > 0, 0, 255).astype(np.uint8), rng), "png"


def _scan_crop(digit: np.ndarray, rng: np.random.Generator) -> tuple[bytes, str]:
    crop = ink_crop(digit, margin=int(rng.integers(0, 3)))
    side = int(rng.integers(40, 100)) * 2 + 1  # odd, 81..199
    a = np.clip(_fit(crop.astype(np.float32) / 255, side, cv2.INTER_CUBIC), 0, 1)
    paper, ink = rng.uniform(200, 240), rng.uniform(15, 70)
    grey = paper - (paper - ink) * a + rng.normal(0, rng.uniform(1, 4), a.shape)
    return _grey_or_rgb(np.clip(grey, 0, 255).astype(np.uint8), rng), "png"


def _jpeg(digit: np.ndarray, rng: np.random.Generator) -> tuple[bytes, str]:
    big = cv2.resize(digit, (200, 200), interpolation=cv2.INTER_CUBIC)
    dark_on_white = 255 - big
    if rng.random() < 0.5:
        dark_on_white = cv2.cvtColor(dark_on_white, cv2.COLOR_GRAY2RGB)
    return encode(dark_on_white, "JPEG", quality=int(rng.integers(70, 96))), "jpg"


def _canvas(digit: np.ndarray, rng: np.random.Generator) -> tuple[bytes, str]:
    pen = float(rng.uniform(12, 22))
    a = trace(digit, rng.uniform(0.5, 0.8) * 280, pen, float(rng.uniform(-8, 8)))
    if max(a.shape) > 276:  # a wide digit turned: keep it on the canvas
        a = np.clip(_fit(a, 276, cv2.INTER_AREA), 0, 1)
    h, w = a.shape
    y, x = int(rng.integers(0, 280 - h + 1)), int(rng.integers(0, 280 - w + 1))
    cover = np.zeros((280, 280), dtype=np.float32)
    cover[y : y + h, x : x + w] = a
    alpha = np.round(cover * 255).astype(np.uint8)
    style = rng.choice(["white-on-black", "black-on-white", "dark-on-clear", "light-on-clear"])
    rgba = np.zeros((280, 280, 4), dtype=np.uint8)
    rgba[..., 3] = 255
    if style == "white-on-black":
        rgba[..., :3] = alpha[..., None]
    elif style == "black-on-white":
        rgba[..., :3] = 255 - alpha[..., None]
    else:  # a transparent canvas: the pen's colour with the coverage as alpha
        dark = style == "dark-on-clear"
        colour = rng.choice([[0, 0, 0], [20, 20, 120]]) if dark else [255, 255, 255]
        rgba[..., :3] = np.where(alpha[..., None] > 0, colour, 0).astype(np.uint8)
        rgba[..., 3] = alpha
    if style.endswith("clear") or rng.random() < 0.5:  # browsers export RGBA; some tools RGB
        return encode(rgba, "PNG"), "png"
    return encode(np.ascontiguousarray(rgba[..., :3]), "PNG"), "png"


def _legacy(render: Callable[[np.ndarray, np.random.Generator], bytes]) -> Render:
    def wrapped(digit: np.ndarray, rng: np.random.Generator) -> tuple[bytes, str]:
        data = render(digit, rng)
        return data, "jpg" if data.startswith(b"\xff\xd8") else "png"

    return wrapped


RENDER: dict[str, Render] = {
    "mnist": _mnist,
    "scan-thick": _scan_thick,
    "scan-crop": _scan_crop,
    "canvas": _canvas,
    "jpeg": _jpeg,
    "photo": photo,
    **{f"old-{k}": _legacy(r) for k, r in corpus_legacy.RENDER.items()},
}
KINDS = tuple(RENDER)


@functools.cache
def _mnist_test() -> tuple[np.ndarray, np.ndarray]:
    test = load_mnist(default_data_dir(), "test")
    return test.images.numpy(), test.labels.numpy()


@functools.cache
def _order(seed: int) -> tuple[np.ndarray, ...]:
    """The test set's indices of each label, in an order fixed by the seed."""
    _, labels = _mnist_test()
    order = np.random.default_rng(seed).permutation(len(labels))
    return tuple(order[labels[order] == d] for d in range(10))


def digit(index: int, seed: int = SEED) -> tuple[np.ndarray, int]:
    """The MNIST test digit (28 x 28 uint8) behind sample ``index`` of every kind, and its label."""
    images, _ = _mnist_test()
    label = index % 10
    of_label = _order(seed)[label]
    if not 0 <= index // 10 < len(of_label):
        raise IndexError(f"sample {index}: the test set has {len(of_label)} digits of {label}")
    return images[int(of_label[index // 10])], label


def sample(kind: str, index: int, seed: int = SEED) -> Sample:
    """Sample ``index`` of a kind: the same bytes for the same arguments, every time."""
    image, label = digit(index, seed)
    rng = np.random.default_rng([seed, zlib.crc32(kind.encode()), index])
    data, ext = RENDER[kind](image, rng)
    return Sample(kind, label, data, ext)


def build(kind: str, n: int, seed: int = SEED) -> list[Sample]:
    """The first ``n`` samples of a kind."""
    if kind not in RENDER:
        raise ValueError(f"unknown kind {kind!r}; choose from {', '.join(KINDS)}")
    return [sample(kind, i, seed) for i in range(n)]


def write(directory: Path, kind: str, n: int, seed: int = SEED) -> list[Path]:
    """Write the first ``n`` samples of a kind as 0.png .. (n-1).png (or .jpg) and their labels
    as labels.csv (``file,label``); returns the files' paths in order."""
    directory.mkdir(parents=True, exist_ok=True)
    paths, rows = [], ["file,label"]
    for i in range(n):
        s = sample(kind, i, seed)
        path = directory / f"{i}.{s.ext}"
        path.write_bytes(s.data)
        paths.append(path)
        rows.append(f"{path.name},{s.label}")
    (directory / "labels.csv").write_text("\n".join(rows) + "\n")
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kind", choices=KINDS)
    parser.add_argument("n", type=int)
    parser.add_argument("directory", type=Path)
    parser.add_argument("--seed", type=int, default=SEED)
    args = parser.parse_args()
    paths = write(args.directory, args.kind, args.n, args.seed)
    print(f"wrote {len(paths)} {args.kind} uploads and labels.csv to {args.directory}")


if __name__ == "__main__":
    main()
