"""The service with the committed weights, on real MNIST test digits and real surnames."""

import asyncio
import io
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import torch
from PIL import Image

from app.main import create_app
from app.settings import Settings
from models.checkpoint import load_checkpoint
from tests.conftest import WEIGHTS
from training.data import load_mnist
from training.digits import normalize

pytestmark = pytest.mark.anyio
DIGITS = 2000  # a fixed, class-balanced-enough slice of the 10,000 test digits


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
async def real_client() -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(Settings(weights_dir=WEIGHTS))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield client


def _encode(image: Image.Image, fmt: str) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format=fmt, quality=90) if fmt == "JPEG" else image.save(buf, format=fmt)
    return buf.getvalue()


async def _predict_all(
    client: httpx.AsyncClient, blobs: list[bytes], model: str, mime: str
) -> list[int]:
    out: list[int] = []
    for start in range(0, len(blobs), 64):
        responses = await asyncio.gather(
            *(
                client.post("/digit", params={"model": model}, files={"file": ("d", blob, mime)})
                for blob in blobs[start : start + 64]
            )
        )
        for r in responses:
            assert r.status_code == 200, r.text
            out.append(r.json()["digit"])
    return out


@pytest.mark.parametrize("model", ["digit-resnet", "digit-inception"])
async def test_mnist_pngs_score_as_well_as_the_raw_tensors(
    real_client: httpx.AsyncClient, data_dir: Path, model: str
) -> None:
    test = load_mnist(data_dir, "test")
    images, labels = test.images[:DIGITS], test.labels[:DIGITS]
    with torch.inference_mode():
        direct = load_checkpoint(WEIGHTS / model).model(normalize(images)).argmax(1)
    direct_acc = float((direct == labels).float().mean())
    pngs = [_encode(Image.fromarray(img.numpy()), "PNG") for img in images]
    served = torch.tensor(await _predict_all(real_client, pngs, model, "image/png"))
    served_acc = float((served == labels).float().mean())
    assert abs(served_acc - direct_acc) <= 0.001, (served_acc, direct_acc)


async def test_dark_on_white_200px_jpegs_score_at_least_99(
    real_client: httpx.AsyncClient, data_dir: Path
) -> None:
    test = load_mnist(data_dir, "test")
    images, labels = test.images[:1000], test.labels[:1000]
    jpegs = []
    for img in images:
        page = Image.fromarray(255 - img.numpy()).convert("RGB")
        jpegs.append(_encode(page.resize((200, 200), Image.Resampling.BICUBIC), "JPEG"))
    served = torch.tensor(await _predict_all(real_client, jpegs, "digit-resnet", "image/jpeg"))
    assert float((served == labels).float().mean()) >= 0.99


@pytest.mark.parametrize(
    ("name", "country"),
    [
        ("Nguyen", "Vietnamese"),
        ("Иванов", "Russian"),
        ("Nakamura", "Japanese"),
        ("Schmidt", "German"),
        ("Papadopoulos", "Greek"),
        ("O'Brien", "Irish"),
        ("González", "Spanish"),
    ],
)
async def test_clear_surnames_get_their_country_first(
    real_client: httpx.AsyncClient, name: str, country: str
) -> None:
    response = await real_client.post("/classify-name", json={"name": name})
    assert response.status_code == 200
    assert response.json()["predictions"][0]["label"] == country


async def test_hello_transduces_to_ohlol(real_client: httpx.AsyncClient) -> None:
    response = await real_client.post("/char-rnn/transduce", json={"text": "hello"})
    body = response.json()
    assert body["output"] == "ohlol"
    assert all(step["probability"] > 0.5 for step in body["steps"])
