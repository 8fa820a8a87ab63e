"""``make soak``: mixed traffic at concurrency 64 for a set time, plus a decompression bomb.

Starts the service as ``make serve`` would (``python -m app``), measures its idle RSS, sends a
~1 MB PNG that declares 30000 x 30000 pixels and checks the peak RSS, then runs digits, names,
generation, bad requests and hostile or careless clients (lone surrogates in JSON, NaN pixels,
16-bit uploads, oversized headers, clients that leave mid-upload or mid-stream) for
``--minutes`` and reports requests, statuses, unexpected answers, p50/p99 latency and RSS at
minute 1 and at the end.
"""

import argparse
import asyncio
import io
import json
import os
import random
import re
import socket
import statistics
import struct
import subprocess
import sys
import time
import zlib
from collections import Counter, defaultdict
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

from app.memory import ALLOCATOR_ENV
from training.data import default_data_dir, load_mnist

ROOT = Path(__file__).resolve().parent.parent


def rss_mb(pid: int, field: str = "VmRSS") -> float:
    match = re.search(rf"{field}:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text())
    return int(match.group(1)) / 1024 if match else 0.0


def png_bomb(side: int = 30000) -> bytes:
    """A valid greyscale PNG of side x side black pixels: about 1 MB compressed."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    compressor = zlib.compressobj(9)
    row = b"\x00" * (side + 1)
    body = b"".join(compressor.compress(row) for _ in range(side)) + compressor.flush()
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", body) + chunk(b"IEND", b"")


def traffic() -> list[tuple[str, dict[str, object], set[int]]]:
    """(kind, httpx request kwargs, expected statuses) to draw from."""
    test = load_mnist(default_data_dir(), "test")
    pngs = []
    for img in test.images[:200]:
        buf = io.BytesIO()
        Image.fromarray(255 - img.numpy()).resize((120, 120)).save(buf, format="PNG")
        pngs.append(buf.getvalue())
    names = ["Nakamura", "Schmidt", "Иванов", "O'Brien", "Papadopoulos", "González", "Kowalski"]
    out: list[tuple[str, dict[str, object], set[int]]] = []
    for i, png in enumerate(pngs):
        model = "digit-resnet" if i % 2 else "digit-inception"
        out.append(
            (
                "digit",
                {
                    "method": "POST",
                    "url": f"/digit?model={model}",
                    "files": {"file": ("d.png", png, "image/png")},
                },
                {200},
            )
        )
    for name in names * 25:
        out.append(
            ("name", {"method": "POST", "url": "/classify-name", "json": {"name": name}}, {200})
        )
    for seed in range(40):
        out.append(
            (
                "generate",
                {
                    "method": "POST",
                    "url": "/char-rnn/generate",
                    "json": {"prompt": "KING:", "max_chars": 60, "seed": seed},
                },
                {200},
            )
        )
    bad = [
        ({"method": "POST", "url": "/classify-name", "json": {"name": "🙂"}}, {422}),
        (
            {
                "method": "POST",
                "url": "/classify-name",
                "content": b"{",
                "headers": {"content-type": "application/json"},
            },
            {422},
        ),
        (
            {
                "method": "POST",
                "url": "/digit",
                "files": {"file": ("x.png", b"not an image", "image/png")},
            },
            {400, 415},
        ),
        (
            {
                "method": "POST",
                "url": "/digit?model=vgg",
                "files": {"file": ("x.png", pngs[0], "image/png")},
            },
            {422},
        ),
        ({"method": "GET", "url": "/models/nope"}, {404}),
    ]
    out += [("bad", kw, expected) for kw, expected in bad * 12]
    json_headers = {"content-type": "application/json"}
    hostile = [
        (
            {
                "method": "POST",
                "url": "/classify-name",
                "content": b'{"name": "\\ud800"}',
                "headers": json_headers,
            },
            {422},
        ),
        (
            {
                "method": "POST",
                "url": "/classify-name/batch",
                "content": b'{"names": ["Smith", "\\udfff"]}',
                "headers": json_headers,
            },
            {422},
        ),
        (
            {"method": "POST", "url": "/digit", "files": {"file": ("n.tif", nan_tiff(), "")}},
            {422},
        ),
        (
            {"method": "POST", "url": "/digit", "files": {"file": ("d.png", deep_png(), "")}},
            {200},
        ),
        ({"method": "GET", "url": "/healthz", "headers": {"x-filler": "x" * 70_000}}, {431}),
    ]
    out += [("hostile", kw, expected) for kw, expected in hostile * 6]
    return out


def nan_tiff() -> bytes:
    """A float TIFF whose pixels are NaN."""
    buf = io.BytesIO()
    Image.fromarray(np.full((64, 64), np.nan, dtype=np.float32)).save(buf, format="TIFF")
    return buf.getvalue()


def deep_png() -> bytes:
    """A 16-bit greyscale 600 x 600 PNG of a dark 7 on light paper."""
    page = np.full((600, 600), 60_000, dtype=np.uint16)
    page[150:190, 150:450] = 3_000
    page[190:450, 380:420] = 3_000
    buf = io.BytesIO()
    Image.fromarray(page).save(buf, format="PNG")
    return buf.getvalue()


async def leave_early(host: str, port: int, end: float) -> Counter[str]:
    """Clients that go away: an upload cut off half-way, a stream closed after its first chunk.
    The server must take them as 499s and keep answering everyone else."""
    left: Counter[str] = Counter()
    body = b'--b\r\nContent-Disposition: form-data; name="file"; filename="d.png"\r\n\r\n'
    upload = (
        b"POST /digit HTTP/1.1\r\nHost: soak\r\n"
        b"Content-Type: multipart/form-data; boundary=b\r\n"
        b"Content-Length: 100000\r\n\r\n" + body + b"\x89PNG" + b"\0" * 2000
    )
    stream = json.dumps({"prompt": "KING:", "max_chars": 2000, "stream": True}).encode()
    generate = (
        b"POST /char-rnn/generate HTTP/1.1\r\nHost: soak\r\n"
        b"Content-Type: application/json\r\n"
        b"Content-Length: " + str(len(stream)).encode() + b"\r\n\r\n" + stream
    )
    while time.perf_counter() < end:
        for kind, request in (("upload", upload), ("stream", generate)):
            try:
                reader, writer = await asyncio.open_connection(host, port)
                writer.write(request)
                await writer.drain()
                if kind == "stream":
                    await asyncio.wait_for(reader.read(200), 10)
                writer.close()
                await writer.wait_closed()
                left[kind] += 1
            except (OSError, TimeoutError):
                left[f"{kind} failed to connect or answer"] += 1
        await asyncio.sleep(0.5)
    return left


async def soak(
    base: str, port: int, seconds: float, concurrency: int, pid: int
) -> dict[str, object]:
    pool = traffic()
    statuses: Counter[int] = Counter()
    unexpected: Counter[str] = Counter()
    latency: dict[str, list[float]] = defaultdict(list)
    rss: list[tuple[float, float]] = []
    started = time.perf_counter()
    end = started + seconds
    rng = random.Random(0)

    async def worker(client: httpx.AsyncClient) -> None:
        while time.perf_counter() < end:
            kind, kw, expected = rng.choice(pool)
            t = time.perf_counter()
            try:
                response = await client.request(**kw)  # type: ignore[arg-type]
                status = response.status_code
            except httpx.HTTPError as exc:
                status = 0
                unexpected[f"{kind}: {type(exc).__name__}"] += 1
            latency[kind].append((time.perf_counter() - t) * 1000)
            statuses[status] += 1
            if status and status not in expected:
                unexpected[f"{kind}: {status}"] += 1

    async def sample_rss() -> None:
        while time.perf_counter() < end:
            rss.append((time.perf_counter() - started, rss_mb(pid)))
            await asyncio.sleep(5)

    # Expire idle connections before the server's 5 s keep-alive does, so no request is sent
    # on a connection the server is closing.
    limits = httpx.Limits(max_connections=concurrency, keepalive_expiry=3)
    async with httpx.AsyncClient(base_url=base, timeout=60, limits=limits) as client:
        *_, left = await asyncio.gather(
            sample_rss(),
            *(worker(client) for _ in range(concurrency)),
            leave_early("127.0.0.1", port, end),
        )
    at_minute_1 = next((m for t, m in rss if t >= min(60, seconds / 5)), rss[0][1])
    return {
        "seconds": round(time.perf_counter() - started),
        "requests": sum(statuses.values()),
        "statuses": dict(sorted(statuses.items())),
        "unexpected": dict(unexpected),
        "left_early": dict(left),
        "latency_ms": {
            k: {
                "p50": round(statistics.median(v), 1),
                "p99": round(statistics.quantiles(v, n=100)[98], 1),
            }
            for k, v in latency.items()
            if len(v) > 1
        },
        "rss_mb_minute_1": round(at_minute_1, 1),
        "rss_mb_end": round(rss[-1][1], 1),
        "rss_growth_percent": round((rss[-1][1] - at_minute_1) / at_minute_1 * 100, 2),
        "rss_mb_each_minute": [round(m, 1) for t, m in rss if t % 60 < 5],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--minutes", type=float, default=5)
    parser.add_argument("--concurrency", type=int, default=64)
    args = parser.parse_args()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "app"],
        cwd=ROOT,
        env={
            **os.environ,
            **ALLOCATOR_ENV,  # as shipped
            "TINYZOO_PORT": str(port),
            "TINYZOO_THREADS": "1",
            "TINYZOO_LOG_LEVEL": "WARNING",
        },
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            try:
                if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        idle = rss_mb(proc.pid)
        bomb = png_bomb()
        r = httpx.post(f"{base}/digit", files={"file": ("bomb.png", bomb, "image/png")}, timeout=60)
        peak = rss_mb(proc.pid, "VmHWM")
        print(
            f"bomb: {len(bomb) / 1e6:.2f} MB PNG declaring 30000x30000 -> {r.status_code} "
            f"{r.json()['detail']!r}; idle RSS {idle:.0f} MB, peak RSS {peak:.0f} MB "
            f"(+{peak - idle:.0f} MB)"
        )
        report = asyncio.run(soak(base, port, args.minutes * 60, args.concurrency, proc.pid))
        for key, value in report.items():
            print(f"{key}: {value}")
    finally:
        proc.terminate()
        proc.wait(timeout=30)


if __name__ == "__main__":
    main()
