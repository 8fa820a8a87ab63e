"""``python -m bench.reload``: live version swaps with the committed weights, in one process.

Copies ``weights/`` to a temporary repository, adds digit-resnet versions 2 and 3 (the committed
weights with a little noise, so that their answers differ) and a corrupted version 4, then:

1. 500 MNIST test digits as PNGs through ``POST /v2/models/digit-resnet/infer`` (BYTES,
   classification 1) and through ``POST /digit``: agreement and accuracy;
2. 8 clients sending continuously (6 on ``/digit``, 2 on ``/v2`` infer) through 3 loads and
   one load of the corrupted version: requests, failures, and answers from an old version to
   requests sent after a swap;
3. RSS before and after 20 more reloads.
"""

import asyncio
import base64
import gc
import io
import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import torch
from PIL import Image
from safetensors.torch import load_file

from app.main import create_app
from app.settings import Settings
from models import build_model
from models.checkpoint import CARD_FILE, save_checkpoint
from training.data import default_data_dir, load_mnist

ROOT = Path(__file__).resolve().parent.parent
MODEL = "digit-resnet"
ADMIN = {"Authorization": "Bearer bench"}


def add_version(root: Path, version: str, noise: float, *, corrupt: bool = False) -> None:
    card = json.loads((root / MODEL / CARD_FILE).read_text())
    tensors = load_file(str(root / MODEL / "model.safetensors"))
    net = build_model(card["architecture"], card["config"])
    torch.manual_seed(int(version))
    net.load_state_dict({k: v + noise * torch.randn_like(v) for k, v in tensors.items()})
    for key in ("weights_sha256", "num_parameters"):
        card.pop(key)
    save_checkpoint(root / MODEL / version, net, card)
    if corrupt:
        path = root / MODEL / version / "model.safetensors"
        path.write_bytes(path.read_bytes()[:-8] + b"\0" * 8)


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


async def agreement(client: httpx.AsyncClient, pngs: list[bytes], labels: list[int]) -> None:
    served: list[int] = []
    for start in range(0, len(pngs), 100):
        chunk = [base64.b64encode(b).decode() for b in pngs[start : start + 100]]
        body = {
            "inputs": [
                {"name": "image", "shape": [len(chunk)], "datatype": "BYTES", "data": chunk}
            ],
            "outputs": [{"name": "probabilities", "parameters": {"classification": 1}}],
        }
        r = await client.post(f"/v2/models/{MODEL}/infer", json=body)
        served += [int(s.split(":")[2]) for s in r.json()["outputs"][0]["data"]]
    typed = []
    for blob in pngs:
        r = await client.post("/digit", files={"file": ("d.png", blob, "image/png")})
        typed.append(r.json()["digit"])
    agree = sum(a == b for a, b in zip(served, typed, strict=True))
    accuracy = sum(a == b for a, b in zip(served, labels, strict=True)) / len(labels)
    print(f"MNIST: {agree}/{len(pngs)} answers agree (/v2 vs /digit); accuracy {accuracy:.3f}")


async def under_load(client: httpx.AsyncClient, root: Path, pngs: list[bytes]) -> None:
    log: list[tuple[float, int, str]] = []
    stop = asyncio.Event()

    async def typed(i: int) -> None:
        while not stop.is_set():
            sent, blob = time.perf_counter(), pngs[i % len(pngs)]
            r = await client.post("/digit", files={"file": ("d.png", blob, "image/png")})
            log.append((sent, r.status_code, r.json().get("version", "")))
            i += 8

    async def protocol(i: int) -> None:
        while not stop.is_set():
            sent = time.perf_counter()
            data = [base64.b64encode(pngs[(i + k) % len(pngs)]).decode() for k in range(4)]
            body = {"inputs": [{"name": "image", "shape": [4], "datatype": "BYTES", "data": data}]}
            r = await client.post(f"/v2/models/{MODEL}/infer", json=body)
            log.append((sent, r.status_code, r.json().get("model_version", "")))
            i += 8

    tasks = [asyncio.create_task(typed(i)) for i in range(6)]
    tasks += [asyncio.create_task(protocol(i)) for i in range(6, 8)]
    swaps: list[tuple[float, str]] = []
    loads: list[float] = []
    refused: list[str] = []
    for body in (
        {"parameters": {"version": "2"}},
        None,
        "corrupt",
        {"parameters": {"version": "2"}},
    ):
        await asyncio.sleep(1.0)
        loads.append(time.perf_counter())
        if body == "corrupt":
            add_version(root, "4", 0.01, corrupt=True)
            r = await client.post(f"/v2/repository/models/{MODEL}/load", headers=ADMIN)
            refused.append(f"{r.status_code} {r.json()['error'][:90]}...")
            continue
        r = await client.post(f"/v2/repository/models/{MODEL}/load", json=body, headers=ADMIN)
        swaps.append((time.perf_counter(), r.json()["version"]))
    await asyncio.sleep(1.0)
    stop.set()
    await asyncio.gather(*tasks)
    failed = sum(1 for _, status, _ in log if status != 200)
    stale = 0
    for when, version in swaps:
        until = min((t for t in loads if t > when), default=float("inf"))
        stale += sum(1 for sent, _, v in log if when < sent < until and v != version)
    print(f"8 clients, 3 loads ({' -> '.join(v for _, v in swaps)}) and a corrupted version:")
    print(
        f"  {len(log)} requests, {failed} failed; {stale} answered by an old version after a swap"
    )
    print(f"  corrupted version: {refused[0]}")


async def main() -> None:
    data = load_mnist(default_data_dir(), "test")
    pngs = []
    for img in data.images[:500]:
        buf = io.BytesIO()
        Image.fromarray(img.numpy()).save(buf, format="PNG")
        pngs.append(buf.getvalue())
    labels = data.labels[:500].tolist()
    with tempfile.TemporaryDirectory(prefix="tinyzoo-reload-") as tmp:
        root = Path(tmp) / "weights"
        shutil.copytree(ROOT / "weights", root)
        app = create_app(Settings(weights_dir=root, admin_key="bench", device="cpu"))
        async with app.router.lifespan_context(app):
            add_version(root, "2", 0.01)
            add_version(root, "3", 0.02)
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
                await agreement(client, pngs, labels)
                await under_load(client, root, pngs)
                gc.collect()
                before = rss_mb()
                for i in range(20):
                    body: dict[str, Any] = {"parameters": {"version": str(2 + i % 2)}}
                    url = f"/v2/repository/models/{MODEL}/load"
                    r = await client.post(url, json=body, headers=ADMIN)
                    assert r.status_code == 200, r.text
                gc.collect()
                after = rss_mb()
                print(
                    f"RSS before 20 reloads {before:.0f} MB, after {after:.0f} MB "
                    f"({(after / before - 1) * 100:+.1f} %)"
                )


if __name__ == "__main__":
    asyncio.run(main())
