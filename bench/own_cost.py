"""``python -m bench.own_cost``: the service's own CPU per ``POST /digit``, in process.

Three apps answer the same multipart uploads through ASGI calls (no HTTP), 64 at a time, on one
core: a bare FastAPI multipart echo; an app with ``POST /digit``'s FastAPI signature (its query
parameters, dependencies and response model) and a trivial body; and the service itself. Beside
them, the steps the service cannot do without, measured alone: decoding and preprocessing each
upload, and the model (batches of 64, divided by 64). The service's own cost is what is left:

    own = service - signature - decode - preprocess - model

CPU time is the process's (every thread), per request, median of ``--rounds`` rounds over the
same distinct uploads (``bench.corpus``: 400 thick scans and 400 cropped scans by default).
``--profile`` prints the service's own functions by their CPU time (cProfile).
"""

import argparse
import asyncio
import contextlib
import cProfile
import pstats
import statistics
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, Literal

import cv2
import torch
from fastapi import Depends, FastAPI, File, Query, Request, UploadFile

from app.main import create_app
from app.schemas import DigitResponse, Prediction
from app.services.digits import DigitNet, Limits, Pipeline
from app.settings import Settings
from bench import corpus
from models.checkpoint import load_checkpoint

ROOT = Path(__file__).resolve().parent.parent
BOUNDARY = "tinyzoo-bench-boundary"
CONCURRENCY = 64
ASGIApp = Callable[[dict[str, Any], Any, Any], Awaitable[None]]


def multipart(data: bytes, ext: str) -> bytes:
    return b"".join(
        (
            f"--{BOUNDARY}\r\n".encode(),
            f'Content-Disposition: form-data; name="file"; filename="d.{ext}"\r\n'.encode(),
            f"Content-Type: image/{'jpeg' if ext == 'jpg' else ext}\r\n\r\n".encode(),
            data,
            f"\r\n--{BOUNDARY}--\r\n".encode(),
        )
    )


async def call(app: ASGIApp, body: bytes) -> int:
    """One ``POST /digit`` through the app's ASGI interface; its status."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/digit",
        "raw_path": b"/digit",
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", b"bench"),
            (b"content-type", f"multipart/form-data; boundary={BOUNDARY}".encode()),
            (b"content-length", str(len(body)).encode()),
        ],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 8000),
        "state": {},
    }
    sent = False
    status = 0
    answered = asyncio.Event()

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await answered.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
        elif not message.get("more_body", False):
            answered.set()

    await app(scope, receive, send)
    return status


async def drive(app: ASGIApp, bodies: list[bytes]) -> float:
    """CPU seconds per request for all ``bodies``, ``CONCURRENCY`` at a time."""
    started = time.process_time()
    for first in range(0, len(bodies), CONCURRENCY):
        statuses = await asyncio.gather(
            *(call(app, b) for b in bodies[first : first + CONCURRENCY])
        )
        assert all(s in (200, 422) for s in statuses), statuses
    return (time.process_time() - started) / len(bodies)


def bare_app() -> FastAPI:
    app = FastAPI()

    @app.post("/digit")
    async def digit(file: Annotated[UploadFile, File()]) -> dict[str, int]:
        return {"bytes": len(await file.read())}

    return app


ANSWER = DigitResponse(
    digit=7,
    probability=0.99,
    model="digit-resnet",
    version="1",
    predictions=[Prediction(label="7", probability=0.99)],
)


def signature_app() -> FastAPI:
    """``POST /digit``'s signature: query parameters, two async dependencies, a response model."""
    app = FastAPI()

    async def ready(request: Request) -> None:
        return None

    async def gone(request: Request) -> Callable[[], Awaitable[bool]]:
        return request.is_disconnected

    @app.post("/digit", response_model=DigitResponse, response_model_exclude_none=True)
    async def digit(
        request: Request,
        ready_: Annotated[None, Depends(ready)],
        gone_: Annotated[Any, Depends(gone)],
        file: Annotated[UploadFile | None, File()] = None,
        model: Annotated[Literal["digit-resnet", "digit-inception"], Query()] = "digit-resnet",
        top_k: Annotated[int, Query(ge=1, le=10)] = 3,
        debug: Annotated[bool, Query()] = False,
        answer_anyway: Annotated[bool, Query()] = False,
    ) -> DigitResponse:
        assert file is not None
        await file.read()
        return ANSWER

    return app


def steps(samples: list[corpus.Sample]) -> tuple[float, float, float]:
    """CPU seconds per upload of decoding, of preprocessing, and of the model (batches of 64).

    Decoding and preprocessing are timed one upload after the other, as the service runs them
    (timed as two passes over all uploads, each step would find the caches warm for it and cost
    about 0.06 ms less)."""
    pipeline = Pipeline(Limits(max_pixels=50_000_000, max_decoded_bytes=200 * 1024 * 1024))
    decode = preprocess = 0.0
    images = []
    for sample in samples:
        started = time.process_time()
        grey = pipeline.decode(pipeline.open(sample.data))
        decoded = time.process_time()
        with contextlib.suppress(Exception):  # a blank scan: a 422, and no model
            images.append(pipeline.preprocess(grey))
        preprocess += time.process_time() - decoded
        decode += decoded - started
    net = DigitNet(load_checkpoint(ROOT / "weights" / "digit-resnet"), torch.device("cpu"))
    batches = [images[i : i + CONCURRENCY] for i in range(0, len(images), CONCURRENCY)]
    net.score_batch(batches[0])
    started = time.process_time()
    for batch in batches:
        net.score_batch(batch)
    model = (time.process_time() - started) / len(samples)
    return decode / len(samples), preprocess / len(samples), model


async def measure(rounds: int, bodies: list[bytes], profile: bool) -> dict[str, float]:
    settings = Settings(threads=1, preprocess_threads=1)
    service = create_app(settings)
    results: dict[str, list[float]] = {"bare": [], "signature": [], "service": []}
    async with service.router.lifespan_context(service):
        apps: dict[str, ASGIApp] = {"bare": bare_app(), "signature": signature_app()}
        apps["service"] = service
        for app in apps.values():
            await drive(app, bodies[:CONCURRENCY])  # warm-up
        for _ in range(rounds):
            for name, app in apps.items():
                results[name].append(await drive(app, bodies))
        if profile:
            profiler = cProfile.Profile(time.process_time)
            profiler.enable()
            await drive(service, bodies)
            profiler.disable()
            stats = pstats.Stats(profiler)
            stats.sort_stats("tottime").print_stats(30)
            stats.sort_stats("cumulative").print_stats(r"tinyzoo|/app/|starlette|fastapi", 40)
    return {name: statistics.median(values) for name, values in results.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--per-kind", type=int, default=400)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    samples = corpus.build("scan-thick", args.per_kind) + corpus.build("scan-crop", args.per_kind)
    bodies = [multipart(s.data, s.ext) for s in samples]
    cpu = asyncio.run(measure(args.rounds, bodies, args.profile))
    decode, preprocess, model = steps(samples)
    own = cpu["service"] - cpu["signature"] - decode - preprocess - model
    rows = [
        ("bare FastAPI multipart echo", cpu["bare"]),
        ("POST /digit's FastAPI signature, trivial body", cpu["signature"]),
        ("the service's POST /digit", cpu["service"]),
        ("of which decode", decode),
        ("of which preprocess", preprocess),
        ("of which the model (batches of 64)", model),
        ("the service's own cost", own),
    ]
    print(f"{len(samples)} scans, {CONCURRENCY} at a time, one core, CPU ms per request\n")
    print("| | ms |\n| --- | ---: |")
    for label, seconds in rows:
        print(f"| {label} | {seconds * 1000:.3f} |")
    print(f"\nFastAPI's share (signature - bare): {(cpu['signature'] - cpu['bare']) * 1000:.3f} ms")


if __name__ == "__main__":
    main()
