"""``python -m bench.overload``: does the service keep answering when far more clients come
than it can serve at once?

Starts ``python -m app`` (one worker, pinned to core 0, the committed weights) and drives each
route with ``wrk`` on core 1, first with 64 connections, then with 2,000; each wrk connection
sends its next request as soon as it has an answer, as impatient clients do. Meanwhile a probe
opens a new connection to ``/healthz`` every 0.2 s and times the answer. Reported per route and
load: answers that were successes (2xx) per second, refusals, socket errors, and the
``/healthz`` latencies; and the ratio of successes at 2,000 connections to those at 64.

    python -m bench.overload [--seconds 10] [--repeats 2] [--routes name,mnist,scan,batch,generate]
"""

import argparse
import os
import re
import socket
import statistics
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench.serve_bench import EXTENSIONS, UPLOADS, WRK, Server, _port, _stop, digit_uploads, start

LOADS = (64, 2000)
ROUTES = {  # route key -> (path, wrk script, upload class)
    "name": ("/classify-name", "name.lua", ""),
    "mnist": ("/digit", "digit.lua", "mnist"),
    "scan": ("/digit", "digit.lua", "scan"),
    "batch": ("/classify-name/batch", "names.lua", ""),
    "generate": ("/char-rnn/generate", "generate.lua", ""),
}
PROBE_EVERY_S = 0.2


@dataclass
class Run:
    successes_per_s: float
    refused: int
    socket_errors: int
    healthz_ms: list[float] = field(default_factory=list)


def parse(out: str) -> tuple[int, float, int, int]:
    """Requests, seconds, non-2xx answers and socket errors from wrk's output."""
    match = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m)", out)
    assert match, out
    requests = int(match.group(1))
    seconds = float(match.group(2)) * {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}[match.group(3)]
    refused = sum(int(n) for n in re.findall(r"Non-2xx or 3xx responses: (\d+)", out))
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    socket_errors = sum(int(n) for n in errors.groups()) if errors else 0
    return requests, seconds, refused, socket_errors


def probe(port: int, stop: threading.Event, latencies: list[float]) -> None:
    """Time ``GET /healthz`` on a new connection every ``PROBE_EVERY_S`` until ``stop``, as a
    kubelet probes: connect, one request, read the answer to the end (30 s at most)."""
    request = b"GET /healthz HTTP/1.1\r\nHost: probe\r\nConnection: close\r\n\r\n"
    while not stop.is_set():
        started = time.perf_counter()
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=30) as conn:
                conn.sendall(request)
                answer = b""
                while chunk := conn.recv(4096):
                    answer += chunk
            ok = answer.startswith(b"HTTP/1.1 200 ")
            latencies.append((time.perf_counter() - started) * 1000 if ok else float("inf"))
        except OSError:
            latencies.append(float("inf"))
        stop.wait(PROBE_EVERY_S)


def drive(port: int, route: str, connections: int, seconds: float, uploads: Path) -> Run:
    path, script, kind = ROUTES[route]
    env = {"BENCH_UPLOADS": str(uploads / kind), "BENCH_COUNT": str(UPLOADS.get(kind, 1))}
    env["BENCH_EXT"] = EXTENSIONS.get(kind, "png")
    cmd = ["taskset", "-c", "1", "wrk", "-t1", f"-c{connections}", f"-d{seconds:g}s"]
    cmd += ["--timeout", "10s", "-s", str(WRK / script), f"http://127.0.0.1:{port}{path}"]
    latencies: list[float] = []
    stop = threading.Event()
    prober = threading.Thread(target=probe, args=(port, stop, latencies))
    prober.start()
    try:
        out = subprocess.run(
            cmd, capture_output=True, text=True, check=True, env={**os.environ, **env}
        ).stdout
    finally:
        stop.set()
        prober.join()
    requests, elapsed, refused, socket_errors = parse(out)
    return Run((requests - refused) / elapsed, refused, socket_errors, latencies)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--routes", default=",".join(ROUTES))
    args = parser.parse_args()
    routes = args.routes.split(",")
    port = _port()
    server = Server(
        "tinyzoo",
        ["python", "-m", "app"],
        {"TINYZOO_PORT": str(port), "TINYZOO_WORKERS": "1", "TINYZOO_THREADS": "1"},
        "/readyz",
        {},
    )
    with tempfile.TemporaryDirectory() as folder:
        uploads = digit_uploads(Path(folder))
        proc, ready_s = start(server, port)
        try:
            results: dict[tuple[str, int], list[Run]] = {}
            for _ in range(args.repeats):
                for route in routes:
                    drive(port, route, 64, 2, uploads)  # warm-up
                    for connections in LOADS:
                        run = drive(port, route, connections, args.seconds, uploads)
                        results.setdefault((route, connections), []).append(run)
                        time.sleep(2)  # let refused clients' sockets close
        finally:
            _stop(proc)
    print(f"server ready in {ready_s:.1f} s; {args.repeats} x {args.seconds:g} s per row\n")
    print(
        "| route | connections | successes/s | of 64's | refused | socket errors "
        "| /healthz median | /healthz max |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for route in routes:
        base = statistics.median(r.successes_per_s for r in results[(route, LOADS[0])])
        for connections in LOADS:
            runs = results[(route, connections)]
            rate = statistics.median(r.successes_per_s for r in runs)
            health = [ms for r in runs for ms in r.healthz_ms]
            print(
                f"| {ROUTES[route][0]} ({route}) | {connections:,} | {rate:,.0f} "
                f"| {rate / base:.0%} | {sum(r.refused for r in runs):,} "
                f"| {sum(r.socket_errors for r in runs):,} | {statistics.median(health):,.0f} ms "
                f"| {max(health):,.0f} ms |"
            )


if __name__ == "__main__":
    main()
