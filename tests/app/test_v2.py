"""The Open Inference Protocol v2 routes, through tritonclient (a real outside client) against
the app on a loopback port, and through httpx with the JSON encoding."""

import base64
import io
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import tritonclient.http as triton
from PIL import Image
from tritonclient.utils import InferenceServerException

from app.settings import Settings
from tests.app.conftest import COUNTRIES
from tests.app.live import live_server

MODELS = ["char-rnn-hello", "char-rnn-shakespeare", "digit-inception", "digit-resnet", "name-gru"]
API_KEY = "k-test"
AUTH = {"Authorization": f"Bearer {API_KEY}"}


def png(pixels: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()


def strokes() -> list[np.ndarray]:
    """A few distinct 28 x 28 ink shapes (white on black, like MNIST)."""
    out = []
    for i in range(6):
        img = np.zeros((28, 28), np.uint8)
        img[5 + i : 23, 10 + i : 14 + i] = 255
        img[5 + i : 8 + i, 6 : 22 - i] = 255 if i % 2 else 0
        out.append(img)
    return out


PNG64 = base64.b64encode(png(strokes()[0])).decode()


@pytest.fixture(scope="module")
def server(tiny_weights: Path) -> Iterator[str]:
    settings = Settings(weights_dir=tiny_weights, max_wait_ms=1.0, api_key=API_KEY)
    with live_server(settings) as url:
        yield url


@pytest.fixture(scope="module")
def client(server: str) -> Iterator[triton.InferenceServerClient]:
    c = triton.InferenceServerClient(url=server)
    yield c
    c.close()


@pytest.fixture(scope="module")
def http(server: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=f"http://{server}", headers=AUTH, timeout=60) as c:
        yield c


def test_server_live_ready_and_metadata(client: triton.InferenceServerClient) -> None:
    assert client.is_server_live()
    assert client.is_server_ready()
    meta = client.get_server_metadata(headers=AUTH)
    assert meta["name"] == "tinyzoo"
    assert {"binary_tensor_data", "classification", "model_repository"} <= set(meta["extensions"])


@pytest.mark.parametrize("model", MODELS)
def test_every_model_has_metadata_and_is_ready(
    client: triton.InferenceServerClient, model: str
) -> None:
    assert client.is_model_ready(model, headers=AUTH)
    assert client.is_model_ready(model, "1", headers=AUTH)
    assert not client.is_model_ready(model, "7", headers=AUTH)
    meta = client.get_model_metadata(model, headers=AUTH)
    assert meta["name"] == model
    assert meta["versions"] == ["1"]
    assert meta["inputs"]
    assert meta["outputs"]
    assert client.get_model_metadata(model, "1", headers=AUTH) == meta


def test_digit_pngs_as_bytes_answer_as_post_digit(
    client: triton.InferenceServerClient, http: httpx.Client
) -> None:
    images = [png(img) for img in strokes()]
    tensor = triton.InferInput("image", [len(images)], "BYTES")
    tensor.set_data_from_numpy(np.array(images, dtype=np.object_))
    outputs = [triton.InferRequestedOutput("probabilities", class_count=3)]
    result = client.infer("digit-resnet", [tensor], outputs=outputs, headers=AUTH)
    ranked = result.as_numpy("probabilities")
    assert ranked.shape == (len(images), 3)
    assert result.get_response()["model_version"] == "1"
    for blob, row in zip(images, ranked, strict=True):
        typed = http.post("/digit", files={"file": ("d.png", blob, "image/png")}).json()
        for served, expected in zip(row, typed["predictions"], strict=True):
            score, index, label = served.decode().split(":")
            assert label == index == expected["label"]
            assert float(score) == pytest.approx(expected["probability"], abs=1e-5)


def test_digit_probabilities_binary_and_pixels(client: triton.InferenceServerClient) -> None:
    """Binary FP32 probabilities; FP32 MNIST-form pixels answer as their PNGs do."""
    imgs = strokes()
    as_bytes = triton.InferInput("image", [len(imgs)], "BYTES")
    as_bytes.set_data_from_numpy(np.array([png(i) for i in imgs], dtype=np.object_))
    from_files = client.infer("digit-resnet", [as_bytes], headers=AUTH).as_numpy("probabilities")
    assert from_files.shape == (len(imgs), 10)
    assert from_files.dtype == np.float32
    np.testing.assert_allclose(from_files.sum(axis=1), 1, atol=1e-5)
    pixels = triton.InferInput("pixels", [len(imgs), 28, 28], "FP32")
    pixels.set_data_from_numpy(np.stack(imgs).astype(np.float32) / 255)
    from_pixels = client.infer("digit-resnet", [pixels], headers=AUTH).as_numpy("probabilities")
    # The service's preprocessing recentres the PNGs; the stroke images are already in form.
    assert (from_pixels.argmax(1) == from_files.argmax(1)).mean() >= 0.5


def test_names_as_bytes_answer_as_classify_name(
    client: triton.InferenceServerClient, http: httpx.Client
) -> None:
    names = ["Kowalski", "Nguyễn", "O'Brien", "Иванов"]
    tensor = triton.InferInput("name", [len(names)], "BYTES")
    tensor.set_data_from_numpy(np.array([n.encode() for n in names], dtype=np.object_))
    outputs = [triton.InferRequestedOutput("probabilities", class_count=1)]
    ranked = client.infer("name-gru", [tensor], outputs=outputs, headers=AUTH).as_numpy(
        "probabilities"
    )
    typed = http.post("/classify-name/batch", json={"names": names, "top_k": 1}).json()
    for row, result in zip(ranked, typed["results"], strict=True):
        score, index, label = row[0].decode().split(":")
        assert label == result["predictions"][0]["label"] == COUNTRIES[int(index)]
        assert float(score) == pytest.approx(result["predictions"][0]["probability"], abs=1e-5)


def test_json_encoding_with_httpx(http: httpx.Client) -> None:
    blobs = [png(img) for img in strokes()[:3]]
    body = {
        "id": "req-1",
        "inputs": [
            {
                "name": "image",
                "shape": [3],
                "datatype": "BYTES",
                "data": [base64.b64encode(b).decode() for b in blobs],
            }
        ],
        "outputs": [{"name": "probabilities", "parameters": {"classification": 1}}],
    }
    response = http.post("/v2/models/digit-inception/infer", json=body)
    assert response.status_code == 200
    out = response.json()
    assert out["id"] == "req-1"
    assert out["model_name"] == "digit-inception"
    assert out["outputs"][0]["shape"] == [3, 1]
    for blob, ranked in zip(blobs, out["outputs"][0]["data"], strict=True):
        typed = http.post(
            "/digit", params={"model": "digit-inception"}, files={"file": ("d", blob, "image/png")}
        ).json()
        assert ranked.split(":")[2] == str(typed["digit"])
    names = {"inputs": [{"name": "name", "shape": [1, 1], "datatype": "BYTES", "data": [["Ito"]]}]}
    response = http.post("/v2/models/name-gru/infer", json=names)
    assert response.status_code == 200
    probs = response.json()["outputs"][0]
    assert probs["datatype"] == "FP32"
    assert probs["shape"] == [1, 18]
    assert sum(probs["data"]) == pytest.approx(1, abs=1e-5)


def test_char_models(http: httpx.Client) -> None:
    hello = {"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": ["hello"]}]}
    response = http.post("/v2/models/char-rnn-hello/infer", json=hello)
    assert response.status_code == 200
    typed = http.post("/char-rnn/transduce", json={"text": "hello"}).json()
    assert response.json()["outputs"][0]["data"] == [typed["output"]]
    prompt = {
        "inputs": [{"name": "prompt", "shape": [1], "datatype": "BYTES", "data": ["ROMEO:"]}],
        "parameters": {"max_chars": 12, "seed": 3, "temperature": 0.8},
    }
    response = http.post("/v2/models/char-rnn-shakespeare/infer", json=prompt)
    assert response.status_code == 200
    typed = http.post(
        "/char-rnn/generate", json={"prompt": "ROMEO:", "max_chars": 12, "seed": 3}
    ).json()
    assert response.json()["outputs"][0]["data"] == [typed["text"]]


@pytest.mark.parametrize(
    ("path", "body", "status", "says"),
    [
        ("/v2/models/nope/infer", {"inputs": [{"name": "x"}]}, 404, "no model named 'nope'"),
        ("/v2/models/digit-resnet/versions/9/infer", None, 404, "serves version 1"),
        ("/v2/models/digit-resnet/infer", {"inputs": []}, 400, "at least 1"),
        ("/v2/models/digit-resnet/infer", "not json", 400, "Invalid JSON"),
        (
            "/v2/models/digit-resnet/infer",
            {"inputs": [{"name": "image", "shape": [1], "datatype": "BYTES", "data": ["%%"]}]},
            400,
            "base64",
        ),
        (
            "/v2/models/digit-resnet/infer",
            {"inputs": [{"name": "image", "shape": [2], "datatype": "BYTES", "data": ["aGk="]}]},
            400,
            "shape [2] says 2",
        ),
        (
            "/v2/models/digit-resnet/infer",
            {"inputs": [{"name": "images", "shape": [1], "datatype": "BYTES", "data": ["aGk="]}]},
            400,
            "image or pixels",
        ),
        (
            "/v2/models/digit-resnet/infer",
            {"inputs": [{"name": "image", "shape": [1], "datatype": "BYTES", "data": ["aGk="]}]},
            415,
            "image[0]: the upload is text",
        ),
        (
            "/v2/models/digit-resnet/infer",
            {
                "inputs": [{"name": "image", "shape": [1], "datatype": "BYTES", "data": [PNG64]}],
                "outputs": [{"name": "probabilities", "parameters": {"classification": 11}}],
            },
            400,
            "classification 11",
        ),
        (
            "/v2/models/digit-resnet/infer",
            {
                "inputs": [
                    {
                        "name": "pixels",
                        "shape": [1, 28, 28],
                        "datatype": "FP32",
                        "data": [2.0] * 784,
                    }
                ]
            },
            422,
            "0..1",
        ),
        (
            "/v2/models/name-gru/infer",
            {"inputs": [{"name": "name", "shape": [1], "datatype": "BYTES", "data": ["123"]}]},
            422,
            "name[0]",
        ),
    ],
)
def test_errors_in_the_protocol_shape(
    http: httpx.Client, path: str, body: object, status: int, says: str
) -> None:
    if body is None:
        body = {"inputs": [{"name": "image", "shape": [1], "datatype": "BYTES", "data": ["x"]}]}
    content = body.encode() if isinstance(body, str) else json.dumps(body).encode()
    response = http.post(path, content=content)
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    assert says in response.json()["error"]


def test_api_key_guards_metadata_and_infer_not_health(server: str) -> None:
    client = triton.InferenceServerClient(url=server)
    try:
        assert client.is_server_live()
        assert client.is_server_ready()
        with pytest.raises(InferenceServerException, match="API key"):
            client.get_model_metadata("digit-resnet")
    finally:
        client.close()


def test_typed_routes_say_which_version_answered(http: httpx.Client) -> None:
    digit = http.post("/digit", files={"file": ("d.png", png(strokes()[0]), "image/png")})
    assert digit.json()["version"] == "1"
    name = http.post("/classify-name", json={"name": "Sato"})
    assert name.json()["version"] == "1"
    cards = http.get("/models").json()["models"]
    assert {card["name"]: card["version"] for card in cards} == dict.fromkeys(MODELS, "1")
