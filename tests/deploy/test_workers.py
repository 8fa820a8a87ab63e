"""``python -m app``: several worker processes, each with its own models, and metrics summed
across them whichever worker answers the scrape."""

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from prometheus_client.multiprocess import MultiProcessCollector

from app.__main__ import MULTIPROC_ENV, multiprocess_metrics
from tests.app.conftest import write_tiny_weights

ROOT = Path(__file__).resolve().parents[2]
Launch = Callable[..., tuple[subprocess.Popen[bytes], str]]
NAMES_200 = re.compile(
    r'^tinyzoo_http_requests_total\{method="POST",route="/classify-name",status="200"\} (\S+)$',
    re.MULTILINE,
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def launch(tmp_path: Path) -> Iterator[Launch]:
    """Start ``python -m app`` with tiny weights and extra environment; stopped at the end."""
    weights = write_tiny_weights(tmp_path / "weights")
    started: list[subprocess.Popen[bytes]] = []

    def start(**extra: str) -> tuple[subprocess.Popen[bytes], str]:
        port = _free_port()
        env = {k: v for k, v in os.environ.items() if k != MULTIPROC_ENV}
        env |= {
            "TINYZOO_WEIGHTS_DIR": str(weights),
            "TINYZOO_DEVICE": "cpu",
            "TINYZOO_THREADS": "1",
            "TINYZOO_PORT": str(port),
            "TINYZOO_LOG_LEVEL": "WARNING",
            **extra,
        }
        proc = subprocess.Popen(
            [sys.executable, "-m", "app"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        started.append(proc)
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 90
        while True:
            assert proc.poll() is None, "the launcher exited during startup"
            try:
                if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                    return proc, url
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "not ready in 90 s"
            time.sleep(0.2)

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _workers(proc: subprocess.Popen[bytes]) -> list[int]:
    found = subprocess.run(
        ["pgrep", "-P", str(proc.pid), "-f", "spawn_main"], capture_output=True, text=True
    )
    return [int(pid) for pid in found.stdout.split()]


def _classify(url: str, count: int) -> None:
    """``count`` POST /classify-name, each on a fresh connection, four at a time."""

    def one(_: int) -> int:
        return httpx.post(f"{url}/classify-name", json={"name": "Smith"}, timeout=30).status_code

    with ThreadPoolExecutor(4) as pool:
        assert set(pool.map(one, range(count))) == {200}


def _scrape(url: str) -> float:
    """GET /metrics on a fresh connection: the /classify-name 200 count it reports."""
    response = httpx.get(f"{url}/metrics", timeout=10)
    assert response.status_code == 200
    (value,) = NAMES_200.findall(response.text)
    return float(value)


def _settled(url: str, sent: int) -> None:
    """Wait until a scrape counts all ``sent`` requests: a worker counts a request just after
    sending its response, so a client can be quicker to scrape than the worker to count."""
    deadline = time.monotonic() + 30
    while _scrape(url) != sent:
        assert time.monotonic() < deadline, f"/metrics never counted {sent} requests"
        time.sleep(0.05)


def _answered(metrics_dir: Path, pid: int, route: str) -> float:
    """Requests to ``route`` one worker counted, read from its own file alone."""
    counters = metrics_dir / f"counter_{pid}.db"
    if not counters.exists():
        return 0
    return sum(
        float(sample.value)
        for metric in MultiProcessCollector.merge([str(counters)])
        for sample in metric.samples
        if sample.name == "tinyzoo_http_requests_total" and sample.labels["route"] == route
    )


def test_two_workers_report_the_sum_of_their_requests_on_every_scrape(
    launch: Launch, tmp_path: Path
) -> None:
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    # A count left by an earlier run: the launcher must start from an empty directory.
    subprocess.run(
        [
            sys.executable,
            "-c",
            "from prometheus_client import Counter; Counter('tinyzoo_http_requests', 'old', "
            "['method', 'route', 'status']).labels('POST', '/classify-name', '200').inc(7)",
        ],
        env={**os.environ, MULTIPROC_ENV: str(metrics_dir)},
        check=True,
    )
    assert list(metrics_dir.glob("*.db"))
    proc, url = launch(TINYZOO_WORKERS="2", **{MULTIPROC_ENV: str(metrics_dir)})
    pids = _workers(proc)
    assert len(pids) == 2

    sent = 0
    while sent < 40 or not all(_answered(metrics_dir, p, "/classify-name") for p in pids):
        assert sent < 400, "one worker answered every request"
        _classify(url, 20)
        sent += 20
    per_worker = [_answered(metrics_dir, p, "/classify-name") for p in pids]
    assert sum(per_worker) == sent and min(per_worker) > 0

    _settled(url, sent)
    scrapes = 0
    while scrapes < 10 or not all(_answered(metrics_dir, p, "/metrics") for p in pids):
        assert scrapes < 200, "one worker answered every scrape"
        assert _scrape(url) == sent
        scrapes += 1

    proc.terminate()
    assert proc.wait(timeout=30) in (0, -signal.SIGTERM)
    # Each worker took its live gauges (in flight, queue depth, models) out as it stopped;
    # its counters stay.
    assert not list(metrics_dir.glob("gauge_live*"))
    assert sorted(p.name for p in metrics_dir.glob("counter_*.db")) == sorted(
        f"counter_{p}.db" for p in pids
    )


def test_one_worker_keeps_its_metrics_in_memory(launch: Launch) -> None:
    proc, url = launch()
    assert _workers(proc) == []  # uvicorn serves in the launcher's own process
    _classify(url, 5)
    _settled(url, 5)
    assert _scrape(url) == 5
    text = httpx.get(f"{url}/metrics", timeout=10).text
    assert 'tinyzoo_model_info{architecture="NameGRU"' in text
    assert 'tinyzoo_queue_depth{model="name-gru"} 0.0' in text


def test_launcher_makes_a_fresh_metrics_directory_only_for_several_workers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(MULTIPROC_ENV, raising=False)
    with multiprocess_metrics(1) as none:
        assert none is None and MULTIPROC_ENV not in os.environ
    with multiprocess_metrics(2) as fresh:
        assert fresh is not None and fresh.is_dir() and not list(fresh.iterdir())
        assert os.environ[MULTIPROC_ENV] == str(fresh)
    assert not fresh.exists() and MULTIPROC_ENV not in os.environ
