"""The earlier suite's kinds of upload, kept so that its figures can be compared: pen on paper
photographed small (50-500 px, JPEG, uneven light, texture, off-centre, 20 % EXIF-rotated),
greyscale scans (30 % inverted), canvas drawings light on dark and dark on transparent, and
thumbnails of 28-40 px. Each renderer takes an MNIST digit and a generator, returns file bytes.
"""

import math
from collections.abc import Callable

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from bench.render import encode, skeleton


def _strokes(digit: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """An MNIST digit redrawn at ``size`` px with a pen of random width, slightly rotated."""
    up = np.asarray(Image.fromarray(digit).resize((112, 112), Image.Resampling.BICUBIC))
    centre = skeleton(up > 100)
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


def _photo(digit: np.ndarray, rng: np.random.Generator) -> bytes:
    """Pen on paper photographed small: colour JPEG, uneven light, sometimes EXIF-rotated."""
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
        return encode(rotated, "JPEG", quality=quality, exif=exif.tobytes())
    return encode(image, "JPEG", quality=quality)


def _scan(digit: np.ndarray, rng: np.random.Generator) -> bytes:
    """A greyscale scan: mostly dark on white, sometimes inverted, light noise, PNG."""
    size = int(rng.integers(60, 300))
    a = _place(_strokes(digit, size, rng), rng, 0.1, 0.8)
    grey = 245 - 215 * a + rng.normal(0, 3, a.shape)
    if rng.random() < 0.3:
        grey = 255 - grey
    return encode(Image.fromarray(np.clip(grey, 0, 255).astype(np.uint8)), "PNG")


def _canvas_dark(digit: np.ndarray, rng: np.random.Generator) -> bytes:
    """A web canvas drawing: light strokes on a dark background, RGB PNG."""
    size = int(rng.integers(100, 260))
    a = _place(_strokes(digit, size, rng), rng, 0.05, 0.5)
    back = np.array(rng.choice([[0, 0, 0], [30, 30, 35], [10, 20, 60]]), np.float32)
    pen = np.array(rng.choice([[255, 255, 255], [250, 230, 80], [140, 200, 255]]), np.float32)
    rgb = back * (1 - a[..., None]) + pen * a[..., None]
    return encode(Image.fromarray(rgb.astype(np.uint8)), "PNG")


def _canvas_clear(digit: np.ndarray, rng: np.random.Generator) -> bytes:
    """A canvas drawing exported with transparency: dark strokes, transparent black elsewhere."""
    size = int(rng.integers(100, 260))
    a = _place(_strokes(digit, size, rng), rng, 0.05, 0.5)
    pen = np.array(rng.choice([[0, 0, 0], [20, 20, 120], [40, 40, 40]]), np.float32)
    rgba = np.zeros((*a.shape, 4), dtype=np.uint8)  # h x w x 4
    rgba[..., :3] = np.where(a[..., None] > 0, pen, 0).astype(np.uint8)
    rgba[..., 3] = np.round(a * 255).astype(np.uint8)
    return encode(Image.fromarray(rgba), "PNG")


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
        return encode(image, "JPEG", quality=int(rng.integers(70, 96)))
    return encode(image, "PNG")


RENDER: dict[str, Callable[[np.ndarray, np.random.Generator], bytes]] = {
    "photo": _photo,
    "scan": _scan,
    "canvas-dark": _canvas_dark,
    "canvas-clear": _canvas_clear,
    "tiny": _tiny,
}
