"""Model versions and the repository extension: index, load (verified, checked, swapped in
under load), unload, the admin key."""

import asyncio
import io
import json
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import torch
from PIL import Image

from app.settings import Settings
from models import InceptionNet, InceptionNetConfig, ResNet, ResNetConfig
from models.checkpoint import CARD_FILE, CheckpointError, save_checkpoint
from tests.app.conftest import write_tiny_weights

pytestmark = pytest.mark.anyio
ADMIN = {"Authorization": "Bearer admin-secret"}
MODEL = "digit-resnet"


def png() -> bytes:
    img = np.zeros((28, 28), np.uint8)
    img[5:23, 12:16] = 255
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    return buf.getvalue()


def add_version(
    root: Path,
    version: str,
    seed: int,
    *,
    corrupt: bool = False,
    nan: bool = False,
    model: str = MODEL,
) -> None:
    """Write ``<model>/<version>/``: new random weights with the served card's meaning."""
    card = json.loads((root / model / CARD_FILE).read_text())
    for key in ("weights_sha256", "num_parameters"):
        card.pop(key)
    torch.manual_seed(seed)
    net = ResNet(ResNetConfig()) if model == MODEL else InceptionNet(InceptionNetConfig())
    if nan:
        with torch.no_grad():
            net.fc.weight.fill_(float("nan"))
    save_checkpoint(root / model / version, net, card)
    if corrupt:
        weights = root / model / version / "model.safetensors"
        data = bytearray(weights.read_bytes())
        data[-8:] = b"\x00" * 8
        weights.write_bytes(bytes(data))


@pytest.fixture
def weights(tmp_path: Path) -> Path:
    return write_tiny_weights(tmp_path / "weights")


@pytest.fixture
def admin_settings(weights: Path) -> Settings:
    return Settings(weights_dir=weights, max_wait_ms=1.0, admin_key="admin-secret")


async def load(client: httpx.AsyncClient, body: dict[str, Any] | None = None) -> httpx.Response:
    return await client.post(f"/v2/repository/models/{MODEL}/load", json=body, headers=ADMIN)


async def digit(client: httpx.AsyncClient) -> dict[str, Any]:
    response = await client.post("/digit", files={"file": ("d.png", png(), "image/png")})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_repository_routes_are_off_without_an_admin_key(
    make_client: Callable[..., Any], weights: Path
) -> None:
    async with make_client(Settings(weights_dir=weights, api_key="user-key")) as client:
        for path in ("/v2/repository/index", f"/v2/repository/models/{MODEL}/load"):
            response = await client.post(path, headers={"Authorization": "Bearer user-key"})
            assert response.status_code == 403
            assert "no admin key" in response.json()["error"]


async def test_the_admin_key_is_required(
    make_client: Callable[..., Any], admin_settings: Settings
) -> None:
    async with make_client(admin_settings) as client:
        for headers in ({}, {"Authorization": "Bearer wrong"}):
            response = await client.post("/v2/repository/index", headers=headers)
            assert response.status_code == 401
            assert "admin key" in response.json()["error"]


async def test_index_load_rollback_and_refusals(
    make_client: Callable[..., Any], admin_settings: Settings, weights: Path
) -> None:
    async with make_client(admin_settings) as client:
        add_version(weights, "2", seed=2)  # a version dropped in is not served until loaded
        index = (await client.post("/v2/repository/index", headers=ADMIN)).json()
        states = {(m["name"], m["version"]): m["state"] for m in index if m["name"] == MODEL}
        assert states == {(MODEL, "1"): "READY", (MODEL, "2"): "UNAVAILABLE"}
        before = await digit(client)
        assert before["version"] == "1"

        response = await load(client)
        assert response.status_code == 200, response.text
        assert response.json() == {"name": MODEL, "version": "2", "previous_version": "1"}
        after = await digit(client)
        assert after["version"] == "2"
        assert after["predictions"] != before["predictions"]
        assert (await client.get(f"/models/{MODEL}")).json()["version"] == "2"
        assert (await client.get(f"/v2/models/{MODEL}")).json()["versions"] == ["2"]
        metrics = (await client.get("/metrics")).text
        info = rf'tinyzoo_model_info\{{[^}}]*model="{MODEL}"[^}}]*version="(\d)"[^}}]*\}} (\S+)'
        assert dict(re.findall(info, metrics)) == {"1": "0.0", "2": "1.0"}

        add_version(weights, "3", seed=3, corrupt=True)
        refused = await load(client)
        assert refused.status_code == 400
        assert "sha256 mismatch" in refused.json()["error"]
        assert "version 2 keeps serving" in refused.json()["error"]
        assert (await digit(client))["version"] == "2"

        add_version(weights, "4", seed=4, nan=True)
        refused = await load(client, {"parameters": {"version": "4"}})
        assert refused.status_code == 400
        assert "probe batch" in refused.json()["error"]
        assert (await digit(client))["version"] == "2"

        # Roll back as tritonclient asks for a version: a model config naming it.
        config = json.dumps({"version_policy": {"specific": {"versions": [1]}}})
        response = await load(client, {"parameters": {"config": config}})
        assert response.json()["version"] == "1"
        assert (await digit(client))["predictions"] == before["predictions"]
        missing = await load(client, {"parameters": {"version": "9"}})
        assert missing.status_code == 404
        outside = await client.post("/v2/repository/models/../load", headers=ADMIN)
        assert outside.status_code == 404
        outside = await client.post("/v2/repository/models/%2E%2E/load", headers=ADMIN)
        assert outside.status_code == 404
        assert (
            'tinyzoo_model_loads_total{model="digit-resnet",outcome="refused"} 2.0'
            in (await client.get("/metrics")).text
        )


async def test_unload_and_load_again(
    make_client: Callable[..., Any], admin_settings: Settings
) -> None:
    async with make_client(admin_settings) as client:
        response = await client.post(f"/v2/repository/models/{MODEL}/unload", headers=ADMIN)
        assert response.json() == {"name": MODEL, "version": "1"}
        assert (await client.get(f"/v2/models/{MODEL}/ready")).status_code == 400
        assert (await client.get(f"/v2/models/{MODEL}")).status_code == 503
        typed = await client.post("/digit", files={"file": ("d.png", png(), "image/png")})
        assert typed.status_code == 503
        assert MODEL not in {m["name"] for m in (await client.get("/models")).json()["models"]}
        assert (await load(client)).json() == {
            "name": MODEL,
            "version": "1",
            "previous_version": None,
        }
        assert (await digit(client))["version"] == "1"
        assert (await client.get(f"/v2/models/{MODEL}/ready")).status_code == 200


async def test_several_workers_refuse_a_load(
    make_client: Callable[..., Any], admin_settings: Settings
) -> None:
    async with make_client(admin_settings.model_copy(update={"workers": 2})) as client:
        response = await load(client)
        assert response.status_code == 409
        assert "2 worker processes" in response.json()["error"]


async def test_model_json_names_the_default_version(
    make_client: Callable[..., Any], admin_settings: Settings, weights: Path
) -> None:
    add_version(weights, "2", seed=2)
    add_version(weights, "3", seed=3)
    (weights / MODEL / "model.json").write_text('{"default_version": "2"}')
    async with make_client(admin_settings) as client:
        assert (await digit(client))["version"] == "2"
    (weights / MODEL / "model.json").unlink()
    async with make_client(admin_settings) as client:
        assert (await digit(client))["version"] == "3"


async def test_version_1_twice_stops_startup(
    make_client: Callable[..., Any], admin_settings: Settings, weights: Path
) -> None:
    add_version(weights, "1", seed=1)
    with pytest.raises(CheckpointError, match="version 1 is here twice"):
        async with make_client(admin_settings):
            pass


async def test_swaps_under_eight_clients_fail_no_request(
    make_client: Callable[..., Any], admin_settings: Settings, weights: Path
) -> None:
    """8 clients send continuously (6 on /digit, 2 on /v2 infer) through 3 reloads and one
    corrupted version: every request answers 200, the corrupted version is refused, and every
    request sent after a swap is answered by the new version."""
    image = png()
    v2_body = {
        "inputs": [
            {"name": "pixels", "shape": [1, 28, 28], "datatype": "FP32", "data": [0.0] * 784}
        ]
    }
    log: list[tuple[float, float, int, str, float]] = []
    stop = asyncio.Event()

    async def typed_client(client: httpx.AsyncClient) -> None:
        while not stop.is_set():
            sent = time.perf_counter()
            r = await client.post("/digit", files={"file": ("d.png", image, "image/png")})
            body = r.json()
            version = body.get("version", "")
            prob = body["predictions"][0]["probability"] if r.status_code == 200 else -1
            log.append((sent, time.perf_counter(), r.status_code, version, prob))

    async def protocol_client(client: httpx.AsyncClient) -> None:
        while not stop.is_set():
            sent = time.perf_counter()
            r = await client.post(f"/v2/models/{MODEL}/infer", json=v2_body)
            version = r.json().get("model_version", "")
            log.append((sent, time.perf_counter(), r.status_code, "v2:" + version, 0.0))

    async with make_client(admin_settings) as client:
        add_version(weights, "2", seed=2)
        add_version(weights, "3", seed=3)
        clients = [asyncio.create_task(typed_client(client)) for _ in range(6)]
        clients += [asyncio.create_task(protocol_client(client)) for _ in range(2)]
        swaps: list[tuple[float, str]] = []
        loads: list[float] = []  # when each load was asked for
        await asyncio.sleep(0.3)
        for body, expected in ((None, "3"), ({"parameters": {"version": "2"}}, "2")):
            loads.append(time.perf_counter())
            response = await load(client, body)
            assert response.json()["version"] == expected
            swaps.append((time.perf_counter(), expected))
            await asyncio.sleep(0.3)
        add_version(weights, "4", seed=4, corrupt=True)
        loads.append(time.perf_counter())
        refused = await load(client)
        assert refused.status_code == 400
        assert "sha256 mismatch" in refused.json()["error"]
        await asyncio.sleep(0.3)
        loads.append(time.perf_counter())
        response = await load(client, {"parameters": {"version": "3"}})
        swaps.append((time.perf_counter(), "3"))
        await asyncio.sleep(0.3)
        stop.set()
        await asyncio.gather(*clients)

    assert len(log) > 100
    assert [entry for entry in log if entry[2] != 200] == []
    for when, version in swaps:
        # Sent after this swap, before the next load was asked for.
        until = min((t for t in loads if t > when), default=float("inf"))
        after = [e for e in log if when < e[0] < until]
        assert after, "no request was sent after a swap"
        assert {e[3].removeprefix("v2:") for e in after} == {version}
        # Answered by the old version after the swap: at most the batch that was running.
        late = [e for e in log if e[0] < when < e[1] and e[3].removeprefix("v2:") != version]
        assert len(late) <= admin_settings.max_batch_size
    by_version: dict[str, set[float]] = {}
    for _, _, _, version, prob in log:
        if not version.startswith("v2:"):
            by_version.setdefault(version, set()).add(prob)
    # One answer per version for the one image: each version's net answered under its name.
    assert all(len(probs) == 1 for probs in by_version.values()), by_version
    assert len({next(iter(p)) for p in by_version.values()}) == len(by_version)


def rss_bytes() -> int:
    """This process's resident set size."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


async def test_rss_after_20_reloads_stays_within_10_percent(
    make_client: Callable[..., Any], admin_settings: Settings, weights: Path
) -> None:
    """Each reload builds a net (the Inception one folded into its matrices) and drops the old
    one: 20 reloads of each digit model leave the process no bigger than 10 % more."""
    async with make_client(admin_settings) as client:
        for model in (MODEL, "digit-inception"):
            add_version(weights, "2", seed=2, model=model)
        await digit(client)
        before = rss_bytes()
        for i in range(20):
            for model in (MODEL, "digit-inception"):
                body = {"parameters": {"version": str(1 + i % 2)}}
                url = f"/v2/repository/models/{model}/load"
                response = await client.post(url, json=body, headers=ADMIN)
                assert response.status_code == 200, response.text
            await digit(client)
        after = rss_bytes()
    assert after <= before * 1.10, (before, after)
