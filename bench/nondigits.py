"""Uploads that are not digits, to measure how often the digit service answers them anyway.

Letters, symbols and short words in fonts the digit nets never trained on (STIX and Computer
Modern, where training's outliers use DejaVu), shapes, scribbles and dots, and a few drawings
of things (a face, a house, a sun, a stick figure, waves) that training's outliers do not
contain at all. Each is uploaded the ways people send digits: a 280 x 280 canvas drawing
(white on black, black on white, or strokes on a transparent background) or a paper scan
(dark ink on grey paper with noise, 80-200 px, PNG or JPEG, now and then light ink on a dark
board). Seeded and deterministic.

    python -m bench.nondigits N DIR [--seed S]    # N files, to look at or to post
"""

import argparse
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from bench.render import encode
from training import outliers as drawn
from training.outliers import LETTERS, SIDE, SYMBOLS

SEED = 77031
FAMILIES = ("STIX", "cm")
WORDS = ("la", "OR", "me", "fun", "Yo", "pq", "ZA", "sos", "ink", "web")


@dataclass(frozen=True)
class Sample:
    """One encoded upload: what is drawn, how it is sent, the file bytes and extension."""

    content: str
    style: str
    data: bytes
    ext: str


def _fonts() -> list[Path]:
    return [p for family in FAMILIES for p in drawn.font_paths(family)]


def _thing(rng: np.random.Generator) -> np.ndarray:
    """A small drawing of a thing: a face, a house, a sun, a stick figure or waves."""
    a = np.zeros((SIDE, SIDE), np.uint8)
    pen, c, aa = int(rng.integers(3, 10)), SIDE // 2, cv2.LINE_AA
    kind = int(rng.integers(5))
    if kind == 0:  # smiley
        cv2.circle(a, (c, c), 50, 255, pen, aa)
        cv2.circle(a, (c - 18, c - 14), 6, 255, -1, aa)
        cv2.circle(a, (c + 18, c - 14), 6, 255, -1, aa)
        cv2.ellipse(a, (c, c + 8), (24, 18), 0, 20, 160, 255, pen, aa)
    elif kind == 1:  # house
        cv2.rectangle(a, (34, 60), (94, 110), 255, pen, aa)
        cv2.polylines(a, [np.array([(28, 62), (64, 22), (100, 62)], np.int32)], False, 255, pen, aa)
        cv2.rectangle(a, (56, 84), (72, 110), 255, max(2, pen // 2), aa)
    elif kind == 2:  # sun
        cv2.circle(a, (c, c), 22, 255, -1 if rng.random() < 0.5 else pen, aa)
        for i in range(int(rng.integers(6, 13))):
            t = 2 * math.pi * i / 12
            p = (int(c + 32 * math.cos(t)), int(c + 32 * math.sin(t)))
            q = (int(c + 52 * math.cos(t)), int(c + 52 * math.sin(t)))
            cv2.line(a, p, q, 255, max(2, pen // 2), aa)
    elif kind == 3:  # stick figure
        cv2.circle(a, (c, 30), 13, 255, pen // 2 + 2, aa)
        for p, q in [((c, 43), (c, 85)), ((c, 55), (c - 28, 70)), ((c, 55), (c + 28, 70))]:
            cv2.line(a, p, q, 255, pen, aa)
        for x in (c - 22, c + 22):
            cv2.line(a, (c, 85), (x, 115), 255, pen, aa)
    else:  # waves
        xs = np.arange(16, SIDE - 16)
        for row in range(int(rng.integers(1, 4))):
            ys = c + row * 22 - 20 + 12 * np.sin(xs / rng.uniform(6, 14))
            cv2.polylines(a, [np.stack([xs, ys], 1).astype(np.int32)], False, 255, pen, aa)
    return a


def _content(rng: np.random.Generator, fonts: list[Path]) -> tuple[str, np.ndarray]:
    pick = rng.random()
    if pick < 0.35:
        return "letter", drawn.glyphs(LETTERS[int(rng.integers(len(LETTERS)))], rng, fonts)
    if pick < 0.5:
        return "symbol", drawn.glyphs(SYMBOLS[int(rng.integers(len(SYMBOLS)))], rng, fonts)
    if pick < 0.55:
        return "word", drawn.glyphs(WORDS[int(rng.integers(len(WORDS)))], rng, fonts)
    if pick < 0.7:
        return "shape", drawn.shape(rng)
    if pick < 0.8:
        return "scribble", drawn.scribble(rng)
    if pick < 0.88:
        return "dots", drawn.dots(rng)
    return "thing", _thing(rng)


def _ink(a: np.ndarray, side: int) -> np.ndarray:
    """The drawing's ink box scaled so its longer side is ``side``: float coverage in [0, 1]."""
    ys, xs = np.nonzero(a > 40)
    crop = a[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
    h, w = crop.shape
    scale = side / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return cv2.resize(crop, size, interpolation=cv2.INTER_AREA).astype(np.float32) / 255


def _place(ink: np.ndarray, side: int, rng: np.random.Generator) -> np.ndarray:
    h, w = ink.shape
    y, x = int(rng.integers(0, side - h + 1)), int(rng.integers(0, side - w + 1))
    field = np.zeros((side, side), np.float32)
    field[y : y + h, x : x + w] = ink
    return field


def _canvas(a: np.ndarray, rng: np.random.Generator) -> tuple[str, bytes, str]:
    cover = _place(_ink(a, int(rng.uniform(0.45, 0.85) * 280)), 280, rng)
    alpha = np.round(cover * 255).astype(np.uint8)
    style = str(rng.choice(["white-on-black", "black-on-white", "dark-on-clear"]))
    if style == "white-on-black":
        return style, encode(alpha, "PNG"), "png"
    if style == "black-on-white":
        return style, encode(cv2.cvtColor(255 - alpha, cv2.COLOR_GRAY2RGB), "PNG"), "png"
    rgba = np.zeros((280, 280, 4), np.uint8)
    rgba[..., 3] = alpha
    return style, encode(rgba, "PNG"), "png"


def _paper(a: np.ndarray, rng: np.random.Generator) -> tuple[str, bytes, str]:
    side = int(rng.integers(80, 201))
    cover = _place(_ink(a, int(side * rng.uniform(0.6, 0.9))), side, rng)
    paper, ink = rng.uniform(190, 245), rng.uniform(10, 80)
    if rng.random() < 0.2:  # chalk on a board
        paper, ink = ink, paper
    grey = paper - (paper - ink) * cover + rng.normal(0, rng.uniform(1, 5), cover.shape)
    grey = np.clip(grey, 0, 255).astype(np.uint8)
    if rng.random() < 0.5:
        return "paper-png", encode(grey, "PNG"), "png"
    rgb = cv2.cvtColor(grey, cv2.COLOR_GRAY2RGB)
    return "paper-jpeg", encode(rgb, "JPEG", quality=int(rng.integers(70, 95))), "jpg"


STYLES: tuple[Callable[[np.ndarray, np.random.Generator], tuple[str, bytes, str]], ...] = (
    _canvas,
    _paper,
)


def build(n: int, seed: int = SEED) -> list[Sample]:
    """``n`` uploads that are not digits, the same for the same seed."""
    rng = np.random.default_rng(seed)
    fonts = _fonts()
    out: list[Sample] = []
    while len(out) < n:
        content, a = _content(rng, fonts)
        if not (a > 40).any():
            continue
        style, data, ext = STYLES[len(out) % len(STYLES)](a, rng)
        out.append(Sample(content, style, data, ext))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.nondigits", description=__doc__)
    parser.add_argument("n", type=int)
    parser.add_argument("out", type=Path)
    parser.add_argument("--seed", type=int, default=SEED)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    for i, s in enumerate(build(args.n, args.seed)):
        (args.out / f"{i:05d}-{s.content}-{s.style}.{s.ext}").write_bytes(s.data)


if __name__ == "__main__":
    main()
