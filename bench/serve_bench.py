"""``make bench``: throughput and latency of the service on real traffic, beside its peers.

Starts each server pinned to one core (``taskset -c 0``) and drives it with ``wrk`` pinned to
the other core, for ``POST /digit`` with four classes of uploads, each cycling through many
distinct files made from MNIST test digits (``bench.corpus``): scans (80-200 px PNG, grey and
RGB: thick pens binarised at 16x16 and upscaled, and small tight crops), canvas drawings
(280x280 PNG, both polarities), phone photos (JPEG, 3-12 MP, some EXIF-rotated) and MNIST-form
28x28 PNGs; and ``POST /classify-name``. Servers: the service as shipped, the same with batching
off (``TINYZOO_MAX_BATCH_SIZE=1``), a naive FastAPI server (model per request, a 15-line
preprocessing: ``bench.naive_peer``), a bare FastAPI app reading the same requests (the
ceiling), and LitServe running the service's own digit pipeline with its batching (the peer).
The server's CPU time per request is read from ``/proc`` around each run. The
servers compared on one core run side by side: all are started (each start-up timed alone) and
paused, then each repeat resumes and sweeps every one of them in turn, so drift of a shared
machine falls on all alike. Reports medians over repeats, startup time to ready and peak RSS,
and writes ``bench/RESULTS.md``.
"""

import argparse
import contextlib
import os
import platform
import re
import shlex
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from app.memory import ALLOCATOR_ENV
from bench import corpus, cost

ROOT = Path(__file__).resolve().parent.parent
WRK = ROOT / "bench" / "wrk"
UPLOADS = {"scan": 256, "canvas": 256, "photo": 48, "mnist": 256}
"""Distinct files each digit class cycles through (one image repeated would measure a warm
cache, not the work); photos take a few seconds each to make."""
EXTENSIONS = {"photo": "jpg"}
ENDPOINTS = {
    # key: (path, wrk script, uploads)
    "scan": ("/digit", "digit.lua", "scan"),
    "scan, raw body": ("/digit", "digit_raw.lua", "scan"),
    "canvas": ("/digit", "digit.lua", "canvas"),
    "mnist": ("/digit", "digit.lua", "mnist"),
    "mnist, digit-inception": ("/digit?model=digit-inception", "digit.lua", "mnist"),
    "classify-name": ("/classify-name", "name.lua", ""),
    "photo": ("/digit", "digit.lua", "photo"),
}


@dataclass
class Server:
    name: str
    command: list[str]
    env: dict[str, str]
    ready_path: str
    endpoints: dict[str, str]  # endpoint key -> path on this server
    cores: str = "0"  # taskset list for the server
    client_cores: str = "1"  # taskset list for wrk


@dataclass
class Sample:
    rps: float
    p50: float
    p90: float
    p99: float
    errors: int
    cpu_ms: float = 0.0  # server CPU time per answered request


SETTLE_S = 0.5


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _ms(value: str, unit: str) -> float:
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]


def parse_wrk(out: str) -> Sample:
    """Requests/s, latency percentiles (ms) and errors from ``wrk --latency`` output."""
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    pct = {
        int(p): _ms(v, u) for p, v, u in re.findall(r"\s(50|90|99)%\s+([\d.]+)(us|ms|s|m)\b", out)
    }
    errors = sum(int(n) for n in re.findall(r"Non-2xx or 3xx responses: (\d+)", out))
    socket_errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out
    )
    if socket_errors:
        errors += sum(int(n) for n in socket_errors.groups())
    return Sample(rps, pct.get(50, 0.0), pct.get(90, 0.0), pct.get(99, 0.0), errors)


def start(server: Server, port: int) -> tuple[subprocess.Popen[bytes], float]:
    """Start a server on core 0; return it and the seconds until it answered ready."""
    started = time.perf_counter()
    proc = subprocess.Popen(
        ["taskset", "-c", server.cores, *[c.format(port=port) for c in server.command]],
        cwd=ROOT,
        env={
            **os.environ,
            **{k: v.format(port=port) for k, v in server.env.items()},
            "BENCH_PORT": str(port),
        },
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its own process group, to pause and resume with its children
    )
    url = f"http://127.0.0.1:{port}{server.ready_path}"
    while time.perf_counter() - started < 120:
        if proc.poll() is not None:
            raise RuntimeError(f"{server.name} exited with {proc.returncode}")
        try:
            if httpx.get(url, timeout=1).status_code < 500:
                return proc, time.perf_counter() - started
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    _stop(proc)
    raise RuntimeError(f"{server.name} not ready in 120 s")


def inception_serving(server: Server, port: int) -> str:
    """How a service server computes digit-inception: folded or layer by layer."""
    if server.ready_path != "/readyz":
        return "—"
    card = httpx.get(f"http://127.0.0.1:{port}/models/digit-inception", timeout=5).json()
    return "folded" if card.get("folded") else "layer by layer"


def cpu_seconds(proc: subprocess.Popen[bytes]) -> float:
    """CPU time (user + system) the server and its children have used so far."""
    children = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True)
    total = 0
    for pid in [str(proc.pid), *children.stdout.split()]:
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / os.sysconf("SC_CLK_TCK")


def peak_rss_mb(proc: subprocess.Popen[bytes]) -> float:
    """Peak resident memory of the server and its children, in MB."""
    children = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True)
    pids = [str(proc.pid), *children.stdout.split()]
    total = 0
    for pid in pids:
        status = Path(f"/proc/{pid}/status")
        if status.exists():
            match = re.search(r"VmHWM:\s+(\d+) kB", status.read_text())
            total += int(match.group(1)) if match else 0
    return total / 1024


def run_wrk(
    url: str, script: str, concurrency: int, seconds: float, uploads: Path, cores: str = "1"
) -> Sample:
    kind = uploads.name
    cmd = [
        "taskset",
        "-c",
        cores,
        "wrk",
        "-t1",
        f"-c{concurrency}",
        f"-d{seconds:g}s",
        "--latency",
        "--timeout",
        "10s",
        "-s",
        str(WRK / script),
        url,
    ]
    env = {
        **os.environ,
        "BENCH_UPLOADS": str(uploads),
        "BENCH_COUNT": str(UPLOADS.get(kind, 1)),
        "BENCH_EXT": EXTENSIONS.get(kind, "png"),
    }
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True).stdout
    return parse_wrk(out)


def digit_uploads(folder: Path) -> Path:
    """The uploads of each class, ``<class>/<i>.<ext>`` (``bench.corpus``): scans alternate
    between thick binarised pens and small tight crops."""
    for kind, count in UPLOADS.items():
        (folder / kind).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            source = ("scan-thick", "scan-crop")[i % 2] if kind == "scan" else kind
            upload = corpus.sample(source, i)
            (folder / kind / f"{i}.{EXTENSIONS.get(kind, 'png')}").write_bytes(upload.data)
    return folder


def servers(python: str) -> list[Server]:
    uvicorn = [
        python,
        "-m",
        "uvicorn",
        "--host",
        "127.0.0.1",
        "--port",
        "{port}",
        "--no-access-log",
        "--log-level",
        "warning",
    ]
    one_core = {"TINYZOO_THREADS": "1", "TINYZOO_DEVICE": "cpu", "OMP_NUM_THREADS": "1"}
    # The service runs with the allocator settings it ships with (make serve, the image).
    service = {**one_core, **ALLOCATOR_ENV}
    paths = {key: path for key, (path, _, _) in ENDPOINTS.items()}
    digit_classes = ("scan", "canvas", "photo", "mnist")
    out = [
        Server("service (shipped)", [*uvicorn, "app.main:app"], service, "/readyz", paths),
        Server(
            "service, batching off",
            [*uvicorn, "app.main:app"],
            {**service, "TINYZOO_MAX_BATCH_SIZE": "1"},
            "/readyz",
            {k: paths[k] for k in ("scan", "mnist")},
        ),
        Server(
            "naive FastAPI (model per request)",
            [*uvicorn, "bench.naive_peer:app"],
            one_core,
            "/health",
            {k: "/digit" for k in digit_classes},
        ),
        Server(
            "bare FastAPI (ceiling)",
            [*uvicorn, "bench.echo:app"],
            one_core,
            "/docs",
            {
                **{k: "/digit" for k in digit_classes},
                "scan, raw body": "/digit-raw",
                "classify-name": "/classify-name",
            },
        ),
    ]
    scaled = {k: paths[k] for k in ("scan", "classify-name")}
    # The launcher, as make serve and the image run it (with 2 workers, metrics go through
    # prometheus-client's multiprocess files).
    launcher = ["env", "TINYZOO_HOST=127.0.0.1", "TINYZOO_PORT={port}", python, "-m", "app"]
    for workers in (1, 2):
        out.append(
            Server(
                f"service, {workers} worker{'s' if workers > 1 else ''} (2 cores, shared with wrk)",
                launcher,
                {**service, "TINYZOO_WORKERS": str(workers)},
                "/readyz",
                scaled,
                cores="0,1",
                client_cores="0,1",
            )
        )
    try:
        import litserve  # noqa: F401

        out.append(
            Server(
                "LitServe 64/5 ms (peer)",
                [python, "-m", "bench.litserve_peer"],
                {**one_core, "BENCH_MODEL": "digit-resnet"},
                "/health",
                {"scan": "/predict", "mnist": "/predict"},
            )
        )
    except ImportError:
        print("litserve is not installed: the peer is skipped", file=sys.stderr)
    return out


def _signal(proc: "subprocess.Popen[bytes]", sig: signal.Signals) -> None:
    """Send ``sig`` to a server and every process it started."""
    os.killpg(proc.pid, sig)


def _stop(proc: "subprocess.Popen[bytes]") -> None:
    """Stop a server with everything it started (LitServe's workers outlive their parent)."""
    with contextlib.suppress(ProcessLookupError):
        _signal(proc, signal.SIGCONT)
        _signal(proc, signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        _signal(proc, signal.SIGKILL)
        proc.wait()
    time.sleep(1)  # let the group's other processes exit too
    with contextlib.suppress(ProcessLookupError):
        _signal(proc, signal.SIGKILL)


def _sweep(
    server: Server,
    proc: "subprocess.Popen[bytes]",
    port: int,
    args: argparse.Namespace,
    uploads: Path,
) -> dict[tuple[str, str, int], Sample]:
    """One run of every endpoint and concurrency of one server."""
    out = {}
    for key, path in server.endpoints.items():
        _, script, kind = ENDPOINTS[key]
        for c in args.concurrency:
            url = f"http://127.0.0.1:{port}{path}"
            before = cpu_seconds(proc)
            sample = run_wrk(url, script, c, args.seconds, uploads / kind, server.client_cores)
            answered = max(sample.rps * args.seconds, 1)
            sample.cpu_ms = (cpu_seconds(proc) - before) / answered * 1000
            out[(server.name, key, c)] = sample
            settle(proc)
    return out


def settle(proc: "subprocess.Popen[bytes]", limit_s: float = 60) -> None:
    """Wait until the server is idle: ``wrk`` leaves up to its concurrency of requests in flight
    when it stops (a server behind on 64 photos needs seconds), and the next run's first
    requests would otherwise queue behind them."""
    deadline = time.perf_counter() + limit_s
    time.sleep(SETTLE_S)
    while time.perf_counter() < deadline:
        before = cpu_seconds(proc)
        time.sleep(0.2)
        if cpu_seconds(proc) - before < 0.02:  # under a tenth of a core
            return


def _warm_up(server: Server, proc: "subprocess.Popen[bytes]", port: int, uploads: Path) -> None:
    """A second of one client on the server's first endpoint, not recorded: a server resumed
    after a pause in which the others ran starts with cold caches, which showed as a slow first
    cell (concurrency 1) of its sweep."""
    key, path = next(iter(server.endpoints.items()))
    _, script, kind = ENDPOINTS[key]
    run_wrk(f"http://127.0.0.1:{port}{path}", script, 1, 1, uploads / kind, server.client_cores)
    settle(proc)


def measure_group(
    group: list[Server], args: argparse.Namespace, uploads: Path, *, side_by_side: bool
) -> tuple[list[str], list[str]]:
    """Measure a group of servers; medians per cell.

    Side by side: every server is started (each start-up timed alone) and paused (SIGSTOP, so
    an idle one takes no CPU: LitServe's workers poll), then each repeat resumes and sweeps
    them in turn, starting one server further each time, so that drift of a shared machine and
    the order of the sweep fall on all of them alike. Otherwise one server at a time, all its
    repeats together (multi-process servers, whose supervisors keep time with their workers).
    """
    started: list[tuple[Server, subprocess.Popen[bytes], int, float]] = []
    samples: dict[tuple[str, str, int], list[Sample]] = {}
    extras: list[str] = []
    computed: dict[str, str] = {}

    def record(sweep: dict[tuple[str, str, int], Sample]) -> None:
        for cell, sample in sweep.items():
            samples.setdefault(cell, []).append(sample)

    try:
        for server in group:
            port = _port()
            proc, ready_s = start(server, port)
            computed[server.name] = inception_serving(server, port)
            started.append((server, proc, port, ready_s))
            if side_by_side:
                _signal(proc, signal.SIGSTOP)
                continue
            try:
                for _ in range(args.repeats):
                    record(_sweep(server, proc, port, args, uploads))
                extras.append(
                    f"| {server.name} | {ready_s:.2f} s | {peak_rss_mb(proc):.0f} MB"
                    f" | {computed[server.name]} |"
                )
            finally:
                _stop(proc)
        if side_by_side:
            for repeat in range(args.repeats):
                # Each repeat starts the sweep at the next server, so none is always first.
                turn = repeat % len(started)
                for server, proc, port, _ in started[turn:] + started[:turn]:
                    _signal(proc, signal.SIGCONT)
                    time.sleep(0.5)
                    _warm_up(server, proc, port, uploads)
                    record(_sweep(server, proc, port, args, uploads))
                    _signal(proc, signal.SIGSTOP)
            extras = [
                f"| {server.name} | {ready_s:.2f} s | {peak_rss_mb(proc):.0f} MB"
                f" | {computed[server.name]} |"
                for server, proc, _, ready_s in started
            ]
    finally:
        for _, proc, _, _ in started:
            _stop(proc)
    rows = []
    for (name, key, c), cell in samples.items():
        med = Sample(
            *(
                statistics.median(getattr(s, f) for s in cell)
                for f in ("rps", "p50", "p90", "p99", "errors", "cpu_ms")
            )
        )
        row = (
            f"| {name} | {key} | {c} | {med.rps:,.0f} | {med.p50:.1f} | "
            f"{med.p90:.1f} | {med.p99:.1f} | {med.p99 / max(med.p50, 1e-9):.1f} "
            f"| {med.errors:.0f} | {med.cpu_ms:.2f} |"
        )
        print(row, flush=True)
        rows.append(row)
    return rows, extras


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[64])
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "RESULTS.md")
    args = parser.parse_args()
    rows: list[str] = []
    extras: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        uploads = digit_uploads(Path(tmp))
        every = servers(sys.executable)
        # The one-core comparison, then the worker-count comparison on both cores.
        for group, side_by_side in (
            ([s for s in every if s.cores == "0"], True),
            ([s for s in every if s.cores != "0"], False),
        ):
            more_rows, more_extras = measure_group(group, args, uploads, side_by_side=side_by_side)
            rows += more_rows
            extras += more_extras
        write_results(args, rows, extras, uploads)


def write_results(
    args: argparse.Namespace, rows: list[str], extras: list[str], uploads_dir: Path
) -> None:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    command = shlex.join(["python", "-m", "bench.serve_bench", *sys.argv[1:]])
    text = [
        "# Serving benchmark",
        "",
        f"Machine: {cpu}, {os.cpu_count()} cores; Python {platform.python_version()}. "
        "Server pinned to core 0 with one torch thread, `wrk` pinned to core 1.",
        f"Command: `{command}` ({args.repeats} runs of {args.seconds:g} s per cell, the one-core "
        "servers side by side; medians). Latencies in ms.",
        "",
        "| server | uploads | clients | req/s | p50 | p90 | p99 | p99/p50 | errors | CPU ms/req |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        *rows,
        "",
        "| server | start to ready | peak RSS | how digit-inception is computed |",
        "| --- | --- | --- | --- |",
        *extras,
        "",
        "In-process cost per upload on one core (medians; the model's share is a batch of 64 "
        "divided by 64):",
        "",
        *cost.table(uploads_dir),
        "",
    ]
    args.out.write_text(replace_section(args.out, "\n".join(text)))
    print(f"wrote {args.out}")


def replace_section(path: Path, section: str) -> str:
    """The file's text with its section of the same first heading replaced by ``section`` (the
    other benchmarks' sections kept), or ``section`` first when it has none."""
    heading = section.split("\n", 1)[0]
    old = path.read_text() if path.exists() else ""
    start = old.find(heading + "\n")
    if start < 0:
        return section + ("\n" + old if old else "")
    end = old.find("\n# ", start + len(heading))
    return old[:start] + section + (old[end:] if end >= 0 else "")


if __name__ == "__main__":
    main()
