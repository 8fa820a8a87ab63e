"""Drawing helpers for the synthetic uploads: encoding, the ink box, skeletons and pen strokes."""

import io

import cv2
import numpy as np
from PIL import Image

NEIGHBOURS = ((0, 1), (1, -1), (1, 0), (1, 1))
"""Half of the 8-neighbourhood: each pair of touching skeleton pixels is joined once."""
SUBPIXEL = 4
"""Fractional bits of the coordinates given to cv2.line and cv2.circle."""


def encode(image: Image.Image | np.ndarray, fmt: str, **params: object) -> bytes:
    """An image (or a uint8 array: H x W grey, H x W x 3 RGB, H x W x 4 RGBA) as file bytes."""
    if isinstance(image, np.ndarray):
        image = Image.fromarray(image)
    buf = io.BytesIO()
    image.save(buf, format=fmt, **params)
    return buf.getvalue()


def ink_crop(digit: np.ndarray, margin: int = 0, level: int = 0) -> np.ndarray:
    """The digit cut to the box of its pixels above ``level``, widened by ``margin`` px on each
    side (with black beyond the image's own border)."""
    ys, xs = np.nonzero(digit > level)
    padded = np.pad(digit, margin)
    top, bottom = int(ys.min()), int(ys.max()) + 1 + 2 * margin
    left, right = int(xs.min()), int(xs.max()) + 1 + 2 * margin
    return padded[top:bottom, left:right]


def skeleton(mask: np.ndarray) -> np.ndarray:
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


def trace(digit: np.ndarray, height: float, pen: float, angle: float = 0.0) -> np.ndarray:
    """An MNIST digit redrawn with a round pen ``pen`` px wide along its centre lines, its
    centre lines spanning ``height`` px, turned ``angle`` degrees anticlockwise: float32 ink
    coverage in [0, 1] with the strokes' anti-aliased edges, cut to the ink plus 1 px."""
    up = cv2.resize(ink_crop(digit, margin=1), None, fx=4, fy=4, interpolation=cv2.INTER_CUBIC)
    centre = skeleton(cv2.GaussianBlur(up, (0, 0), 2) > 100)  # smoothed: fewer spurs
    ys, xs = np.nonzero(centre)
    scale = height / max(int(ys.max() - ys.min()) + 1, 1)
    width = max(1, round(pen))
    pad = width + 2
    size = (round(up.shape[1] * scale) + 2 * pad, round(up.shape[0] * scale) + 2 * pad)
    canvas = np.zeros((size[1], size[0]), dtype=np.uint8)
    one = 1 << SUBPIXEL

    def at(y: int, x: int) -> tuple[int, int]:
        return round(((x + 0.5) * scale + pad) * one), round(((y + 0.5) * scale + pad) * one)

    on = set(zip(ys.tolist(), xs.tolist(), strict=True))
    aa = cv2.LINE_AA
    for y, x in on:
        cv2.circle(canvas, at(y, x), round(width / 2 * one), 255, -1, aa, SUBPIXEL)
        for dy, dx in NEIGHBOURS:
            if (y + dy, x + dx) in on:
                cv2.line(canvas, at(y, x), at(y + dy, x + dx), 255, width, aa, SUBPIXEL)
    if angle:
        canvas = rotate(canvas, angle)
    return ink_crop(canvas, margin=1).astype(np.float32) / 255


def rotate(image: np.ndarray, angle: float) -> np.ndarray:
    """An image turned ``angle`` degrees anticlockwise on a canvas big enough to hold it all."""
    h, w = image.shape[:2]
    matrix = cv2.getRotationMatrix2D((w / 2, h / 2), angle, 1.0)
    cos, sin = abs(matrix[0, 0]), abs(matrix[0, 1])
    nw, nh = round(h * sin + w * cos), round(h * cos + w * sin)
    matrix[0, 2] += nw / 2 - w / 2
    matrix[1, 2] += nh / 2 - h / 2
    return cv2.warpAffine(image, matrix, (nw, nh), flags=cv2.INTER_LINEAR, borderValue=0)
