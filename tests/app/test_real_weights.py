"""The service with the committed weights, on real MNIST test digits and real surnames."""

import asyncio
import io
from collections.abc import AsyncIterator
from pathlib import Path

import cv2
import httpx
import numpy as np
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
            if r.status_code == 422:  # the net abstained: counted wrong
                assert r.json()["type"].endswith("no-digit-found"), r.text
                out.append(-1)
                continue
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


def _drawings() -> dict[str, bytes]:
    """Things people draw on the demo canvas that are not digits (280 x 280 PNGs)."""
    out: dict[str, bytes] = {}
    letter = np.full((280, 280), 255, np.uint8)  # a hand-drawn capital A
    cv2.polylines(letter, [np.array([(70, 230), (140, 50), (210, 230)], np.int32)], False, 0, 16)
    cv2.line(letter, (100, 160), (180, 160), 0, 16)
    out["letter A"] = _png(letter)
    dot = np.full((280, 280), 255, np.uint8)
    cv2.circle(dot, (140, 140), 5, 0, -1)
    out["10 px dot"] = _png(dot)
    shapes = np.full((280, 280, 3), 255, np.uint8)
    cv2.circle(shapes, (90, 100), 45, (200, 30, 30), -1)
    cv2.rectangle(shapes, (150, 140), (240, 230), (30, 30, 200), -1)
    out["coloured shapes"] = _png(shapes)
    star = np.zeros((280, 280), np.uint8)  # light on dark, as the canvas draws
    turn = np.pi / 2 + np.arange(10) * np.pi / 5
    radii = np.where(np.arange(10) % 2 == 0, 110, 45)
    pts = np.stack([140 + radii * np.cos(turn), 140 - radii * np.sin(turn)], 1)
    cv2.polylines(star, [pts.astype(np.int32)], True, 255, 14)
    out["star"] = _png(star)
    return out


def _png(pixels: np.ndarray) -> bytes:
    ok, data = cv2.imencode(".png", pixels)
    assert ok
    return data.tobytes()


@pytest.mark.parametrize("model", ["digit-resnet", "digit-inception"])
async def test_drawings_that_are_not_digits_get_no_confident_digit(
    real_client: httpx.AsyncClient, model: str
) -> None:
    for what, data in _drawings().items():
        files = {"file": ("x.png", data, "image/png")}
        r = await real_client.post("/digit", files=files, params={"model": model})
        if r.status_code == 422:
            assert "digit" in r.json()["detail"], what
            continue
        assert r.status_code == 200, r.text
        assert r.json()["probability"] < 0.9, f"{what}: {r.json()['predictions']}"
