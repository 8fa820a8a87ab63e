"""Operating the service: settings that switch features, startup refusals, graceful shutdown."""

import os
import pickle
import platform
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.main import create_app
from app.settings import Settings
from models.checkpoint import CheckpointError

PROJECT = Path(__file__).resolve().parents[2]


@pytest.mark.anyio
async def test_docs_can_be_disabled_and_cors_enabled(settings: Settings, make_client: Any) -> None:
    changed = settings.model_copy(
        update={"docs_enabled": False, "cors_origins": ["https://example.org"]}
    )
    async with make_client(changed) as client:
        assert (await client.get("/docs")).status_code == 404
        assert (await client.get("/openapi.json")).status_code == 404
        preflight = await client.options(
            "/classify-name",
            headers={"Origin": "https://example.org", "Access-Control-Request-Method": "POST"},
        )
        assert preflight.headers["access-control-allow-origin"] == "https://example.org"
    async with make_client(settings) as client:
        plain = await client.get("/healthz", headers={"Origin": "https://example.org"})
        assert "access-control-allow-origin" not in plain.headers


class _Evil:
    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (os.system, ("touch pwned-by-pickle",))


@pytest.mark.anyio
async def test_a_pickle_in_the_weights_is_never_executed(
    tiny_weights: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    weights = tmp_path / "weights"
    shutil.copytree(tiny_weights, weights)
    monkeypatch.chdir(tmp_path)
    (weights / "digit-resnet" / "model.pt").write_bytes(pickle.dumps(_Evil()))
    (weights / "digit-resnet" / "model.safetensors").write_bytes(pickle.dumps(_Evil()))
    app = create_app(Settings(weights_dir=weights))
    with pytest.raises(CheckpointError, match=r"digit-resnet/model\.safetensors: sha256 mismatch"):
        async with app.router.lifespan_context(app):
            pass
    assert not (tmp_path / "pwned-by-pickle").exists()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _serve(weights: Path, port: int) -> subprocess.Popen[str]:
    """The launcher (``python -m app``) with one worker, as ``make serve`` runs it."""
    env = {
        **os.environ,
        "TINYZOO_WEIGHTS_DIR": str(weights),
        "TINYZOO_DEVICE": "cpu",
        "TINYZOO_HOST": "127.0.0.1",
        "TINYZOO_PORT": str(port),
        "TINYZOO_GRACEFUL_SHUTDOWN_S": "20",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "app"],
        cwd=PROJECT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _wait_ready(url: str, proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
        try:
            if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise AssertionError("server did not become ready")


def test_sigterm_finishes_in_flight_requests_then_exits(tiny_weights: Path) -> None:
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    proc = _serve(tiny_weights, port)
    try:
        _wait_ready(url, proc)
        with httpx.Client(base_url=url, timeout=30) as client:
            body = {"prompt": "A", "max_chars": 2000, "seed": 1, "stream": True}
            with client.stream("POST", "/char-rnn/generate", json=body) as response:
                assert response.status_code == 200
                chunks = response.iter_text()
                first = next(chunks)
                proc.send_signal(signal.SIGTERM)
                text = first + "".join(chunks)
        assert text.rstrip().endswith('"chars": 2000}')
        assert proc.wait(timeout=30) in (0, -signal.SIGTERM)  # uvicorn re-raises the signal
        with pytest.raises(httpx.TransportError):
            httpx.get(f"{url}/healthz", timeout=1)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


def test_tampered_checkpoint_stops_startup_with_one_clear_line(
    tiny_weights: Path, tmp_path: Path
) -> None:
    weights = tmp_path / "weights"
    shutil.copytree(tiny_weights, weights)
    target = weights / "name-gru" / "model.safetensors"
    target.write_bytes(target.read_bytes()[:-10])
    proc = _serve(weights, _free_port())
    output, _ = proc.communicate(timeout=60)
    assert proc.returncode != 0
    line = next(x for x in output.splitlines() if "cannot start" in x)
    assert "name-gru/model.safetensors: sha256 mismatch" in line


def test_a_slow_client_does_not_hold_up_others(tiny_weights: Path) -> None:
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    proc = _serve(tiny_weights, port)
    try:
        _wait_ready(url, proc)
        with socket.create_connection(("127.0.0.1", port), timeout=10) as slow:
            slow.sendall(
                b"POST /classify-name HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b'Content-Length: 40\r\n\r\n{"name": '
            )
            started = time.monotonic()
            for _ in range(10):
                ok = httpx.post(f"{url}/classify-name", json={"name": "Smith"}, timeout=5)
                assert ok.status_code == 200
            assert time.monotonic() - started < 5
            slow.sendall(b'"Smith"}' + b" " * (40 - 17))
            assert b"200 OK" in slow.recv(4096)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        if proc.stdout is not None:
            proc.stdout.close()


@pytest.mark.anyio
async def test_freed_memory_is_handed_back_periodically(monkeypatch: pytest.MonkeyPatch) -> None:
    import asyncio

    from app import memory

    calls: list[float] = []
    monkeypatch.setattr(memory, "_malloc_trim", lambda: lambda: calls.append(time.monotonic()))
    task = asyncio.create_task(memory.trim_periodically(0.01))
    await asyncio.sleep(0.2)
    task.cancel()
    assert len(calls) >= 3
    monkeypatch.setattr(memory, "_malloc_trim", lambda: None)  # musl, macOS: nothing to call
    await asyncio.wait_for(memory.trim_periodically(0.01), 1)


def test_malloc_trim_is_found_on_glibc() -> None:
    from app import memory

    if platform.libc_ver()[0] != "glibc":
        pytest.skip("malloc_trim is glibc's")
    trim = memory._malloc_trim()
    assert trim is not None and trim() in (0, 1)
