"""The service as ``make serve`` runs it (``python -m app``), for tests where the HTTP layer or the
process matters: its log in a file, its pid for /proc."""

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

PROJECT = Path(__file__).resolve().parents[2]


@dataclass
class Launched:
    url: str
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        """Everything the server has written so far (its lines are flushed within 0.2 s)."""
        return self.log_path.read_text(errors="backslashreplace")

    def wait_for_log(self, text: str, seconds: float = 10) -> str:
        deadline = time.monotonic() + seconds
        while text not in (log := self.log()):
            if time.monotonic() > deadline:
                raise AssertionError(f"{text!r} never appeared in the log:\n{log[-3000:]}")
            time.sleep(0.05)
        return log

    def reset_peak(self) -> None:
        """Start VmHWM afresh from the current resident size (Linux's clear_refs, value 5)."""
        Path(f"/proc/{self.process.pid}/clear_refs").write_text("5")

    def rss_kib(self, field: str = "VmRSS") -> int:
        """A memory figure of the server process from /proc (VmRSS now, VmHWM its peak)."""
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
        raise AssertionError(f"no {field} for {self.process.pid}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def launched(weights: Path, log_path: Path, **settings: str) -> Iterator[Launched]:
    """``python -m app`` with one worker on ``weights``; ``settings`` are TINYZOO_ variables
    without the prefix (``request_timeout_s="1"``)."""
    port = free_port()
    env = {
        **os.environ,
        "TINYZOO_WEIGHTS_DIR": str(weights),
        "TINYZOO_DEVICE": "cpu",
        "TINYZOO_HOST": "127.0.0.1",
        "TINYZOO_PORT": str(port),
        "TINYZOO_GRACEFUL_SHUTDOWN_S": "5",
        **{f"TINYZOO_{k.upper()}": v for k, v in settings.items()},
    }
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "app"], cwd=PROJECT, env=env, stdout=log, stderr=log
        )
    server = Launched(f"http://127.0.0.1:{port}", port, process, log_path)
    try:
        deadline = time.monotonic() + 90
        while True:
            assert process.poll() is None, server.log()
            try:
                if httpx.get(f"{server.url}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the server did not become ready"
            time.sleep(0.1)
        yield server
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
