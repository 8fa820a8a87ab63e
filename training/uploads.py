"""Training digits as people upload them: MNIST training digits rendered the ways real uploads
differ from MNIST, then put through the service's own preprocessing.

A digit net reads what ``app.preprocessing`` makes of an upload: a 28 x 28 field, the ink's box
20 px on its longer side, centred by mass. MNIST's digits are already in that form, and a net
trained on them alone meets only MNIST's pen, MNIST's scanner and MNIST's writers. Real uploads
reach the net after a thicker or thinner pen, a slant, a phone's blur and JPEG, a low
resolution scaled up, a box that stretched the digit, a threshold, textured paper, either
polarity, and after the service's steps that bring them back. So each sample here is one MNIST
training digit passed through named steps (``STEPS``), each taken with its probability and
drawing its parameters from its range, then through the service's ``working_size`` and
``to_mnist``: the net trains on exactly what the service would hand it.

Three steps model writing styles MNIST under-represents (its writers were American): the
continental 1 with its long up-stroke, the crossed 7, and 4s and 9s with an open loop.

Each sample draws from ``numpy.random.default_rng((seed, index))``, so a pool is the same
whatever order or process makes it, and ``pool`` caches it under a name that holds every
parameter (``fingerprint``).

    python -m training uploads --show 64 out.png   # a sheet of samples, to look at
"""

import hashlib
import json
import math
import multiprocessing
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np

from app.errors import NoDigitFound
from app.preprocessing.digits import to_mnist
from app.preprocessing.uploads import working_size

Image = np.ndarray
"""Float32 ink coverage in [0, 1] (1 = full ink), any size; the last steps make it 8-bit grey."""


@dataclass(frozen=True)
class Step:
    """One named way uploads differ: taken with probability ``p``, its ``params`` ranges."""

    name: str
    p: float
    params: dict[str, tuple[float, float]]
    labels: tuple[int, ...] = ()
    """Only for these digits (a writing style); empty: every digit."""


STEPS: tuple[Step, ...] = (
    # writing styles, on the 28 x 28 digit
    Step("continental-one", 0.45, {"length": (0.25, 0.6), "angle": (25, 65)}, labels=(1,)),
    Step("crossed-seven", 0.3, {"length": (0.3, 0.6), "height": (0.45, 0.65)}, labels=(7,)),
    Step("open-loop", 0.3, {"radius": (1.2, 2.2)}, labels=(4, 9)),
    # the writing, at the upload's size
    Step("size", 1.0, {"height": (24, 180)}),
    Step("stroke", 0.8, {"width": (-0.45, 1.2)}),
    Step("slant", 0.5, {"shear": (-0.35, 0.35)}),
    Step("rotation", 0.5, {"degrees": (-15, 15)}),
    Step("elastic", 0.4, {"alpha": (0.02, 0.06), "sigma": (0.08, 0.16)}),
    Step("aspect", 0.35, {"ratio": (0.65, 1.45)}),
    Step("fill-box", 0.1, {"ratio": (0.6, 1.0)}),
    Step("margin", 1.0, {"side": (0.0, 1.2)}),
    # the capture
    Step("low-resolution", 0.15, {"height": (9, 16)}),
    Step("blur", 0.3, {"sigma": (0.02, 0.06)}),
    Step("binarise", 0.2, {"level": (0.3, 0.7)}),
    Step("paper", 1.0, {"paper": (150, 255), "ink": (0, 110), "texture": (0, 30)}),
    Step("light", 0.3, {"falloff": (10, 60)}),
    Step("noise", 0.4, {"sigma": (1, 10)}),
    Step("light-on-dark", 0.2, {}),
    Step("jpeg", 0.5, {"quality": (25, 95)}),
)
"""In order. Sizes are fractions of the digit's height where they scale with it."""
BY_NAME = {step.name: step for step in STEPS}


def _draw(step: Step, rng: np.random.Generator) -> dict[str, float]:
    return {k: float(rng.uniform(lo, hi)) for k, (lo, hi) in step.params.items()}


def _ink_rows(digit: Image) -> tuple[np.ndarray, np.ndarray]:
    return np.flatnonzero(digit.max(axis=1) > 0.3), np.flatnonzero(digit.max(axis=0) > 0.3)


SUPER = 4
"""The styles draw on the digit at 4x (112 x 112) and reduce it back, anti-aliased."""


def _stroke_px(digit: Image) -> float:
    """The digit's pen width in pixels: ink area over half the ink's perimeter."""
    ink = digit > 0.5
    edge = ink & ~cv2.erode(ink.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    return float(max(1.5, min(4.0, 2 * ink.sum() / max(1, edge.sum()))))


def _with_strokes(
    digit: Image, lines: Sequence[tuple[tuple[float, float], tuple[float, float]]]
) -> Image:
    """The digit with straight strokes of its own pen width added (28 x 28 coordinates)."""
    big = cv2.resize(digit, None, fx=SUPER, fy=SUPER, interpolation=cv2.INTER_LINEAR)
    pen = max(1, round(_stroke_px(digit) * SUPER))
    canvas = np.zeros_like(big)
    for (y0, x0), (y1, x1) in lines:
        start = (round(x0 * SUPER), round(y0 * SUPER))
        end = (round(x1 * SUPER), round(y1 * SUPER))
        cv2.line(canvas, start, end, 1.0, pen, cv2.LINE_AA)
    big = np.maximum(big, canvas)
    return cv2.resize(big, (digit.shape[1], digit.shape[0]), interpolation=cv2.INTER_AREA)


def continental_one(digit: Image, rng: np.random.Generator, length: float, angle: float) -> Image:
    """A 1 as written in much of Europe: an up-stroke from the lower left to the stem's top,
    ``length`` of the digit's height, ``angle`` degrees below the horizontal."""
    rows, _cols = _ink_rows(digit)
    if len(rows) < 5:
        return digit
    top = int(rows[0])
    x_top = float(np.flatnonzero(digit[top] > 0.3).mean())
    reach = length * (rows[-1] - rows[0] + 1)
    rad = math.radians(angle)
    end = (top + reach * math.sin(rad), x_top - reach * math.cos(rad))
    lines = [((top + 0.5, x_top), end)]
    if rng.random() < 0.25:  # and a foot
        bottom = float(rows[-1])
        x_bottom = float(np.flatnonzero(digit[int(bottom)] > 0.3).mean())
        half = 0.35 * reach
        lines.append(((bottom, x_bottom - half), (bottom, x_bottom + half)))
    return _with_strokes(digit, lines)


def crossed_seven(digit: Image, rng: np.random.Generator, length: float, height: float) -> Image:
    """A 7 with a bar across its stem, at ``height`` of the digit from its top, ``length`` of
    the digit's width... at least 5 px."""
    rows, cols = _ink_rows(digit)
    if len(rows) < 5 or len(cols) < 3:
        return digit
    y = float(rows[0] + height * (rows[-1] - rows[0]))
    ink = np.flatnonzero(digit[round(y)] > 0.3)
    if not len(ink):
        return digit
    x = float(ink.mean())
    half = max(2.5, length * (cols[-1] - cols[0] + 1) / 2)
    return _with_strokes(digit, [((y, x - half), (y, x + half))])


def open_loop(digit: Image, rng: np.random.Generator, radius: float) -> Image:
    """A 4 or a 9 whose loop is left open: the ink under a disc of ``radius`` px wiped at a
    point of the upper half's strokes."""
    ys, xs = np.nonzero(digit > 0.5)
    if len(ys) < 10:
        return digit
    middle = (ys.min() + ys.max()) / 2
    upper = np.flatnonzero(ys < middle)
    if not len(upper):
        return digit
    pick = upper[int(rng.integers(len(upper)))]
    yy, xx = np.mgrid[: digit.shape[0], : digit.shape[1]]
    gone = (yy - ys[pick]) ** 2 + (xx - xs[pick]) ** 2 <= radius**2
    return np.where(gone, 0.0, digit).astype(np.float32)


STYLES: dict[str, Callable[..., Image]] = {
    "continental-one": continental_one,
    "crossed-seven": crossed_seven,
    "open-loop": open_loop,
}


def _crop(a: Image) -> Image:
    rows, cols = np.flatnonzero(a.max(axis=1) > 0.02), np.flatnonzero(a.max(axis=0) > 0.02)
    if not len(rows):
        return a
    return a[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]


def _warp(a: Image, matrix: np.ndarray) -> Image:
    """An affine warp about the centre, onto a canvas that holds the whole result."""
    h, w = a.shape
    corners = np.array([[0, 0, 1], [w, 0, 1], [0, h, 1], [w, h, 1]], np.float64)
    linear = np.array([[matrix[0, 0], matrix[0, 1]], [matrix[1, 0], matrix[1, 1]]])
    moved = corners[:, :2] @ linear.T
    lo, hi = moved.min(axis=0), moved.max(axis=0)
    size = (math.ceil(hi[0] - lo[0]) + 2, math.ceil(hi[1] - lo[1]) + 2)
    full = np.hstack([linear, (1 - lo)[:, None]])
    return cv2.warpAffine(a, full, size, flags=cv2.INTER_LINEAR, borderValue=0)


def render(
    digit_u8: np.ndarray, label: int, rng: np.random.Generator
) -> tuple[np.ndarray, list[str]]:
    """One MNIST digit (uint8 28 x 28, ink bright) as an upload would arrive: 8-bit grey, any
    size, either polarity, possibly JPEG-decoded; and the names of the steps taken."""
    a: np.ndarray = digit_u8.astype(np.float32) / 255
    taken: list[str] = []

    def take(name: str) -> dict[str, float] | None:
        step = BY_NAME[name]
        if step.labels and label not in step.labels:
            return None
        if rng.random() >= step.p:
            return None
        taken.append(name)
        return _draw(step, rng)

    for name, style in STYLES.items():
        if (params := take(name)) is not None:
            a = style(a, rng, **params)
    a = _crop(a)
    height = take("size")["height"]  # type: ignore[index]  # p = 1
    scale = height / a.shape[0]
    size = (max(1, round(a.shape[1] * scale)), max(1, round(height)))
    a = cv2.resize(a, size, interpolation=cv2.INTER_CUBIC)
    a = np.clip(a, 0, 1)
    a = np.pad(a, round(0.15 * height))  # room for the pen to grow and the warps to turn
    if (params := take("stroke")) is not None:
        width = params["width"] * height / 20  # MNIST's pen is about 2 of its 20 px
        k = round(abs(width))
        if k >= 1:
            kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * k + 1, 2 * k + 1))
            a = (cv2.dilate if width > 0 else cv2.erode)(a, kernel)
    matrix = np.eye(2)
    if (params := take("slant")) is not None:
        matrix = matrix @ np.array([[1.0, -params["shear"]], [0.0, 1.0]])
    if (params := take("rotation")) is not None:
        t = math.radians(params["degrees"])
        matrix = np.array([[math.cos(t), -math.sin(t)], [math.sin(t), math.cos(t)]]) @ matrix
    if (params := take("aspect")) is not None:
        matrix = np.diag([params["ratio"], 1.0]) @ matrix
    if not np.allclose(matrix, np.eye(2)):
        a = _warp(a, matrix)
    if (params := take("elastic")) is not None:
        h, w = a.shape
        side = max(h, w)
        sigma = params["sigma"] * side
        field = [
            cv2.GaussianBlur(rng.uniform(-1, 1, (h, w)).astype(np.float32), (0, 0), sigma)
            for _ in range(2)
        ]
        norm = max(float(np.abs(field[0]).max()), float(np.abs(field[1]).max()), 1e-6)
        dx, dy = (f / norm * params["alpha"] * side for f in field)
        yy, xx = np.mgrid[:h, :w].astype(np.float32)
        a = cv2.remap(a, xx + dx, yy + dy, cv2.INTER_LINEAR, borderValue=0)
    a = _crop(np.clip(a, 0, 1))
    if (params := take("fill-box")) is not None:  # a form's box: the digit stretched into it
        h, w = a.shape
        target = max(w / h, params["ratio"]) if label != 1 else w / h
        a = cv2.resize(a, (max(1, round(h * target)), h), interpolation=cv2.INTER_LINEAR)
    params = take("margin")
    assert params is not None
    h, w = a.shape
    pad = [round(params["side"] * max(h, w) * rng.uniform(0.05, 1)) + 1 for _ in range(4)]
    a = np.pad(a, ((pad[0], pad[1]), (pad[2], pad[3])))
    if (params := take("low-resolution")) is not None:
        h, w = a.shape
        small_h = params["height"] * h / max(1, h - pad[0] - pad[1])
        f = min(1.0, small_h / h)
        small = cv2.resize(
            a, (max(1, round(w * f)), max(1, round(h * f))), interpolation=cv2.INTER_AREA
        )
        up = cv2.INTER_NEAREST if rng.random() < 0.5 else cv2.INTER_LINEAR
        a = cv2.resize(small, (w, h), interpolation=up)
    if (params := take("blur")) is not None:
        a = cv2.GaussianBlur(a, (0, 0), max(0.3, params["sigma"] * height))
    if (params := take("binarise")) is not None:
        a = (a > params["level"]).astype(np.float32)
    params = take("paper")
    assert params is not None
    paper, ink = params["paper"], params["ink"]
    if paper - ink < 60:
        ink = paper - 60
    h, w = a.shape
    texture = cv2.resize(
        rng.normal(0, 1, (max(2, h // 8), max(2, w // 8))).astype(np.float32),
        (w, h),
        interpolation=cv2.INTER_CUBIC,
    )
    grey: np.ndarray = paper - (paper - ink) * a + params["texture"] * 0.3 * texture
    if (params := take("light")) is not None:
        angle = rng.uniform(0, 2 * math.pi)
        yy, xx = np.mgrid[:h, :w].astype(np.float32)
        ramp = (xx / w * math.cos(angle) + yy / h * math.sin(angle) + 1) / 2
        grey = grey - params["falloff"] * ramp
    if (params := take("noise")) is not None:
        grey = grey + rng.normal(0, params["sigma"], grey.shape)
    if take("light-on-dark") is not None:
        grey = 255 - grey
    out: np.ndarray = np.clip(grey, 0, 255).astype(np.uint8)
    if (params := take("jpeg")) is not None:
        ok, data = cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, round(params["quality"])])
        assert ok
        decoded = cv2.imdecode(data, cv2.IMREAD_GRAYSCALE)
        assert decoded is not None
        out = decoded
    return out, taken


def as_served(grey: np.ndarray) -> np.ndarray | None:
    """What the service's preprocessing hands the net for an 8-bit grey upload (uint8 28 x 28,
    ink bright), or None where it would answer that it found no digit."""
    try:
        x = to_mnist(working_size(grey))
    except NoDigitFound:
        return None
    return np.round(x * 255).astype(np.uint8)


def sample(digit: np.ndarray, label: int, seed: int, index: int) -> np.ndarray:
    """Sample ``index`` of a pool: the digit rendered and preprocessed (uint8 28 x 28). An
    upload the service would refuse is drawn again (the next draw of the same generator);
    after five refusals the digit is returned as it is."""
    rng = np.random.default_rng((seed, index))
    for _ in range(5):
        served = as_served(render(digit, label, rng)[0])
        if served is not None:
            return served
    return digit


def fingerprint(seed: int, n: int) -> str:
    """A short hash of everything that shapes a pool: the steps, the seed, the size."""
    spec = json.dumps({"steps": [asdict(s) for s in STEPS], "seed": seed, "n": n}, sort_keys=True)
    return hashlib.sha256(spec.encode()).hexdigest()[:12]


def cache_dir() -> Path:
    """Where pools are kept: ``$TINYZOO_CACHE``, else ``~/.cache/tinyzoo``."""
    root = os.environ.get("TINYZOO_CACHE") or Path.home() / ".cache" / "tinyzoo"
    return Path(root)


def pool(
    images: np.ndarray,
    labels: np.ndarray | None,
    seed: int,
    cache: Path | None = None,
    progress: bool = True,
) -> np.ndarray:
    """``images`` (uint8 N x 28 x 28) each rendered once as an upload and preprocessed: uint8
    N x 28 x 28, sample i from ``images[i]``. ``labels`` choose the writing styles (None: no
    style, for non-digits). Cached in ``cache`` (a folder) when given. Made by every core."""
    n = len(images)
    path = cache / f"uploads-{fingerprint(seed, n)}-{_digest(images)}.npy" if cache else None
    if path is not None and path.exists():
        cached: np.ndarray = np.load(path)
        return cached
    from tqdm import tqdm

    marks = np.full(n, -1) if labels is None else np.asarray(labels)
    chunks = [range(s, min(n, s + CHUNK)) for s in range(0, n, CHUNK)]
    jobs = [(images[c.start : c.stop], marks[c.start : c.stop], seed, c.start) for c in chunks]
    workers = min(len(jobs), os.cpu_count() or 1)
    bar = tqdm(total=n, desc="uploads", unit="digit", disable=not progress)
    parts: list[np.ndarray] = []
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as ex:
        for part in ex.map(_chunk, *zip(*jobs, strict=True)):
            parts.append(part)
            bar.update(len(part))
    bar.close()
    out = np.concatenate(parts) if parts else np.zeros((0, 28, 28), np.uint8)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, out)
    return out


CHUNK = 2000


def _chunk(images: np.ndarray, labels: np.ndarray, seed: int, first: int) -> np.ndarray:
    cv2.setNumThreads(1)
    return np.stack(
        [
            sample(d, int(k), seed, first + i)
            for i, (d, k) in enumerate(zip(images, labels, strict=True))
        ]
    )


def _digest(images: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(images).tobytes()).hexdigest()[:12]


def card() -> list[dict[str, object]]:
    """The steps as a model card lists them."""
    return [
        {"name": s.name, "p": s.p, "params": {k: list(v) for k, v in s.params.items()}}
        | ({"labels": list(s.labels)} if s.labels else {})
        for s in STEPS
    ]
