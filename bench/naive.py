"""Reference preprocessing a service without ours would use, for comparison.

``naive_mnist`` is the usual "15-line MNIST-style" recipe (Pillow and numpy): greyscale, invert a
light background, crop the ink's box, scale its longer side to 20 px, put its centre of mass at
(14, 14) of a 28 x 28 field. Like most such snippets it ignores EXIF orientation, drops
transparency (Pillow's ``convert("L")`` keeps the colour of transparent pixels) and takes the
paper's level as it comes. ``plain_resize`` is the baseline with nothing MNIST-like at all.
"""

import io

import numpy as np
from PIL import Image


def naive_mnist(data: bytes) -> np.ndarray:
    """An image file's bytes as a float32 28 x 28 array in [0, 1], MNIST-style, the naive way."""
    grey = np.asarray(Image.open(io.BytesIO(data)).convert("L"), dtype=np.float32)
    if grey.mean() > 127:  # dark ink on light paper: make the ink bright, as in MNIST
        grey = 255 - grey
    ys, xs = np.nonzero(grey > grey.max() / 2)
    if ys.size == 0:
        return np.zeros((28, 28), dtype=np.float32)
    crop = grey[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
    scale = 20 / max(crop.shape)
    w, h = max(1, round(crop.shape[1] * scale)), max(1, round(crop.shape[0] * scale))
    small = np.asarray(Image.fromarray(crop).resize((w, h), Image.Resampling.LANCZOS))
    small = np.clip(small, 0, None)
    rows, cols = np.mgrid[0:h, 0:w]
    mass = max(float(small.sum()), 1e-6)
    cy, cx = float((rows * small).sum()) / mass, float((cols * small).sum()) / mass
    top = min(max(round(14 - cy), 0), 28 - h)
    left = min(max(round(14 - cx), 0), 28 - w)
    field = np.zeros((28, 28), dtype=np.float32)
    field[top : top + h, left : left + w] = small
    return field / max(float(field.max()), 1e-6)


def plain_resize(data: bytes) -> np.ndarray:
    """The baseline: greyscale and a plain resize to 28 x 28, nothing else."""
    image = Image.open(io.BytesIO(data)).convert("L").resize((28, 28), Image.Resampling.BILINEAR)
    return np.asarray(image, dtype=np.float32) / 255
