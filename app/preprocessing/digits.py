"""A greyscale photo, scan or drawing of a digit -> the 28 x 28 form MNIST's digits have.

MNIST's digits are light ink on black, anti-aliased, scaled so that the longer side of the ink's
box is 20 px and placed with their centre of mass on the centre of a 28 x 28 field (LeCun et
al., "The MNIST database"). ``to_mnist`` makes any upload that shape in named steps, each a
short function on OpenCV:

    polarity -> background -> contrast -> ink box -> thicken -> resize to 20 px -> centre

An upload already in MNIST's form comes through as it is (within 1/255).
"""

import math

import cv2
import numpy as np

from app.errors import NoDigitFound

FIELD = 28
"""Side of MNIST's images."""
BOX = 20
"""Longer side of the digit's box in MNIST."""
CENTRE = 14.0
"""Where MNIST puts the centre of mass (row and column)."""
KEEP_SIZES = range(18, BOX + 1)
"""A digit whose box is already about MNIST's size is not resampled (no blur from a 19 -> 20
resize; MNIST's own digits have exactly 20)."""
TAIL = 0.002
"""Share of pixels at each end of the histogram read as the darkest and brightest marks: ink
of a small digit in a photo is a few tenths of a percent of it, a speck far less."""
BACKGROUND_SIDE = 64
"""Side the background is estimated at: lighting varies slowly, so 64 px follow a shadow across
a page, and the morphology costs microseconds."""
OPENING = 0.15
"""Width of the opening that estimates an uneven background, as a share of the small image's
longer side: wider than a pen's stroke where the digit fills the frame (a stroke is about an
eighth of the digit's height), narrow enough to follow a shadow."""
FLAT = 16
"""Width of the band of levels (of 255) that an evenly lit paper's border pixels fall in: a
scanner's or camera's noise spans a few levels, a shadow or vignette many more."""
NOISE_FLOOR = 4.0
"""Ink starts this many noise standard deviations above the background."""
MIN_CONTRAST = 15
"""Weakest ink, over the noise floor, that counts as a stroke (of 255): fainter is blank."""
MIN_SNR = 3.0
"""Strokes must rise this many noise standard deviations above the noise floor."""
FULL_STRENGTH = 0.9
"""Strokes whose strong part reaches this share of the range above the paper are at full
strength: only their weaker pixels are scaled, the strongest going to 1 (MNIST's own digits
come through within 1/255)."""
MASK_LEVEL = 0.4
"""Share of full strength at which a pixel counts as part of a stroke for the ink box."""
MIN_PART = 0.05
"""A separate mark joins the digit if it has this share of the largest stroke's ink (the
detached bar of a 5 or a 7 does; dust does not)."""
NEAR = 0.2
"""Marks of any size within this share of the main stroke's size around its box are part of the
digit (the pen lifted, or a faint join broken by the threshold)."""
FAINT = 0.05
"""Level above which a pixel near the digit widens its box: MNIST's faint stroke ends do, the
ringing a JPEG leaves around strokes (a few percent) does not."""
EDGE = 0.01
"""Level above which a pixel next to the digit's box is an anti-aliased edge of its strokes and
widens the box (MNIST's box has them): the ringing a JPEG leaves on white paper, whose noise
cannot be measured since it is clipped, stays under it (measured: 0.4-0.8 %)."""
MIN_MASS = 4.0
"""Least total ink (in full-strength pixels) that is a digit rather than specks."""
EDGE_LINE = 0.9
"""A mark spanning this share of the image's side while thin is a paper or frame edge."""
MIN_STROKE = 1.6
TARGET_STROKE = 2.2
"""Stroke widths after scaling to 20 px: thinner than the first (a fine pen on a large canvas)
is thickened to about the second, MNIST's own (about 2 px at full strength)."""


def _border(image: np.ndarray) -> np.ndarray:
    """The image's outermost rows and columns, sorted."""
    return np.sort(np.concatenate([image[0], image[-1], image[:, 0], image[:, -1]]))


def ink_bright(grey: np.ndarray) -> np.ndarray:
    """Polarity: the image with its ink light on dark, inverted if the ink is darker than the
    paper. The paper is the level along the image's border; the ink is whichever extreme of
    the histogram lies further from it."""
    border = _border(grey)
    paper = float(border[border.size // 2])
    hist = cv2.calcHist([grey], [0], None, [256], [0, 256]).ravel()
    cumulative = np.cumsum(hist) / grey.size
    darkest = int(np.searchsorted(cumulative, TAIL))
    brightest = int(np.searchsorted(cumulative, 1 - TAIL))
    dark = paper - darkest > brightest - paper
    return cv2.bitwise_not(grey) if dark else grey


def background(x: np.ndarray, *, even: bool | None = None) -> np.ndarray | int:
    """The paper's level under an ink-bright image: one level when the paper is evenly lit
    (scans, screens, tight crops), else a smooth surface (a morphological opening at low
    resolution, which follows shadows and gradients but not strokes).

    The paper counts as even when at least half the border lies within FLAT levels of one
    value (a digit touching the border of a tight crop covers less than half of it); ``even``
    forces one reading."""
    border = np.bincount(_border(x), minlength=256)
    window = np.convolve(border, np.ones(FLAT, dtype=np.int64), mode="valid")  # 257 - FLAT
    start = int(np.argmax(window))
    if even is None:
        even = window[start] >= border.sum() / 2
    if even:
        levels = border[start : start + FLAT]
        return start + int(np.searchsorted(np.cumsum(levels), levels.sum() / 2))
    h, w = x.shape
    scale = min(1.0, BACKGROUND_SIDE / max(h, w))
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    small = cv2.resize(x, size, interpolation=cv2.INTER_AREA) if scale < 1 else x
    k = max(3, round(OPENING * max(small.shape)) | 1)
    kernel = cv2.getStructuringElement(cv2.MORPH_RECT, (k, k))
    surface = cv2.morphologyEx(small, cv2.MORPH_OPEN, kernel, borderType=cv2.BORDER_REPLICATE)
    surface = cv2.blur(surface, (k, k), borderType=cv2.BORDER_REPLICATE)
    return cv2.resize(surface, (w, h), interpolation=cv2.INTER_LINEAR)


_LEVELS = np.arange(-255, 256, dtype=np.float64)
"""Every possible difference between a pixel and the paper under it."""


def contrast(x: np.ndarray, paper: np.ndarray | int) -> np.ndarray:
    """Ink above the paper as float32 in [0, 1]: the noise floor goes to 0 and the strong
    strokes to 1. The noise is read from the pixels darker than the paper. Raises NoDigitFound
    for a blank, flat or noisy image.

    The residual (pixel - paper) takes 511 integer values, so its statistics come from one
    histogram and the result from one table lookup. On even paper the residual is the pixel's
    level shifted, so OpenCV's 256-level histogram and lookup serve (five times quicker)."""
    r: np.ndarray | None = None
    if isinstance(paper, np.ndarray):
        r = x.astype(np.int16) - paper.astype(np.int16)
        r += 255  # 0..510
        hist = np.bincount(r.ravel(), minlength=_LEVELS.size).astype(np.float64)
    else:
        shift = 255 - int(paper)  # residual + 255 = level + shift
        hist = np.zeros(_LEVELS.size)
        hist[shift : shift + 256] = cv2.calcHist([x], [0], None, [256], [0, 256]).ravel()
    below = hist[:255]
    count = below.sum()
    noise = float(np.sqrt(below @ np.square(_LEVELS[:255]) / count)) if count else 0.0
    lo = NOISE_FLOOR * noise
    peak = float(_LEVELS[np.flatnonzero(hist)[-1]])
    if peak <= lo + MIN_CONTRAST:
        raise NoDigitFound("no digit found: the image is blank, one flat or noisy colour")
    strong = np.where(max(lo, peak / 2) <= _LEVELS, hist, 0.0)
    cumulative = np.cumsum(strong)
    hi = float(_LEVELS[np.searchsorted(cumulative, 0.95 * cumulative[-1])])
    full = 255 - float(np.mean(paper))
    if hi >= FULL_STRENGTH * full:  # strokes at full strength: only the weak ones are stretched
        hi = peak
    if hi - lo < max(MIN_CONTRAST, MIN_SNR * noise):
        raise NoDigitFound(
            f"no digit found: nothing stands out from the background (contrast {hi - lo:.0f}/255)"
        )
    table = np.clip((_LEVELS - lo) / (hi - lo), 0, 1).astype(np.float32)
    out: np.ndarray = cv2.LUT(x, table[shift : shift + 256]) if r is None else table[r]
    return out


def _edge_line(x: int, y: int, bw: int, bh: int, w: int, h: int) -> bool:
    """Whether a mark is a thin line along the image's edge (the paper's or a frame's)."""
    long_thin = (bw >= EDGE_LINE * w and bh <= 0.1 * h) or (bh >= EDGE_LINE * h and bw <= 0.1 * w)
    return long_thin and (x == 0 or y == 0 or x + bw == w or y + bh == h)


def ink_box(a: np.ndarray) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) of the digit: the strokes' connected components, joined by
    marks with a real share of the ink, without specks or thin lines along the paper's edges."""
    mask = (a > MASK_LEVEL).view(np.uint8)
    # 16-bit labels: a working-size image has fewer than 2**16 marks, and OpenCV computes the
    # stats twice as fast as with 32-bit ones
    count, _, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8, ltype=cv2.CV_16U)
    if count <= 1:
        raise NoDigitFound("no digit found: only faint marks, no strokes")
    h, w = a.shape
    marks = [  # (left, top, right, bottom, area): a few, so plain Python is quickest
        (x, y, x + bw, y + bh, area)
        for x, y, bw, bh, area in stats[1:].tolist()
        if not _edge_line(x, y, bw, bh, w, h)
    ]
    if not marks:
        raise NoDigitFound("no digit found: only lines along the edges, no strokes")
    main = max(marks, key=lambda m: m[4])
    reach = NEAR * max(main[2] - main[0], main[3] - main[1])
    kept = [
        m
        for m in marks
        if m[4] >= MIN_PART * main[4]
        or (
            m[0] >= main[0] - reach
            and m[1] >= main[1] - reach
            and m[2] <= main[2] + reach
            and m[3] <= main[3] + reach
        )
    ]
    if sum(m[4] for m in kept) < MIN_MASS:
        raise NoDigitFound("no digit found: only isolated specks, no strokes")
    left, top = min(m[0] for m in kept), min(m[1] for m in kept)
    right, bottom = max(m[2] for m in kept), max(m[3] for m in kept)
    # Widen to faint strokes nearby, then to the anti-aliased edges (MNIST's box has both).
    for margin, level in ((max(2, math.ceil(reach)), FAINT), (2, EDGE)):
        y0, y1 = max(0, top - margin), min(h, bottom + margin)
        x0, x1 = max(0, left - margin), min(w, right + margin)
        bx, by, bw, bh = cv2.boundingRect((a[y0:y1, x0:x1] > level).view(np.uint8))
        top, bottom, left, right = y0 + by, y0 + by + bh, x0 + bx, x0 + bx + bw
    return top, bottom, left, right


_CROSS = cv2.getStructuringElement(cv2.MORPH_CROSS, (3, 3))


def stroke_width(a: np.ndarray) -> float:
    """Mean stroke width in pixels: what one erosion removes is about twice a stroke's length,
    so width ~ 2 x area / (area - eroded area)."""
    mask = (a > 0.5).astype(np.uint8)
    area = int(cv2.countNonZero(mask))
    eroded = int(cv2.countNonZero(cv2.erode(mask, _CROSS, borderType=cv2.BORDER_CONSTANT)))
    return 2 * area / max(area - eroded, 1)


def thicken(a: np.ndarray) -> np.ndarray:
    """Grow strokes that would end up thinner than MNIST's once the digit is scaled to 20 px."""
    scale = BOX / max(a.shape)
    width = stroke_width(a)
    if width * scale >= MIN_STROKE:
        return a
    # A k x k disc widens a stroke by k - 1 px: any whole number, even at a small working size
    side = max(2, round(TARGET_STROKE / scale - width) + 1)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (side, side))
    before, after = side - 1 - side // 2, side // 2  # the growth on each side (anchor: side // 2)
    padded = cv2.copyMakeBorder(a, before, after, before, after, cv2.BORDER_CONSTANT, value=0)
    grown: np.ndarray = cv2.dilate(padded, kernel)
    return grown


def resize(a: np.ndarray) -> np.ndarray:
    """Scale the digit so the longer side of its box is 20 px (area-averaged when shrinking)."""
    h, w = a.shape
    if max(h, w) in KEEP_SIZES:
        return a
    scale = BOX / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    kind = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    out: np.ndarray = cv2.resize(a, size, interpolation=kind)
    return np.clip(out, 0, 1, out=out)


def centre(a: np.ndarray) -> np.ndarray:
    """Place the digit in a 28 x 28 field with its centre of mass at MNIST's (14, 14)."""
    h, w = a.shape
    # Not cv2.moments: it reads an N x 2 array as N points, so a "1" scaled to 2 px wide
    # would weigh nothing.
    rows, cols = a.sum(axis=1, dtype=np.float64), a.sum(axis=0, dtype=np.float64)
    mass = float(rows.sum())
    if mass <= 0:  # faint marks that vanished in scaling
        raise NoDigitFound("no digit found: only faint marks, no strokes")
    cy, cx = float(rows @ np.arange(h)) / mass, float(cols @ np.arange(w)) / mass
    oy = min(max(math.floor(CENTRE - cy + 0.5), 0), FIELD - h)
    ox = min(max(math.floor(CENTRE - cx + 0.5), 0), FIELD - w)
    field = np.zeros((FIELD, FIELD), dtype=np.float32)
    field[oy : oy + h, ox : ox + w] = a
    return field


def mnist_form(grey: np.ndarray) -> np.ndarray | None:
    """The image as the steps would return it, if it is already in MNIST's form, else None.

    MNIST's form: 28 x 28, light strokes at full strength on exact black, the ink's box 20 px on
    its longer side and its centre of mass where ``centre`` would put it. The steps would only
    bring the strongest pixel up to 1, so a few cheap checks stand in for them (an MNIST digit
    costs 0.02 ms here instead of 0.15 ms through the steps)."""
    if grey.shape != (FIELD, FIELD) or grey[0].any() or grey[-1].any():
        return None
    peak = int(grey.max())
    if peak < FULL_STRENGTH * 255:
        return None
    rows, cols = np.flatnonzero(grey.any(axis=1)), np.flatnonzero(grey.any(axis=0))
    top, left = int(rows[0]), int(cols[0])
    if max(int(rows[-1]) - top, int(cols[-1]) - left) + 1 != BOX:
        return None
    m = cv2.moments(grey)
    cy, cx = m["m01"] / m["m00"] - top, m["m10"] / m["m00"] - left
    if math.floor(CENTRE - cy + 0.5) != top or math.floor(CENTRE - cx + 0.5) != left:
        return None
    return grey.astype(np.float32) / peak


def to_mnist(grey: np.ndarray) -> np.ndarray:
    """An 8-bit greyscale image as a float32 28 x 28 array in [0, 1], ink bright, boxed and
    centred as MNIST's digits are. Raises NoDigitFound when it holds no strokes.

    When the likelier reading of the paper (even or uneven) finds no digit, the other is tried:
    a tight crop's strokes can cover most of its border, a vignette can look even."""
    already = mnist_form(grey)
    if already is not None:
        return already
    x = ink_bright(grey)
    paper = background(x)
    try:
        a = contrast(x, paper)
        box = ink_box(a)
    except NoDigitFound as first:
        other = background(x, even=isinstance(paper, np.ndarray))
        try:
            a = contrast(x, other)
            box = ink_box(a)
        except NoDigitFound:
            raise first from None
    top, bottom, left, right = box
    digit = a[top:bottom, left:right]
    return centre(resize(thicken(digit)))
