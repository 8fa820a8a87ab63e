"""Several uvicorn worker processes on one machine, each with its own copy of the models."""

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.app.conftest import write_tiny_weights

ROOT = Path(__file__).resolve().parents[2]


def test_two_workers_each_load_the_models_and_share_the_port(tmp_path: Path) -> None:
    tiny_weights = write_tiny_weights(tmp_path / "weights")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {
        **os.environ,
        "TINYZOO_WEIGHTS_DIR": str(tiny_weights),
        "TINYZOO_DEVICE": "cpu",
        "TINYZOO_THREADS": "1",
    }
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "app.main:app",
            "--port",
            str(port),
            "--workers",
            "2",
            "--log-level",
            "warning",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "not ready in 60 s"
            time.sleep(0.2)
        workers = subprocess.run(
            ["pgrep", "-P", str(proc.pid), "-f", "spawn_main"], capture_output=True, text=True
        ).stdout.split()
        assert len(workers) == 2
        with httpx.Client(base_url=url, timeout=10) as client:
            for _ in range(20):
                r = client.post("/classify-name", json={"name": "Smith"})
                assert r.status_code == 200
    finally:
        proc.terminate()
        proc.wait(timeout=30)
