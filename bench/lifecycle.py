"""``python -m bench.lifecycle``: models unloaded and loaded again under traffic, through
``python -m app`` with the committed weights.

For each model in turn: 6 clients send continuously through its typed route and ``/v2`` (3
each) while the model is unloaded and loaded again every 0.3 s for 10 s. Reported per model:
answers by status, answers that are 5xx other than 503 (must be 0), requests that waited past
the deadline (must be 0), and answers from an unloaded version: a 200 to a request sent after an
unload had finished and answered before the next load was asked for (must be 0).
"""

import argparse
import asyncio
import base64
import collections
import io
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
ADMIN = {"Authorization": "Bearer lifecycle"}
DEADLINE_S = 5.0


def _png() -> bytes:
    img = np.zeros((28, 28), np.uint8)
    img[5:23, 12:16] = 255
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    return buf.getvalue()


def _v2(name: str, values: list[str]) -> dict[str, Any]:
    return {"inputs": [{"name": name, "shape": [len(values)], "datatype": "BYTES", "data": values}]}


PNG = _png()
CALLS: dict[str, list[tuple[str, dict[str, Any]]]] = {
    "name-gru": [
        ("/classify-name", {"json": {"name": "Kowalski"}}),
        ("/v2/models/name-gru/infer", {"json": _v2("name", ["Kowalski"])}),
    ],
    "digit-resnet": [
        ("/digit", {"files": {"file": ("d.png", PNG, "image/png")}}),
        (
            "/v2/models/digit-resnet/infer",
            {"json": _v2("image", [base64.b64encode(PNG).decode()])},
        ),
    ],
    "char-rnn-hello": [
        ("/char-rnn/transduce", {"json": {"text": "hello"}}),
        ("/v2/models/char-rnn-hello/infer", {"json": _v2("text", ["hello"])}),
    ],
}


class Swaps:
    """When each unload finished and each load was asked for, on the monotonic clock."""

    def __init__(self) -> None:
        self.gaps: list[tuple[float, float]] = []
        self.unloaded_at: float | None = None

    def unloaded(self) -> None:
        self.unloaded_at = time.monotonic()

    def loading(self) -> None:
        if self.unloaded_at is not None:
            self.gaps.append((self.unloaded_at, time.monotonic()))
            self.unloaded_at = None

    def in_gap(self, sent: float, answered: float) -> bool:
        return any(start <= sent and answered <= end for start, end in self.gaps)


async def _client(
    client: httpx.AsyncClient, path: str, kwargs: dict[str, Any], until: float, out: list[Any]
) -> None:
    while time.monotonic() < until:
        sent = time.monotonic()
        try:
            response = await client.post(path, timeout=DEADLINE_S * 2, **kwargs)
            status = response.status_code
        except httpx.TimeoutException:
            status = -1
        out.append((sent, time.monotonic(), status))


async def run_model(url: str, model: str, seconds: float, every_s: float) -> dict[str, Any]:
    swaps = Swaps()
    results: list[tuple[float, float, int]] = []
    limits = httpx.Limits(max_connections=16)
    async with httpx.AsyncClient(base_url=url, limits=limits) as client:
        until = time.monotonic() + seconds
        workers = [
            asyncio.ensure_future(_client(client, path, kwargs, until, results))
            for path, kwargs in CALLS[model]
            for _ in range(3)
        ]
        cycles = 0
        while time.monotonic() < until:
            response = await client.post(f"/v2/repository/models/{model}/unload", headers=ADMIN)
            assert response.status_code == 200, response.text
            swaps.unloaded()
            await asyncio.sleep(every_s / 2)
            swaps.loading()
            response = await client.post(f"/v2/repository/models/{model}/load", headers=ADMIN)
            assert response.status_code == 200, response.text
            cycles += 1
            await asyncio.sleep(every_s / 2)
        await asyncio.gather(*workers)
    statuses = collections.Counter(status for _, _, status in results)
    return {
        "model": model,
        "cycles": cycles,
        "answers": len(results),
        "statuses": dict(sorted(statuses.items())),
        "5xx other than 503": sum(n for s, n in statuses.items() if s >= 500 and s != 503),
        "past the deadline": statuses.get(-1, 0)
        + sum(1 for sent, done, _ in results if done - sent > DEADLINE_S),
        "from an unloaded version": sum(
            1 for sent, done, status in results if status == 200 and swaps.in_gap(sent, done)
        ),
    }


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--every", type=float, default=0.3, help="seconds per unload + load")
    args = parser.parse_args()
    port = _free_port()
    env = {
        **os.environ,
        "TINYZOO_PORT": str(port),
        "TINYZOO_ADMIN_KEY": ADMIN["Authorization"].split()[1],
        "TINYZOO_REQUEST_TIMEOUT_S": str(DEADLINE_S),
        "TINYZOO_THREADS": "1",
    }
    server = subprocess.Popen(
        [sys.executable, "-m", "app"], cwd=ROOT, env=env, stderr=subprocess.DEVNULL
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            try:
                if httpx.get(f"{url}/readyz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        print(
            "| model | unload+load cycles | answers | by status | 5xx not 503 | past deadline "
            "| from an unloaded version |"
        )
        print("| --- | ---: | ---: | --- | ---: | ---: | ---: |")
        for model in CALLS:
            r = asyncio.run(run_model(url, model, args.seconds, args.every))
            print(
                f"| {model} | {r['cycles']} | {r['answers']} | {r['statuses']} | "
                f"{r['5xx other than 503']} | {r['past the deadline']} | "
                f"{r['from an unloaded version']} |"
            )
    finally:
        server.terminate()
        server.wait(30)


if __name__ == "__main__":
    main()
