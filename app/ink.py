"""Ink analysis of greyscale arrays: polarity, background, contrast, the digit's box and strokes.

Arrays are float32 with values in [0, 1]; "ink-bright" arrays have the ink as the high values.
"""

import math

import numpy as np
from PIL import Image

from app.errors import NoDigitFound

FIELD = 28
BOX = 20
CENTRE = 14.0
KEEP_SIZES = range(18, BOX + 1)
FULL_STRENGTH = 0.9
MIN_STROKE = 1.6
TARGET_STROKE = 2.2
MASK_LEVEL = 0.4
MIN_CONTRAST = 0.06
MIN_SNR = 3.0
MIN_MASS = 2.0
MIN_PART = 0.03
FLAT = 0.03
DECISIVE = 0.05
BLOCKS = 16
MIN_BLOCK = 8

Box = tuple[int, int, int, int]
Plane = tuple[float, float, float]


def quantiles(x: np.ndarray, qs: tuple[float, ...]) -> list[float]:
    """Percentiles of all of x, interpolated linearly as ``np.percentile`` does, by one partial
    sort (numpy's own function costs more than the work on the small arrays seen here)."""
    flat = x.ravel()
    last = flat.size - 1
    spots = [q / 100 * last for q in qs]
    below = [math.floor(s) for s in spots]
    kth = sorted({i for b in below for i in (b, min(b + 1, last))})
    part = np.partition(flat, kth)
    out = []
    for spot, b in zip(spots, below, strict=True):
        lo, hi = float(part[b]), float(part[min(b + 1, last)])
        out.append(lo + (hi - lo) * (spot - b))
    return out


def _starts(n: int, side: int) -> np.ndarray:
    """Starts of equal blocks covering 0..n, overlapping a little rather than overhanging."""
    return np.round(np.linspace(0, n - side, math.ceil(n / side))).astype(np.intp)


def _block_grid(x: np.ndarray, q: float) -> np.ndarray:
    """The q-th percentile of each block, about BLOCKS of them along the longer side."""
    h, w = x.shape
    side = max(MIN_BLOCK, math.ceil(max(h, w) / BLOCKS))
    sy, sx = min(side, h), min(side, w)
    rows = (_starts(h, sy)[:, None] + np.arange(sy)).ravel()
    cols = (_starts(w, sx)[:, None] + np.arange(sx)).ravel()
    ny, nx = rows.size // sy, cols.size // sx
    cells = x[np.ix_(rows, cols)].reshape(ny, sy, nx, sx).transpose(0, 2, 1, 3)
    grid: np.ndarray = np.percentile(cells.reshape(ny, nx, -1), q, axis=2)  # ny x nx
    return grid.astype(np.float32)


def _neighbourhood(grid: np.ndarray, largest: bool) -> np.ndarray:
    """Maximum (or minimum) over each cell's 3 x 3 neighbourhood."""
    padded = np.pad(grid, 1, mode="edge")
    h, w = grid.shape
    stack = np.stack([padded[dy : dy + h, dx : dx + w] for dy in range(3) for dx in range(3)])
    out: np.ndarray = stack.max(axis=0) if largest else stack.min(axis=0)
    return out


def _opened(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Background of an ink-bright array as a morphological opening of its block grid: the
    grid upsampled to the array's shape, and the grid itself."""
    grid = _neighbourhood(_neighbourhood(_block_grid(x, 30), largest=False), largest=True)
    image = Image.fromarray(grid.astype(np.float32))
    smooth = np.asarray(image.resize((x.shape[1], x.shape[0]), Image.Resampling.BILINEAR))
    return smooth, grid


def _extremes(x: np.ndarray) -> tuple[float, float]:
    """The k-th smallest and k-th largest values, k a small share of the pixels (skips specks)."""
    flat = x.ravel()
    k = min(max(3, flat.size // 2000), flat.size)
    part = np.partition(flat, [k - 1, flat.size - k])
    return float(part[k - 1]), float(part[flat.size - k])


def dark_ink(g: np.ndarray) -> bool:
    """Whether the ink is darker than the background (paper) rather than brighter (screen).

    The ink is whichever extreme lies further from the level along the image's edge (paper
    surrounds the digit); when the two are close (faint ink under uneven light), whichever
    reading stands out more above its own local background.
    """
    (level,) = quantiles(np.concatenate([g[0], g[-1], g[:, 0], g[:, -1]]), (50,))
    darkest, brightest = _extremes(g)
    lean = (level - darkest) - (brightest - level)
    if abs(lean) > DECISIVE:
        return lean > 0
    return _contrast(1 - g) > _contrast(g)


def _contrast(x: np.ndarray) -> float:
    """How far the strongest bright features of x rise above the local background."""
    return _extremes(x - _opened(x)[0])[1]


def local_background(x: np.ndarray) -> np.ndarray:
    """The local background level of an ink-bright array: a blockwise opening, which follows
    uneven light and shadows."""
    return _opened(x)[0]


def flat_background(x: np.ndarray) -> tuple[float, bool]:
    """The flat background level of an ink-bright array, and whether the background is more
    likely flat than uneven.

    The level is the median of the paper pixels (those well below the inkiest level). The
    background counts as flat (scans, screens, tight crops) when most paper pixels sit at that
    one level, so that bold strokes are never mistaken for background.
    """
    darkest, inkiest = _extremes(x)
    paper = x[x <= darkest + 0.3 * (inkiest - darkest)]
    low, level, high = quantiles(paper, (10, 50, 75))
    return level, high - low < FLAT


def plane(x: np.ndarray, box: Box) -> Plane:
    """Background under the digit: a plane ``c + cy * y + cx * x`` fitted robustly to a ring of
    pixels around its box, so that no stroke, however bold, counts as background."""
    h, w = x.shape
    top, bottom, left, right = box
    near = 2
    far = near + max(3, round(0.15 * max(bottom - top, right - left)))
    ring = np.zeros((h, w), dtype=bool)
    ring[max(0, top - far) : bottom + far, max(0, left - far) : right + far] = True
    ring[max(0, top - near) : bottom + near, max(0, left - near) : right + near] = False
    ys, xs = np.nonzero(ring)
    values = x[ys, xs].astype(np.float64)
    if values.size < 12:
        return quantiles(x, (20,))[0], 0.0, 0.0
    design = np.column_stack([np.ones_like(values), ys, xs])  # n x 3
    keep = np.ones(values.size, dtype=bool)
    for _ in range(3):
        coef = np.linalg.lstsq(design[keep], values[keep], rcond=None)[0]
        residual = values - design @ coef
        spread = 1.4826 * float(np.median(np.abs(residual[keep])))
        keep = residual < max(3 * spread, 0.02)
    return float(coef[0]), float(coef[1]), float(coef[2])


def stretch(r: np.ndarray, *, whole: bool) -> np.ndarray:
    """Ink above the background: the noise floor goes to 0 and the strong strokes to 1.

    The noise is read from the residual below the background; on a whole image, where paper is
    the larger part, also from the residual's lower quartile, which holds even where the
    background level itself is off.
    """
    below = r[r < 0]
    noise = float(np.sqrt(np.mean(np.square(below)))) if below.size else 0.0
    lo = 4 * noise
    if whole:
        q5, q25 = quantiles(r, (5, 25))
        noise = max(noise, (q25 - q5) / 0.97)
        lo = max(q25, 0.0) + 4 * noise
    peak = _extremes(r)[1]
    if peak <= lo:
        raise NoDigitFound("no digit found: the image is blank, one flat or noisy colour")
    (hi,) = quantiles(r[r >= max(lo, peak / 2)], (95,))
    if hi - lo < max(MIN_CONTRAST, MIN_SNR * noise):
        raise NoDigitFound(
            f"no digit found: nothing stands out from the background (contrast {hi - lo:.0%})"
        )
    return np.clip((r - lo) / (hi - lo), 0, 1).astype(np.float32)


def _leading(flags: np.ndarray) -> int:
    """How many entries at the start are true."""
    return int(flags.size) if flags.all() else int(np.argmin(flags))


def _edge_lines(mask: np.ndarray) -> tuple[int, int]:
    """How many rows at the top and at the bottom edge are thin lines across the image (paper
    edges)."""
    h = mask.shape[0]
    full = np.count_nonzero(mask, axis=1) > 0.9 * mask.shape[1]
    if not (full[0] or full[-1]):
        return 0, 0
    limit = max(2, round(0.1 * h))
    top, bottom = _leading(full), _leading(full[::-1])
    return (top if top <= limit else 0), (bottom if bottom <= limit else 0)


def _main_run(profile: np.ndarray) -> tuple[int, int]:
    """The [start, stop) span of the heaviest run of non-zero entries, joined by the runs near
    it that carry a real share of the ink (a detached bar), but not by specks."""
    inked = np.zeros(profile.size + 2, dtype=bool)
    inked[1:-1] = profile > 0
    edges = np.flatnonzero(inked[1:] != inked[:-1])  # run starts and stops, alternating
    starts, stops = edges[0::2].tolist(), edges[1::2].tolist()
    masses = np.add.reduceat(profile, edges[0::2]).tolist()  # the gaps between runs add 0
    first = last = masses.index(max(masses))
    grown = True
    while grown:
        grown = False
        start, stop = starts[first], stops[last]
        share = MIN_PART * sum(masses[first : last + 1])
        if first > 0 and start - stops[first - 1] <= stop - start and masses[first - 1] >= share:
            first, grown = first - 1, True
        after = last + 1 < len(starts)
        if after and starts[last + 1] - stop <= stop - start and masses[last + 1] >= share:
            last, grown = last + 1, True
    return starts[first], stops[last]


def ink_box(a: np.ndarray) -> Box:
    """(top, bottom, left, right) of the digit, ignoring specks and thin lines at the edges."""
    h, w = a.shape
    clean, mask = a, a > MASK_LEVEL
    above, below = _edge_lines(mask)
    if above or below:
        clean = a.copy()
        for edge in (slice(0, above), slice(h - below, h)):
            clean[edge], mask[edge] = 0, False
    before, after = _edge_lines(mask.T)
    if before or after:
        clean = clean.copy() if clean is a else clean
        for side in (slice(0, before), slice(w - after, w)):
            clean[:, side], mask[:, side] = 0, False
    if not mask.any():
        raise NoDigitFound("no digit found: only faint marks, no strokes")
    weight = np.where(mask, clean, 0)
    add = np.add.reduce
    top, bottom, left, right = 0, h, 0, w
    for rounds in range(2):
        columns = _main_run(add(weight[top:bottom], axis=0))
        if rounds and columns == (left, right):
            break  # the same columns again would give the same rows
        left, right = columns
        top, bottom = _main_run(add(weight[:, left:right], axis=1))
    if float(add(weight[top:bottom, left:right], axis=None)) < MIN_MASS:
        raise NoDigitFound("no digit found: only isolated specks, no strokes")
    y0, y1 = max(0, top - 2), min(h, bottom + 2)
    x0, x1 = max(0, left - 2), min(w, right + 2)
    rows = np.flatnonzero(clean[y0:y1, x0:x1].any(axis=1))
    cols = np.flatnonzero(clean[y0:y1, x0:x1].any(axis=0))
    return y0 + int(rows[0]), y0 + int(rows[-1]) + 1, x0 + int(cols[0]), x0 + int(cols[-1]) + 1


def stroke_width(a: np.ndarray) -> float:
    """Mean stroke width in pixels: twice the ink's area over its perimeter."""
    mask = np.pad(a > 0.5, 1)
    edges = int(np.count_nonzero(mask[1:] != mask[:-1]))
    edges += int(np.count_nonzero(mask[:, 1:] != mask[:, :-1]))
    return 2 * int(np.count_nonzero(mask)) / max(edges, 1)


def dilate(a: np.ndarray, radius: int) -> np.ndarray:
    """Grow bright strokes by ``radius`` pixels with an octagonal structuring element."""
    out = np.pad(a, radius)
    cross = [(1, 0), (1, 2), (0, 1), (2, 1)]
    corners = [(0, 0), (0, 2), (2, 0), (2, 2)]
    for i in range(radius):
        p = np.pad(out, 1)
        h, w = out.shape
        shifts = cross + corners if i % 2 else cross
        out = np.stack([out] + [p[dy : dy + h, dx : dx + w] for dy, dx in shifts]).max(axis=0)
    return out


def fit(a: np.ndarray) -> np.ndarray:
    """Scale the cropped digit so its longer side is 20 px, thickening strokes that would end up
    thinner than MNIST's; a digit already about that size is left as it is."""
    h, w = a.shape
    if max(h, w) in KEEP_SIZES:
        return a
    scale = BOX / max(h, w)
    width = stroke_width(a)
    if width * scale < MIN_STROKE:
        a = dilate(a, max(1, round((TARGET_STROKE / scale - width) / 2)))
        h, w = a.shape
        scale = BOX / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    kind = Image.Resampling.BOX if scale < 1 else Image.Resampling.BILINEAR
    out: np.ndarray = np.asarray(Image.fromarray(a.astype(np.float32)).resize(size, kind))
    return out.clip(0, 1)


def mnist_form(pixels: np.ndarray) -> bool:
    """Whether 28 x 28 greyscale pixels (uint8, ink bright) are already a digit in MNIST's own
    form, which the preprocessing would hand back almost unchanged: a background of exact zeros,
    the ink's box 20 px on its longer side, its centre of mass on the centre (within the half
    pixel that ``centre`` rounds away) and its strong strokes at full strength.

    Every upload in MNIST's form takes this test, so it is written as a few direct numpy calls
    on integers (ufunc reductions, one sort) rather than the library's convenience wrappers."""
    if pixels.shape != (FIELD, FIELD) or np.count_nonzero(pixels) > FIELD * FIELD // 2:
        return False
    row_mass = np.add.reduce(pixels, axis=1, dtype=np.int64)
    col_mass = np.add.reduce(pixels, axis=0, dtype=np.int64)
    (rows,), (cols,) = row_mass.nonzero(), col_mass.nonzero()
    if rows.size == 0 or max(rows[-1] - rows[0], cols[-1] - cols[0]) + 1 != BOX:
        return False
    mass = float(np.add.reduce(row_mass))
    cy, cx = float(row_mass @ _POSITIONS) / mass, float(col_mass @ _POSITIONS) / mass
    if not (CENTRE - 0.5 < cy <= CENTRE + 0.5 and CENTRE - 0.5 < cx <= CENTRE + 0.5):
        return False
    strong = np.sort(pixels[pixels >= pixels.max() / 2], axis=None)
    # Its 95th percentile, interpolated as np.percentile does.
    spot = 0.95 * (strong.size - 1)
    below = math.floor(spot)
    lo, hi = float(strong[below]), float(strong[min(below + 1, strong.size - 1)])
    return lo + (hi - lo) * (spot - below) >= FULL_STRENGTH * 255


_POSITIONS = np.arange(FIELD, dtype=np.int64)


def centre(a: np.ndarray) -> np.ndarray:
    """Place the digit in a 28 x 28 field with its centre of mass on MNIST's centre (14, 14)."""
    h, w = a.shape
    mass = float(a.sum())
    cy = float(a.sum(axis=1) @ np.arange(h)) / mass
    cx = float(a.sum(axis=0) @ np.arange(w)) / mass
    oy = min(max(math.floor(CENTRE - cy + 0.5), 0), FIELD - h)
    ox = min(max(math.floor(CENTRE - cx + 0.5), 0), FIELD - w)
    field = np.zeros((FIELD, FIELD), dtype=np.float32)
    field[oy : oy + h, ox : ox + w] = a
    return field
