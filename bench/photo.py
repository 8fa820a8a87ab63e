"""Phone photos of a digit written in ink on paper, as the camera app stores them.

A 3, 5, 8 or 12 MP JPEG (quality 80-95, 4:2:0), landscape or portrait. The digit is traced with
a ballpoint-to-marker pen (5-12 % of its height), turned up to 8 degrees, its height 10-40 % of
the frame's shorter side, anywhere on the page. The page is white, cream or bluish; the light
falls off across it, a soft shadow and a vignette darken parts of it; optics blur it slightly and
the sensor adds noise. 40 % of photos carry an EXIF orientation (6, 8, or 3) with the pixels
stored turned so that applying the tag makes the digit upright, as phones store portrait shots.
"""

import math

import cv2
import numpy as np
from PIL import Image

from bench.render import trace

SIZES = ((2000, 1500), (2592, 1944), (3264, 2448), (4000, 3000))
"""Landscape frames (width, height) of 3, 5, 8 and 12 MP."""
PAPERS = ((246, 245, 240), (242, 234, 212), (226, 230, 238))
PENS = ((28, 28, 34), (25, 40, 140), (70, 70, 78), (20, 30, 90))
STORED_TURNS = {6: 1, 8: -1, 3: 2}
"""EXIF orientation -> quarter turns (anticlockwise, np.rot90) from upright to the stored
pixels: a viewer applying the tag (6: turn 90 degrees clockwise) turns them back upright."""
FIELD = 48
"""Side (of the longer dimension) at which the light field is computed before upscaling."""


def lighting(width: int, height: int, rng: np.random.Generator) -> np.ndarray:
    """A smooth multiplicative light field, float32 height x width, at most 1: a linear fall-off
    across the page, a soft shadow and a vignette, computed small and upscaled."""
    fw = FIELD if width >= height else max(2, round(FIELD * width / height))
    fh = FIELD if height > width else max(2, round(FIELD * height / width))
    yy, xx = np.mgrid[0:fh, 0:fw].astype(np.float32)
    yy, xx = yy / (fh - 1), xx / (fw - 1)
    theta = rng.uniform(0, 2 * math.pi)
    ramp = (math.cos(theta) * (xx - 0.5) + math.sin(theta) * (yy - 0.5)) + 0.5
    field = 1 - rng.uniform(0.05, 0.4) * np.clip(ramp, 0, 1)
    cy, cx = rng.uniform(-0.2, 1.2, size=2)
    r = rng.uniform(0.2, 0.5)
    shadow = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r * r))
    field *= 1 - rng.uniform(0, 0.35) * shadow
    field *= 1 - rng.uniform(0, 0.3) * ((yy - 0.5) ** 2 + (xx - 0.5) ** 2) * 2
    field *= rng.uniform(0.8, 1.0) / field.max()
    light: np.ndarray = cv2.resize(field, (width, height), interpolation=cv2.INTER_CUBIC)
    return light


def _with_exif(jpeg: bytes, exif: bytes) -> bytes:
    """A JPEG with an EXIF (APP1) segment inserted after its JFIF header."""
    end = 2 + 2 + int.from_bytes(jpeg[4:6], "big") if jpeg[2:4] == b"\xff\xe0" else 2
    app1 = b"\xff\xe1" + (len(exif) + 2).to_bytes(2, "big") + exif
    return jpeg[:end] + app1 + jpeg[end:]


def photo(digit: np.ndarray, rng: np.random.Generator) -> tuple[bytes, str]:
    """A phone photo of an MNIST digit (28 x 28 uint8) written on paper: JPEG bytes and 'jpg'."""
    width, height = SIZES[int(rng.integers(len(SIZES)))]
    if rng.random() < 0.5:
        width, height = height, width  # a portrait shot, upright
    tall = rng.uniform(0.10, 0.40) * min(width, height)
    ink = trace(digit, tall, tall * rng.uniform(0.05, 0.12), float(rng.uniform(-8, 8)))
    blurred = cv2.GaussianBlur(np.pad(ink, 6), (0, 0), rng.uniform(0.6, 1.8))  # optics
    ink = np.asarray(blurred, dtype=np.float32) * rng.uniform(0.8, 1.0)  # the ink's opacity
    margin = round(0.03 * min(width, height))
    h, w = ink.shape
    y = int(rng.integers(margin, max(margin, height - h - margin) + 1))
    x = int(rng.integers(margin, max(margin, width - w - margin) + 1))
    h, w = min(h, height - y), min(w, width - x)
    paper = np.array(PAPERS[int(rng.integers(len(PAPERS)))], dtype=np.float32)
    pen = np.array(PENS[int(rng.integers(len(PENS)))], dtype=np.float32)
    light = lighting(width, height, rng)
    grain = rng.standard_normal((height // 2, width // 2), dtype=np.float32)
    noise = cv2.resize(grain * rng.uniform(1.5, 5), (width, height))  # sensor noise, denoised
    shade = light[y : y + h, x : x + w] * ink[:h, :w]
    channels = []
    for c in (2, 1, 0):  # OpenCV's BGR
        channel = np.asarray(cv2.scaleAdd(light, float(paper[c]), noise), dtype=np.float32)
        channel[y : y + h, x : x + w] -= shade * float(paper[c] - pen[c])
        channels.append(cv2.convertScaleAbs(channel))
    bgr = cv2.merge(channels)
    exif = Image.Exif()
    if rng.random() < 0.4:
        orientation = int(rng.choice([6, 8, 3], p=[0.5, 0.3, 0.2]))
        exif[0x0112] = orientation
        bgr = np.ascontiguousarray(np.rot90(bgr, STORED_TURNS[orientation]))
    quality = int(rng.integers(80, 96))
    ok, jpeg = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise RuntimeError("OpenCV could not encode the photo")
    return _with_exif(jpeg.tobytes(), exif.tobytes()), "jpg"
