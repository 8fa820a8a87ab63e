"""Drawings that are not digits, in MNIST's form, for teaching the digit nets to doubt.

Outlier exposure (Hendrycks et al. 2019): beside each batch of digits the net sees a batch of
things that are not digits and is trained to give them an even spread over the ten classes. So
a letter, a symbol, a shape or a scribble gets a low top probability, and the service can
refuse it. The outliers are made here, seeded, from fonts (letters and symbols) and from
strokes drawn with OpenCV (shapes, scribbles, dots, hatching); each is turned bright-on-dark,
its ink box fitted into 20 x 20 and its centre of mass put at the centre of a 28 x 28 field,
as MNIST's digits were.

Only fonts of the DejaVu family (shipped with matplotlib) are used here; ``bench/nondigits.py``
measures on other fonts and other drawings, so the figures are not measured on what trained.
"""

from collections.abc import Callable, Sequence
from functools import cache
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

SIDE = 128
"""Drawing size: strokes are drawn at this size, then reduced to MNIST's 20-pixel box."""
FIELD, BOX = 28, 20
LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
SYMBOLS = "+-x*/\\=#@&%$?!<>()[]{}~^|:;\"'_€£¥§¶©®πΣΩαβγδλμ→←↑↓★♥♦♣♠✓✗∞≈≠≤≥÷×√∫∂∇"
WORDS = ("ok", "hi", "no", "yes", "abc", "xy", "Hi", "OK", "GO", "zoo", "cat", "ml")

Draw = Callable[[np.random.Generator], np.ndarray]


@cache
def font_paths(family: str = "DejaVu") -> tuple[Path, ...]:
    """TrueType files of one family among matplotlib's bundled fonts."""
    import matplotlib

    folder = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
    return tuple(sorted(folder.glob(f"{family}*.ttf")))


def glyphs(text: str, rng: np.random.Generator, fonts: Sequence[Path]) -> np.ndarray:
    """``text`` in a random font, weight and tilt, bright on dark, at drawing size."""
    path = fonts[int(rng.integers(len(fonts)))]
    font = ImageFont.truetype(str(path), size=int(rng.integers(56, 96)))
    image = Image.new("L", (SIDE * 2, SIDE), 0)
    stroke = int(rng.integers(0, 5))  # a heavier pen
    ImageDraw.Draw(image).text((8, 8), text, fill=255, font=font, stroke_width=stroke)
    a = np.asarray(image)
    angle = float(rng.uniform(-15, 15))
    matrix = cv2.getRotationMatrix2D((SIDE, SIDE / 2), angle, 1.0)
    return cv2.warpAffine(a, matrix, (SIDE * 2, SIDE))


STROKES: dict[str, list[list[tuple[float, float]]]] = {
    "A": [[(0.1, 1), (0.5, 0), (0.9, 1)], [(0.25, 0.6), (0.75, 0.6)]],
    "B": [
        [
            (0.2, 1),
            (0.2, 0),
            (0.7, 0.05),
            (0.75, 0.25),
            (0.2, 0.5),
            (0.8, 0.7),
            (0.7, 0.95),
            (0.2, 1),
        ]
    ],
    "C": [[(0.85, 0.15), (0.5, 0), (0.15, 0.3), (0.15, 0.7), (0.5, 1), (0.85, 0.85)]],
    "D": [[(0.2, 0), (0.2, 1), (0.7, 0.9), (0.85, 0.5), (0.7, 0.1), (0.2, 0)]],
    "E": [[(0.8, 0), (0.2, 0), (0.2, 1), (0.8, 1)], [(0.2, 0.5), (0.7, 0.5)]],
    "F": [[(0.8, 0), (0.2, 0), (0.2, 1)], [(0.2, 0.5), (0.7, 0.5)]],
    "H": [[(0.2, 0), (0.2, 1)], [(0.8, 0), (0.8, 1)], [(0.2, 0.5), (0.8, 0.5)]],
    "K": [[(0.2, 0), (0.2, 1)], [(0.8, 0), (0.2, 0.55), (0.8, 1)]],
    "L": [[(0.2, 0), (0.2, 1), (0.8, 1)]],
    "M": [[(0.1, 1), (0.15, 0), (0.5, 0.6), (0.85, 0), (0.9, 1)]],
    "N": [[(0.2, 1), (0.2, 0), (0.8, 1), (0.8, 0)]],
    "P": [[(0.2, 1), (0.2, 0), (0.75, 0.05), (0.8, 0.3), (0.2, 0.5)]],
    "R": [[(0.2, 1), (0.2, 0), (0.75, 0.05), (0.8, 0.3), (0.2, 0.5), (0.8, 1)]],
    "T": [[(0.1, 0), (0.9, 0)], [(0.5, 0), (0.5, 1)]],
    "U": [[(0.2, 0), (0.2, 0.8), (0.5, 1), (0.8, 0.8), (0.8, 0)]],
    "V": [[(0.1, 0), (0.5, 1), (0.9, 0)]],
    "W": [[(0.05, 0), (0.3, 1), (0.5, 0.4), (0.7, 1), (0.95, 0)]],
    "X": [[(0.15, 0), (0.85, 1)], [(0.85, 0), (0.15, 1)]],
    "Y": [[(0.1, 0), (0.5, 0.5), (0.9, 0)], [(0.5, 0.5), (0.5, 1)]],
    "e": [
        [(0.2, 0.55), (0.8, 0.55), (0.7, 0.25), (0.4, 0.2), (0.2, 0.5), (0.35, 0.9), (0.8, 0.85)]
    ],
    "h": [[(0.2, 0), (0.2, 1)], [(0.2, 0.6), (0.5, 0.4), (0.8, 0.6), (0.8, 1)]],
    "k": [[(0.25, 0), (0.25, 1)], [(0.75, 0.4), (0.25, 0.7), (0.75, 1)]],
    "m": [
        [(0.1, 1), (0.1, 0.4), (0.3, 0.35), (0.5, 0.5), (0.5, 1)],
        [(0.5, 0.5), (0.7, 0.35), (0.9, 0.5), (0.9, 1)],
    ],
    "n": [[(0.2, 1), (0.2, 0.4), (0.5, 0.35), (0.8, 0.5), (0.8, 1)]],
    "r": [[(0.3, 1), (0.3, 0.4)], [(0.3, 0.6), (0.55, 0.4), (0.8, 0.45)]],
    "w": [[(0.05, 0.4), (0.3, 1), (0.5, 0.6), (0.7, 1), (0.95, 0.4)]],
    "x": [[(0.2, 0.4), (0.8, 1)], [(0.8, 0.4), (0.2, 1)]],
    "+": [[(0.5, 0.1), (0.5, 0.9)], [(0.1, 0.5), (0.9, 0.5)]],
    "#": [
        [(0.35, 0), (0.3, 1)],
        [(0.7, 0), (0.65, 1)],
        [(0.1, 0.35), (0.9, 0.35)],
        [(0.1, 0.65), (0.9, 0.65)],
    ],
}
"""Letters and signs as a hand draws them: pen strokes through points of a unit box (x to the
right, y down), jittered and drawn with a round pen by ``handwritten``."""


def handwritten(rng: np.random.Generator) -> np.ndarray:
    """A letter or sign from ``STROKES`` drawn by an unsteady hand: each point moved a little,
    the box stretched and slanted, a round pen 5-16 px wide."""
    a = np.zeros((SIDE, SIDE), np.uint8)
    strokes = STROKES[list(STROKES)[int(rng.integers(len(STROKES)))]]
    w, h = rng.uniform(50, 100), rng.uniform(70, 105)
    slant = rng.uniform(-0.3, 0.3)
    for stroke in strokes:
        pts = np.array(stroke) + rng.normal(0, 0.04, (len(stroke), 2))
        xs = SIDE / 2 + (pts[:, 0] - 0.5) * w + (0.5 - pts[:, 1]) * h * slant
        ys = SIDE / 2 + (pts[:, 1] - 0.5) * h
        path = np.stack([xs, ys], 1).astype(np.int32)
        cv2.polylines(a, [path], False, 255, int(rng.integers(5, 17)), cv2.LINE_AA)
    return a


def _pen(rng: np.random.Generator) -> int:
    return int(rng.integers(3, 14))


def _points(rng: np.random.Generator, n: int, margin: int = 16) -> np.ndarray:
    return rng.integers(margin, SIDE - margin, size=(n, 2)).astype(np.int32)


def shape(rng: np.random.Generator) -> np.ndarray:
    """A geometric shape, outlined or filled: circle, ellipse, box, polygon, star, arrow,
    heart, spiral, cross or check mark."""
    a = np.zeros((SIDE, SIDE), np.uint8)
    pen, c = _pen(rng), SIDE // 2
    fill = -1 if rng.random() < 0.3 else pen
    kind = int(rng.integers(10))
    r = int(rng.integers(25, 55))
    if kind == 0:
        cv2.circle(a, (c, c), r, 255, fill, cv2.LINE_AA)
    elif kind == 1:
        axes = (r, int(r * rng.uniform(0.3, 0.8)))
        cv2.ellipse(a, (c, c), axes, float(rng.uniform(0, 180)), 0, 360, 255, fill, cv2.LINE_AA)
    elif kind == 2:
        w, h = int(rng.integers(20, 55)), int(rng.integers(20, 55))
        cv2.rectangle(a, (c - w, c - h), (c + w, c + h), 255, fill, cv2.LINE_AA)
    elif kind in (3, 4):  # a polygon of 3-8 corners, or a star
        n = int(rng.integers(3, 9))
        turn = rng.uniform(0, 2 * np.pi)
        steps = n * (2 if kind == 4 else 1)  # a star alternates outer and inner corners
        radii = np.where((np.arange(steps) % 2 == 1) & (kind == 4), r * 0.45, r)
        angles = turn + 2 * np.pi * np.arange(steps) / steps
        pts = np.stack([c + radii * np.cos(angles), c + radii * np.sin(angles)], 1).astype(np.int32)
        if fill < 0:
            cv2.fillPoly(a, [pts], 255, cv2.LINE_AA)
        else:
            cv2.polylines(a, [pts], True, 255, pen, cv2.LINE_AA)
    elif kind == 5:  # arrow
        p, q = _points(rng, 2, 20)
        cv2.arrowedLine(a, tuple(map(int, p)), tuple(map(int, q)), 255, pen, cv2.LINE_AA, 0, 0.35)
    elif kind == 6:  # heart: two discs and a triangle
        d = r // 2
        cv2.circle(a, (c - d, c - d // 2), d, 255, fill, cv2.LINE_AA)
        cv2.circle(a, (c + d, c - d // 2), d, 255, fill, cv2.LINE_AA)
        tri = np.array([(c - 2 * d, c - d // 4), (c + 2 * d, c - d // 4), (c, c + 2 * d)], np.int32)
        (cv2.fillPoly(a, [tri], 255) if fill < 0 else cv2.polylines(a, [tri], True, 255, pen))
    elif kind == 7:  # spiral
        turns = rng.uniform(1.5, 3.5)
        t = np.linspace(0, turns * 2 * np.pi, 200)
        rad = 4 + (r - 4) * t / t[-1]
        pts = np.stack([c + rad * np.cos(t), c + rad * np.sin(t)], 1).astype(np.int32)
        cv2.polylines(a, [pts], False, 255, max(3, pen // 2), cv2.LINE_AA)
    elif kind == 8:  # hatching or a grid
        gap = int(rng.integers(14, 30))
        for x in range(16, SIDE - 16, gap):
            cv2.line(a, (x, 16), (x, SIDE - 16), 255, max(2, pen // 2), cv2.LINE_AA)
            if rng.random() < 0.6:
                cv2.line(a, (16, x), (SIDE - 16, x), 255, max(2, pen // 2), cv2.LINE_AA)
    else:  # check mark or cross
        if rng.random() < 0.5:
            pts = np.array([(c - r, c), (c - r // 3, c + r), (c + r, c - r)], np.int32)
            cv2.polylines(a, [pts], False, 255, pen, cv2.LINE_AA)
        else:
            cv2.line(a, (c - r, c - r), (c + r, c + r), 255, pen, cv2.LINE_AA)
            cv2.line(a, (c - r, c + r), (c + r, c - r), 255, pen, cv2.LINE_AA)
    return a


def scribble(rng: np.random.Generator) -> np.ndarray:
    """A smooth random scrawl: a few control points joined by a spline-like path."""
    a = np.zeros((SIDE, SIDE), np.uint8)
    n = int(rng.integers(4, 12))
    pts = _points(rng, n).astype(np.float64)
    t = np.linspace(0, n - 1, 40 * n)
    xs = np.interp(t, np.arange(n), pts[:, 0])
    ys = np.interp(t, np.arange(n), pts[:, 1])
    kernel = np.ones(15) / 15
    xs = np.convolve(np.pad(xs, 7, mode="edge"), kernel, "valid")
    ys = np.convolve(np.pad(ys, 7, mode="edge"), kernel, "valid")
    path = np.stack([xs, ys], 1).astype(np.int32)
    cv2.polylines(a, [path], False, 255, _pen(rng), cv2.LINE_AA)
    return a


def dots(rng: np.random.Generator) -> np.ndarray:
    """One to eight dots or short dashes scattered on the page."""
    a = np.zeros((SIDE, SIDE), np.uint8)
    for p in _points(rng, int(rng.integers(1, 9))):
        if rng.random() < 0.7:
            cv2.circle(a, (int(p[0]), int(p[1])), int(rng.integers(3, 12)), 255, -1, cv2.LINE_AA)
        else:
            q = p + rng.integers(-15, 16, size=2)
            cv2.line(a, tuple(map(int, p)), tuple(map(int, q)), 255, _pen(rng), cv2.LINE_AA)
    return a


def mnist_form(a: np.ndarray) -> np.ndarray | None:
    """Bright-on-dark drawing -> 28 x 28 uint8: ink box fitted into 20 x 20, centre of mass at
    the centre; None when there is no ink."""
    ys, xs = np.nonzero(a > 40)
    if len(ys) == 0:
        return None
    crop = a[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
    h, w = crop.shape
    scale = BOX / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    small = cv2.resize(crop, size, interpolation=cv2.INTER_AREA).astype(np.float32)
    total = float(small.sum())
    if total <= 0:
        return None
    cy = float((small.sum(1) * np.arange(small.shape[0])).sum()) / total
    cx = float((small.sum(0) * np.arange(small.shape[1])).sum()) / total
    matrix = np.array([[1, 0, FIELD / 2 - 0.5 - cx], [0, 1, FIELD / 2 - 0.5 - cy]], np.float32)
    out = np.asarray(cv2.warpAffine(small, matrix, (FIELD, FIELD), flags=cv2.INTER_LINEAR))
    return np.clip(out, 0, 255).astype(np.uint8)


def drawers(fonts: Sequence[Path]) -> list[tuple[float, Draw]]:
    """The kinds of outlier with their shares of the mix."""
    return [
        (0.25, lambda rng: glyphs(LETTERS[int(rng.integers(len(LETTERS)))], rng, fonts)),
        (0.15, handwritten),
        (0.12, lambda rng: glyphs(SYMBOLS[int(rng.integers(len(SYMBOLS)))], rng, fonts)),
        (0.05, lambda rng: glyphs(WORDS[int(rng.integers(len(WORDS)))], rng, fonts)),
        (0.18, shape),
        (0.15, scribble),
        (0.1, dots),
    ]


def outliers(n: int, seed: int, fonts: Sequence[Path] | None = None) -> np.ndarray:
    """``n`` outliers in MNIST's form, N x 28 x 28 uint8, the same for the same seed."""
    rng = np.random.default_rng(seed)
    kinds = drawers(fonts or font_paths())
    shares = np.array([s for s, _ in kinds])
    out = np.zeros((n, FIELD, FIELD), np.uint8)
    i = 0
    while i < n:
        draw = kinds[int(rng.choice(len(kinds), p=shares / shares.sum()))][1]
        form = mnist_form(draw(rng))
        if form is not None:
            out[i] = form
            i += 1
    return out
