"""CPU per upload on one core, split into decode, preprocessing and model, for each class.

``decode`` is the service's ``open`` + ``decode`` (header, limits, OpenCV decoding to grey at
working size), ``preprocess`` its ``to_mnist``, ``model`` a batch of 64 through digit-resnet
divided by 64. What a request costs beyond these (HTTP, multipart, JSON, batching) is the
server's CPU per request measured by ``bench.serve_bench`` minus their sum.

    python -m bench.cost UPLOADS_DIR      (a folder of <class>/<i>.<ext>, as serve_bench writes)
"""

import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import torch

from app.services.digits import DigitNet, Limits, Pipeline
from models.checkpoint import load_checkpoint

ROOT = Path(__file__).resolve().parent.parent


def _median_ms(run: Callable[[], object], repeats: int = 3) -> float:
    """Median over ``repeats`` rounds of one call's time, in ms."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def table(uploads: Path) -> list[str]:
    """Markdown rows: per class, the median ms of each stage for one upload."""
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    service = DigitNet(load_checkpoint(ROOT / "weights" / "digit-resnet"), torch.device("cpu"))
    pipeline = Pipeline(Limits(max_pixels=50_000_000, max_decoded_bytes=200 * 1024 * 1024))
    rows = [
        "| uploads | files | decode ms | preprocess ms | model ms | sum ms |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    batch = [np.zeros((28, 28), np.float32)] * 64
    service.predict_batch(batch)
    model = _median_ms(lambda: service.predict_batch(batch), 20) / 64
    for folder in sorted(p for p in uploads.iterdir() if p.is_dir()):
        files = sorted(folder.iterdir())
        datas = [f.read_bytes() for f in files]
        decode, prepare = [], []
        for data in datas:
            decode.append(_median_ms(lambda d=data: pipeline.decode(pipeline.open(d))))
            grey = pipeline.decode(pipeline.open(data))
            prepare.append(_median_ms(lambda g=grey: pipeline.preprocess(g)))
        d, p = statistics.median(decode), statistics.median(prepare)
        rows.append(
            f"| {folder.name} | {len(files)} | {d:.3f} | {p:.3f} | {model:.3f} "
            f"| {d + p + model:.3f} |"
        )
    return rows


if __name__ == "__main__":
    print("\n".join(table(Path(sys.argv[1]))))
