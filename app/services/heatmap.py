"""A digit's explanation as a picture: its attributions in colour over the 28 x 28 input."""

import cv2
import numpy as np

SCALE = 10
"""28 -> 280 px: each input pixel becomes a 10 x 10 square (nearest neighbour keeps the squares
sharp, so the picture shows exactly which pixels the model saw)."""
PAPER = 255.0
"""The input is drawn as grey ink on white paper under the colours, so that strokes with little
attribution still show."""
INK = 100.0
"""How much a pixel of full ink darkens the paper (to grey 155: the strokes show, and colour
over them stays clear)."""
FOR_RGB = np.array([214.0, 40.0, 40.0])
"""Red: pixels whose ink raised the explained logit."""
AGAINST_RGB = np.array([37.0, 99.0, 235.0])
"""Blue: pixels whose ink lowered it."""
FULL_COLOUR_PERCENTILE = 95.0
"""Attributions at or above this percentile of |attribution| over the pixels that have any get
full colour, the rest in proportion: scaled to the largest value alone, a few extreme pixels
would pale every other."""


def overlay(image: np.ndarray, attributions: np.ndarray) -> np.ndarray:
    """A 28 x 28 input in [0, 1] (ink 1) and its 28 x 28 attributions -> 280 x 280 x 3 RGB."""
    grey = PAPER - INK * np.clip(image, 0.0, 1.0)  # 28 x 28
    base = np.repeat(grey[..., None], 3, axis=2)  # 28 x 28 x 3
    magnitude = np.abs(attributions)
    nonzero = magnitude[magnitude > 0]
    scale = float(np.percentile(nonzero, FULL_COLOUR_PERCENTILE)) if nonzero.size else 1.0
    alpha = np.clip(magnitude / scale, 0.0, 1.0)[..., None]  # 28 x 28 x 1
    colour = np.where(attributions[..., None] >= 0, FOR_RGB, AGAINST_RGB)  # 28 x 28 x 3
    blended = base * (1.0 - alpha) + colour * alpha
    pixels = np.clip(blended + 0.5, 0, 255).astype(np.uint8)
    upscaled: np.ndarray = cv2.resize(
        pixels, None, fx=SCALE, fy=SCALE, interpolation=cv2.INTER_NEAREST
    )
    return upscaled  # 280 x 280 x 3


def overlay_png(image: np.ndarray, attributions: np.ndarray) -> bytes:
    """``overlay`` as a PNG file."""
    rgb = overlay(image, attributions)
    ok, encoded = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    if not ok:
        raise ValueError("PNG encoding failed")
    return encoded.tobytes()
