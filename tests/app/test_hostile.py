"""Hostile and careless clients against the service as ``make serve`` runs it (``python -m app``):
streams that finish, bounded memory, no 500s, connections that cannot be held open."""

import asyncio
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.app.launcher import Launched, launched


@pytest.fixture(scope="module")
def server(tiny_weights: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Launched]:
    log = tmp_path_factory.mktemp("hostile") / "server.log"
    with launched(tiny_weights, log, log_format="text") as s:
        yield s


def test_streamed_generations_beside_plain_ones_all_finish(server: Launched) -> None:
    async def stream(client: httpx.AsyncClient, seed: int) -> tuple[int, str]:
        body = {"prompt": "A", "max_chars": 2000, "seed": seed, "stream": True}
        async with client.stream("POST", "/char-rnn/generate", json=body) as response:
            return response.status_code, "".join([t async for t in response.aiter_text()])

    async def plain(client: httpx.AsyncClient, seed: int) -> int:
        body = {"prompt": "A", "max_chars": 2000, "seed": seed}
        return (await client.post("/char-rnn/generate", json=body)).status_code

    async def burst() -> list[object]:
        async with httpx.AsyncClient(base_url=server.url, timeout=60) as client:
            return await asyncio.gather(
                *(stream(client, i) for i in range(8)), *(plain(client, i) for i in range(5))
            )

    results = asyncio.run(burst())
    for status, text in results[:8]:  # type: ignore[misc]
        assert status == 200
        assert text.rstrip().endswith('"chars": 2000}'), text[-200:]
    assert results[8:] == [200] * 5
    assert "Traceback" not in server.log()
