"""A client that hangs up while its input waits for the model costs the model nothing (uvicorn)."""

import io
import json
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pytest
import uvicorn
from PIL import Image

from app.main import create_app
from app.settings import Settings


def _digit_request() -> bytes:
    image = np.zeros((28, 28), dtype=np.uint8)
    image[6:22, 12:16] = 255  # a bold "1"
    png = io.BytesIO()
    Image.fromarray(image).save(png, format="PNG")
    boundary = "tinyzoo-test"
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="1.png"\r\n'
            "Content-Type: image/png\r\n\r\n"
        ).encode()
        + png.getvalue()
        + f"\r\n--{boundary}--\r\n".encode()
    )
    head = (
        "POST /digit?model=digit-resnet HTTP/1.1\r\nHost: test\r\n"
        f"Content-Type: multipart/form-data; boundary={boundary}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


def _wait_for(condition: object, what: str, seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.005)


@pytest.fixture
def served(tiny_weights: Path) -> Iterator[tuple[uvicorn.Server, int]]:
    """The app on the tiny checkpoints, served by uvicorn in a thread of this process."""
    app = create_app(Settings(weights_dir=tiny_weights, device="cpu", max_batch_size=1))
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True)
    thread.start()
    _wait_for(lambda: server.started, "the server to start", 90)
    yield server, listener.getsockname()[1]
    server.should_exit = True
    thread.join(10)


def test_a_queued_input_whose_client_hung_up_never_reaches_the_model(
    served: tuple[uvicorn.Server, int],
) -> None:
    server, port = served
    services = server.config.loaded_app.app.state.services  # type: ignore[attr-defined]
    batcher = services.registry.served["digit-resnet"].runner.batcher
    real_predict = batcher.predict_batch
    entered, release = threading.Event(), threading.Event()
    seen: list[int] = []

    def held_predict(items: Sequence[np.ndarray]) -> list[list[float]]:
        entered.set()
        release.wait(10)
        seen.append(len(items))
        return real_predict(items)

    batcher.predict_batch = held_predict
    request = _digit_request()
    with socket.create_connection(("127.0.0.1", port)) as stays:
        stays.sendall(request)  # taken by the model, which is held
        assert entered.wait(10), "the first request never reached the model"
        with socket.create_connection(("127.0.0.1", port)) as leaves:
            leaves.sendall(request)
            _wait_for(lambda: batcher.depth == 1, "the second request to queue")
        time.sleep(0.2)  # the hang-up reaches the server
        release.set()
        answer = stays.recv(65536)
    assert answer.startswith(b"HTTP/1.1 200")
    _wait_for(lambda: batcher.stats.dropped == 1, "the dropped input to be counted")
    assert seen == [1]  # the model ran the first request only


class _SlowSteps:
    """A char-RNN whose every step takes a few milliseconds and is counted."""

    def __init__(self, model: object, seconds: float = 0.004) -> None:
        self.model, self.seconds, self.steps = model, seconds, 0

    def __call__(self, *args: object) -> object:
        self.steps += 1
        time.sleep(self.seconds)
        return self.model(*args)  # type: ignore[operator]


V2_GENERATE = "/v2/models/char-rnn-shakespeare/infer"


def _generate_request(door: str) -> bytes:
    """A 2,000-character generation through the typed route (plain or streamed) or ``/v2``."""
    path, payload = "/char-rnn/generate", {"prompt": "A", "max_chars": 2000, "seed": 1}
    if door == "v2":
        path = V2_GENERATE
        prompt = {"name": "prompt", "shape": [1], "datatype": "BYTES", "data": ["A"]}
        payload = {"inputs": [prompt], "parameters": {"max_chars": 2000, "seed": 1}}
    else:
        payload["stream"] = door == "streamed"
    body = json.dumps(payload).encode()
    head = (
        f"POST {path} HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


@pytest.mark.parametrize("door", ["plain", "streamed", "v2"])
def test_a_generation_stops_when_its_client_leaves(
    served: tuple[uvicorn.Server, int], door: str
) -> None:
    server, port = served
    app = server.config.loaded_app.app  # type: ignore[attr-defined]
    services = app.state.services
    char = services.registry.served["char-rnn-shakespeare"].runner
    slow = _SlowSteps(char.model)
    char.model = slow
    admission = services.generations.admission
    with socket.create_connection(("127.0.0.1", port)) as conn:
        conn.sendall(_generate_request(door))
        _wait_for(lambda: slow.steps > 20, "the generation to start")
    _wait_for(lambda: admission.running == 0, "the generation to stop and free its slot")
    assert slow.steps < 1000  # 2,000 steps would have been taken without a stop
    if door != "streamed":
        route = "/v2/models/{name}/infer" if door == "v2" else "/char-rnn/generate"
        requests = app.state.metrics.requests.labels("POST", route, "499")
        _wait_for(lambda: requests._value.get() == 1, "the request to be counted as a 499")
