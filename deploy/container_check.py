"""``make container-check``: prove the Dockerfile's recipe without a Docker engine.

Reads the Dockerfile, builds a fresh virtual environment with exactly its ``pip install`` steps
(the one substitution: the CPU torch wheel comes from this machine's package source instead of
``$TORCH_INDEX``), copies the weights as the image does, starts exactly its ``CMD`` with its
``ENV`` (on loopback and a free port instead of ``0.0.0.0:8000``), then checks ``/readyz``, one
prediction per endpoint, ``/metrics`` counting them across the workers and a graceful SIGTERM.
"""

import io
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Recipe:
    """What the Dockerfile says, as data."""

    installs: list[list[str]] = field(default_factory=list)  # argv after "pip install"
    env: dict[str, str] = field(default_factory=dict)  # of the final stage
    cmd: list[str] = field(default_factory=list)
    expose: list[int] = field(default_factory=list)
    user: str = ""
    healthcheck: str = ""
    copies: list[list[str]] = field(default_factory=list)  # of the final stage


def _instructions(text: str) -> list[tuple[str, str]]:
    joined = re.sub(r"\\\n\s*", " ", text)
    out = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            out.append((keyword.upper(), rest.strip()))
    return out


def parse_dockerfile(path: Path = ROOT / "Dockerfile") -> Recipe:
    """The install steps of every stage and the runtime settings of the last one."""
    recipe = Recipe()
    for keyword, rest in _instructions(path.read_text()):
        if keyword == "FROM":
            recipe.env, recipe.copies = {}, []
        elif keyword == "RUN" and rest.startswith("pip install"):
            recipe.installs.append(shlex.split(rest)[2:])
        elif keyword == "ENV":
            recipe.env.update(dict(pair.split("=", 1) for pair in shlex.split(rest)))
        elif keyword == "CMD":
            recipe.cmd = json.loads(rest)
        elif keyword == "EXPOSE":
            recipe.expose = [int(p) for p in rest.split()]
        elif keyword == "USER":
            recipe.user = rest
        elif keyword == "HEALTHCHECK":
            recipe.healthcheck = rest
        elif keyword == "COPY" and "--from" not in rest:
            recipe.copies.append(rest.split())
    return recipe


def local_install_args(args: list[str]) -> list[str]:
    """The Dockerfile's pip arguments, with ``--index-url $TORCH_INDEX`` left to this machine."""
    out, skip = [], False
    for arg in args:
        if skip:
            skip = False
            continue
        if arg == "--index-url":
            skip = True
            continue
        out.append(arg)
    return out


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(url: str) -> tuple[int, dict[str, object]]:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, json.loads(r.read() or b"{}")
    except urllib.error.HTTPError as exc:
        return exc.code, {}


def _text(url: str) -> str:
    import urllib.request

    with urllib.request.urlopen(url, timeout=5) as r:
        return str(r.read().decode())


def _post(url: str, body: bytes, content_type: str) -> tuple[int, dict[str, object]]:
    import urllib.request

    request = urllib.request.Request(url, data=body, headers={"Content-Type": content_type})
    with urllib.request.urlopen(request, timeout=30) as r:
        return r.status, json.loads(r.read())


def _digit_form() -> tuple[bytes, str]:
    from PIL import Image, ImageDraw

    image = Image.new("L", (120, 160), 255)
    ImageDraw.Draw(image).line((60, 20, 60, 140), fill=0, width=12)
    png = io.BytesIO()
    image.save(png, format="PNG")
    boundary = "containercheck"
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="1.png"\r\n'
            "Content-Type: image/png\r\n\r\n"
        ).encode()
        + png.getvalue()
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return body, f"multipart/form-data; boundary={boundary}"


def check(workdir: Path) -> None:
    recipe = parse_dockerfile()
    venv = workdir / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet"]
    for args in recipe.installs:
        print("pip install", shlex.join(args), flush=True)
        subprocess.run([*pip, *local_install_args(args)], cwd=ROOT, check=True)
    srv = workdir / "srv"
    srv.mkdir()
    shutil.copytree(
        ROOT / "weights", Path(recipe.env["TINYZOO_WEIGHTS_DIR"].replace("/srv", str(srv)))
    )
    env = {k: v.replace("/srv", str(srv)) for k, v in recipe.env.items()}
    env["PATH"] = f"{venv / 'bin'}:{os.environ['PATH']}"
    port = _port()
    # The image listens on 0.0.0.0:8000; here, on loopback and a free port.
    env |= {"TINYZOO_HOST": "127.0.0.1", "TINYZOO_PORT": str(port)}
    workers = env.get("TINYZOO_WORKERS", "1")
    print("starting", shlex.join(recipe.cmd), f"({workers} workers)", flush=True)
    started = time.perf_counter()
    proc = subprocess.Popen(recipe.cmd, cwd=srv, env={**os.environ, **env})
    base = f"http://127.0.0.1:{port}"
    try:
        while _try_ready(base) != 200:
            assert proc.poll() is None, "server exited during startup"
            assert time.perf_counter() - started < 120, "not ready in 120 s"
            time.sleep(0.2)
        print(f"ready in {time.perf_counter() - started:.1f} s", flush=True)
        body, ctype = _digit_form()
        results = {
            "digit": _post(f"{base}/digit", body, ctype),
            "classify-name": _post(
                f"{base}/classify-name", b'{"name": "Nakamura"}', "application/json"
            ),
            "batch": _post(
                f"{base}/classify-name/batch", b'{"names": ["Ivanov"]}', "application/json"
            ),
            "transduce": _post(
                f"{base}/char-rnn/transduce", b'{"text": "hello"}', "application/json"
            ),
            "generate": _post(
                f"{base}/char-rnn/generate",
                b'{"prompt": "A", "max_chars": 20, "seed": 1}',
                "application/json",
            ),
            "models": _get(f"{base}/models"),
        }
        for name, (status, payload) in results.items():
            assert status == 200, (name, status)
            print(f"{name}: {status} {json.dumps(payload)[:100]}", flush=True)
        assert results["transduce"][1]["output"] == "ohlol"
        # A worker counts a request just after answering it: wait for the count once, then it
        # is the same on every scrape (a fresh connection each), whichever worker answers.
        counted = 'route="/classify-name",status="200"} 1.0'
        deadline = time.perf_counter() + 10
        while counted not in _text(f"{base}/metrics"):
            assert time.perf_counter() < deadline, "/metrics never counted /classify-name"
            time.sleep(0.1)
        for _ in range(4):
            assert counted in _text(f"{base}/metrics")
        print("metrics: /classify-name counted once, on every scrape", flush=True)
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=30)
        assert code in (0, -signal.SIGTERM), code
        print(f"graceful shutdown: exit {code}")
    finally:
        if proc.poll() is None:
            proc.kill()


def _try_ready(base: str) -> int:
    try:
        return _get(f"{base}/readyz")[0]
    except OSError:
        return 0


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="tinyzoo-container-") as tmp:
        check(Path(tmp))
    print("container check passed")


if __name__ == "__main__":
    main()
