"""``make container-check``: prove the Dockerfile's recipe without a Docker engine.

Reads the Dockerfile and runs its build stage here, step by step: each ``ARG`` default and ``ENV``,
each ``COPY`` from this checkout into a scratch ``WORKDIR``, each ``RUN`` through ``sh`` with
``/opt/venv`` a fresh directory (torch comes through ``deploy/install-torch.sh``, as in the image,
so this machine's own package sources apply). Then it checks that the result holds no training
code or dev tool, copies the weights as the final stage does, starts exactly its ``CMD`` with its
``ENV`` (on loopback and a free port instead of ``0.0.0.0:8000``), and checks ``/readyz``, one
prediction per endpoint (and one explanation of each kind: Captum works there), ``/metrics``
counting them across the workers and a graceful SIGTERM.
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
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = "/opt/venv"
NOT_IN_THE_IMAGE = ("training", "sklearn", "pytest", "ruff", "mypy", "playwright")
"""Modules the serving image must not hold: the training package, what only it uses (the
calibration's fit), dev tools. (matplotlib and tqdm, which training uses, are in it: Captum,
behind the explanation routes, requires both.)"""


@dataclass
class Recipe:
    """What the Dockerfile says, as data."""

    build: list[tuple[str, str]] = field(default_factory=list)  # the build stage, in order
    env: dict[str, str] = field(default_factory=dict)  # of the final stage
    cmd: list[str] = field(default_factory=list)
    expose: list[int] = field(default_factory=list)
    user: str = ""
    healthcheck: str = ""
    copies: list[list[str]] = field(default_factory=list)  # of the final stage

    @property
    def runs(self) -> list[str]:
        """The build stage's ``RUN`` commands."""
        return [rest for keyword, rest in self.build if keyword == "RUN"]

    @property
    def args(self) -> dict[str, str]:
        """The build stage's ``ARG`` defaults."""
        pairs = (rest.partition("=") for keyword, rest in self.build if keyword == "ARG")
        return {name: value for name, _, value in pairs}


def _instructions(text: str) -> list[tuple[str, str]]:
    joined = re.sub(r"\\\n\s*", " ", text)
    out = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            out.append((keyword.upper(), rest.strip()))
    return out


def _env_pairs(rest: str) -> dict[str, str]:
    return dict(pair.split("=", 1) for pair in shlex.split(rest))


def parse_dockerfile(path: Path = ROOT / "Dockerfile") -> Recipe:
    """The build stage's steps and the runtime settings of the last stage."""
    recipe = Recipe()
    stages = 0
    for keyword, rest in _instructions(path.read_text()):
        if keyword == "FROM":
            stages += 1
            recipe.env, recipe.copies = {}, []
        elif stages == 1:
            recipe.build.append((keyword, rest))
        elif keyword == "ENV":
            recipe.env.update(_env_pairs(rest))
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


def build(recipe: Recipe, workdir: Path) -> Path:
    """Run the build stage here; returns the directory that stands for ``/opt/venv``."""
    venv = workdir / "venv"
    # The base image's ``python``: this interpreter, first on PATH.
    shims = workdir / "bin"
    shims.mkdir()
    (shims / "python").symlink_to(sys.executable)
    env = {**os.environ, "PATH": f"{shims}:{os.environ['PATH']}", **recipe.args}
    cwd = workdir
    for keyword, rest in recipe.build:
        if keyword == "ENV":
            for name, value in _env_pairs(rest).items():
                value = value.replace(VENV, str(venv)).replace("$PATH", env["PATH"])
                env[name] = value
        elif keyword == "WORKDIR":
            cwd = workdir / rest.lstrip("/")
            cwd.mkdir(parents=True, exist_ok=True)
        elif keyword == "COPY":
            *sources, dest = rest.split()
            for source in sources:
                target = cwd / dest / Path(source).name if dest.endswith("/") else cwd / dest
                target.parent.mkdir(parents=True, exist_ok=True)
                if (ROOT / source).is_dir():
                    shutil.copytree(
                        ROOT / source, target, ignore=shutil.ignore_patterns("__pycache__")
                    )
                else:
                    shutil.copy2(ROOT / source, target)
        elif keyword == "RUN":
            command = rest.replace(VENV, str(venv))
            print("RUN", command, flush=True)
            subprocess.run(["sh", "-c", command], cwd=cwd, env=env, check=True)
    return venv


def check_slim(venv: Path) -> None:
    """The serving image holds no training code or dev tool."""
    probe = "import importlib.util as u, sys; print([m for m in sys.argv[1:] if u.find_spec(m)])"
    found = subprocess.run(
        [str(venv / "bin" / "python"), "-c", probe, *NOT_IN_THE_IMAGE],
        cwd=venv,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert found == "[]", f"the image would hold {found}"
    print(f"slim: none of {', '.join(NOT_IN_THE_IMAGE)} in the image", flush=True)


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
    venv = build(recipe, workdir)
    check_slim(venv)
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
            "digit explained": _post(f"{base}/digit/explain", body, ctype),
            "name explained": _post(
                f"{base}/classify-name/explain", b'{"name": "Nakamura"}', "application/json"
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
        assets = re.findall(r'"(/docs/assets/[^"]+)"', _text(f"{base}/docs"))
        for asset in assets:
            with urllib.request.urlopen(base + asset, timeout=5) as r:
                assert r.status == 200 and len(r.read()) > 1000, asset
        print(f"/docs: its {len(assets)} assets served by the image itself", flush=True)
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
