"""``python -m bench.canvas``: what a demo-page drawing costs the service to decode and
preprocess, sent as the canvas's 280 x 280 RGBA PNG or as the page sends it now (the 93 x 93
8-bit grey BMP of its 3 x 3 block means, ``app/static/app.js``'s ``padBitmap``).

40 generated drawings (a white stroke of the page's width through four random points, on black),
each timed 50 times on one thread; medians over the drawings.
"""

import io
import statistics
import time
from collections.abc import Callable

import cv2
import numpy as np
from PIL import Image, ImageDraw

from app.services.digits import Limits, Pipeline

PAD, REDUCE, STROKE = 280, 3, 22


def drawing(seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    image = Image.new("RGBA", (PAD, PAD), (0, 0, 0, 255))
    points = [(int(x), int(y)) for x, y in rng.uniform(50, 230, (4, 2))]
    ImageDraw.Draw(image).line(points, fill=(255, 255, 255, 255), width=STROKE, joint="curve")
    return image


def as_png(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


def as_page_sends(image: Image.Image) -> bytes:
    side = PAD // REDUCE
    red = np.asarray(image)[: side * REDUCE, : side * REDUCE, 0].astype(np.float64)
    blocks = red.reshape(side, REDUCE, side, REDUCE).mean(axis=(1, 3))  # side x side
    out = io.BytesIO()
    Image.fromarray(np.round(blocks).astype(np.uint8), "L").save(out, "BMP")
    return out.getvalue()


def median_ms(work: Callable[[], object], runs: int = 50) -> float:
    work()
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


def main() -> None:
    cv2.setNumThreads(1)
    pipeline = Pipeline(Limits(max_pixels=50_000_000, max_decoded_bytes=200 * 1024 * 1024))
    rows: dict[str, list[tuple[float, int]]] = {"280 x 280 RGBA PNG": [], "93 x 93 grey BMP": []}
    for seed in range(40):
        image = drawing(seed)
        for kind, data in zip(rows, (as_png(image), as_page_sends(image)), strict=True):
            cost = median_ms(lambda d=data: pipeline.prepare(pipeline.open(d)))
            rows[kind].append((cost, len(data)))
    print("| upload of a drawing | bytes | decode + preprocess |")
    print("| --- | ---: | ---: |")
    for kind, measured in rows.items():
        cost = statistics.median(ms for ms, _ in measured)
        size = statistics.median(n for _, n in measured)
        print(f"| {kind} | {size:,.0f} | {cost:.3f} ms |")
    png, bmp = (statistics.median(ms for ms, _ in m) for m in rows.values())
    print(f"\nThe page's upload costs {png / bmp:.1f}x less.")


if __name__ == "__main__":
    main()
