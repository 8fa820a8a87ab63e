"""The committed weights over the Open Inference Protocol: real MNIST test digits and real
surnames, through tritonclient and through the JSON encoding, answer as the typed routes do."""

import base64
import io
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import tritonclient.http as triton
from PIL import Image

from app.settings import Settings
from tests.app.live import live_server
from tests.conftest import WEIGHTS
from training.data import load_mnist

DIGITS = 500
CHUNK = 100
NAMES = ["Nguyen", "Иванов", "Nakamura", "Schmidt", "Papadopoulos", "O'Brien", "González", "Rossi"]


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    with live_server(Settings(weights_dir=WEIGHTS)) as url:
        yield url


@pytest.fixture(scope="module")
def mnist(data_dir: Path) -> tuple[list[bytes], np.ndarray]:
    test = load_mnist(data_dir, "test")
    pngs = []
    for img in test.images[:DIGITS]:
        buf = io.BytesIO()
        Image.fromarray(img.numpy()).save(buf, format="PNG")
        pngs.append(buf.getvalue())
    return pngs, test.labels[:DIGITS].numpy()


def typed_digits(http: httpx.Client, pngs: list[bytes]) -> np.ndarray:
    out = []
    for blob in pngs:
        response = http.post("/digit", files={"file": ("d.png", blob, "image/png")})
        assert response.status_code == 200
        out.append(response.json()["digit"])
    return np.array(out)


def test_500_mnist_pngs_through_tritonclient_score_as_post_digit(
    server: str, mnist: tuple[list[bytes], np.ndarray]
) -> None:
    pngs, labels = mnist
    client = triton.InferenceServerClient(url=server)
    served = []
    try:
        for start in range(0, len(pngs), CHUNK):
            chunk = pngs[start : start + CHUNK]
            tensor = triton.InferInput("image", [len(chunk)], "BYTES")
            tensor.set_data_from_numpy(np.array(chunk, dtype=np.object_))
            wanted = [triton.InferRequestedOutput("probabilities", class_count=1)]
            ranked = client.infer("digit-resnet", [tensor], outputs=wanted).as_numpy(
                "probabilities"
            )
            served += [int(row[0].decode().split(":")[2]) for row in ranked]
    finally:
        client.close()
    with httpx.Client(base_url=f"http://{server}", timeout=60) as http:
        typed = typed_digits(http, pngs)
    assert (np.array(served) == typed).all()
    assert (typed == labels).mean() >= 0.98


def test_500_mnist_pngs_in_the_json_encoding_score_as_post_digit(
    server: str, mnist: tuple[list[bytes], np.ndarray]
) -> None:
    pngs, _ = mnist
    served = []
    with httpx.Client(base_url=f"http://{server}", timeout=60) as http:
        for start in range(0, len(pngs), CHUNK):
            chunk = [base64.b64encode(b).decode() for b in pngs[start : start + CHUNK]]
            body = {
                "inputs": [
                    {"name": "image", "shape": [len(chunk)], "datatype": "BYTES", "data": chunk}
                ],
                "outputs": [{"name": "probabilities", "parameters": {"classification": 1}}],
            }
            response = http.post("/v2/models/digit-resnet/infer", json=body)
            assert response.status_code == 200
            served += [int(s.split(":")[2]) for s in response.json()["outputs"][0]["data"]]
        typed = typed_digits(http, pngs)
    assert (np.array(served) == typed).all()


def test_real_surnames_through_tritonclient_answer_as_classify_name(server: str) -> None:
    client = triton.InferenceServerClient(url=server)
    try:
        tensor = triton.InferInput("name", [len(NAMES)], "BYTES")
        tensor.set_data_from_numpy(np.array([n.encode() for n in NAMES], dtype=np.object_))
        wanted = [triton.InferRequestedOutput("probabilities", class_count=1)]
        ranked = client.infer("name-gru", [tensor], outputs=wanted).as_numpy("probabilities")
    finally:
        client.close()
    with httpx.Client(base_url=f"http://{server}", timeout=60) as http:
        typed = http.post("/classify-name/batch", json={"names": NAMES, "top_k": 1}).json()
    expected = [r["predictions"][0]["label"] for r in typed["results"]]
    assert [row[0].decode().split(":")[2] for row in ranked] == expected
