"""The README's ``curl`` examples, and those of the guides in ``docs/``, give the answers they
print, against the service as ``make serve`` starts it; the README's settings table names every
setting; neither tells history.

Every ``console`` block is a list of ``$ command`` lines (continued with a trailing backslash),
each followed by the answer it prints. A JSON answer must have the same structure, strings and
integers as the printed one, and each float within the printed rounding (0.005); a stream of
server-sent events the same events and the same text.
"""

import contextlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.settings import Settings

PROJECT = Path(__file__).resolve().parent.parent
README = (PROJECT / "README.md").read_text()
GUIDES = {path.name: path.read_text() for path in sorted((PROJECT / "docs").glob("*.md"))}
URL = "http://127.0.0.1:8000"
ROUNDING = 0.005 + 1e-9
STARTUP_S = 120


def console_examples(text: str = README) -> list[tuple[str, str]]:
    """(command, printed answer) for every ``$ ...`` line of every ``console`` block."""
    examples: list[tuple[str, str]] = []
    for block in re.findall(r"```console\n(.*?)```", text, flags=re.DOTALL):
        command: list[str] = []
        answer: list[str] = []
        continued = False
        for line in block.splitlines():
            if line.startswith("$ ") or continued:
                if line.startswith("$ ") and command and not continued:
                    examples.append((" ".join(command), "\n".join(answer).strip()))
                    command, answer = [], []
                part = line[2:] if line.startswith("$ ") else line.strip()
                continued = part.endswith("\\")
                command.append(part.removesuffix("\\").strip())
            else:
                answer.append(line)
        if command:
            examples.append((" ".join(command), "\n".join(answer).strip()))
    return examples


def _makefile_env() -> dict[str, str]:
    """What ``make serve`` puts in the server's environment (allocator, one thread per worker)."""
    makefile = (PROJECT / "Makefile").read_text()
    (line,) = [ln for ln in makefile.splitlines() if ln.startswith("MALLOC_ENV :=")]
    env = dict(pair.split("=", 1) for pair in line.split(":=", 1)[1].split())
    for name in ("TINYZOO_WORKERS", "TINYZOO_THREADS"):
        (default,) = re.findall(rf"^{name} \?= (\S+)$", makefile, flags=re.MULTILINE)
        env[name] = default
    return env


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextlib.contextmanager
def _server(log_path: Path, **settings: str) -> Iterator[str]:
    """``python -m app`` from the checkout with ``make serve``'s environment and these
    ``TINYZOO_*`` settings, until the block ends; yields its URL once ready."""
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TINYZOO_")}
    env |= _makefile_env() | {"TINYZOO_HOST": "127.0.0.1", "TINYZOO_PORT": str(port)}
    env |= settings
    base = f"http://127.0.0.1:{port}"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "app"], cwd=PROJECT, env=env, stdout=log, stderr=log
        )
        try:
            deadline = time.monotonic() + STARTUP_S
            while True:
                assert proc.poll() is None, log_path.read_text()
                assert time.monotonic() < deadline, log_path.read_text()
                try:
                    if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                time.sleep(0.2)
            yield base
        finally:
            proc.terminate()
            proc.wait(timeout=30)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The server as ``make serve`` starts it; yields its URL."""
    with _server(tmp_path_factory.mktemp("readme") / "server.log") as base:
        yield base


def _events(text: str) -> list[tuple[str, Any]]:
    events = []
    for block in text.strip().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.strip().splitlines())
        events.append((fields["event"], json.loads(fields["data"])))
    return events


def _same(printed: Any, actual: Any, where: str = "answer") -> None:
    """The actual answer matches the printed one: structure, strings, integers, rounded floats."""
    if isinstance(printed, dict):
        assert isinstance(actual, dict) and printed.keys() == actual.keys(), where
        for key in printed:
            _same(printed[key], actual[key], f"{where}.{key}")
    elif isinstance(printed, list):
        assert isinstance(actual, list) and len(printed) == len(actual), where
        for i, (p, a) in enumerate(zip(printed, actual, strict=True)):
            _same(p, a, f"{where}[{i}]")
    elif isinstance(printed, float):
        assert isinstance(actual, float | int) and abs(actual - printed) <= ROUNDING, (
            f"{where}: printed {printed}, answered {actual}"
        )
    else:
        assert type(actual) is type(printed) and actual == printed, (
            f"{where}: printed {printed!r}, answered {actual!r}"
        )


def test_the_readme_shows_curl_examples_with_their_answers() -> None:
    examples = console_examples()
    assert len(examples) >= 8
    for command, answer in examples:
        assert command.startswith("curl ") and URL in command, command
        assert answer, f"no answer printed for {command}"
    first_screen = README.split("\n## ", 1)[0]
    assert len(first_screen.splitlines()) <= 45
    shown = {_route(command) for command, _ in console_examples(first_screen)}
    assert {"classify-name", "digit", "char-rnn"} <= shown, shown


def _route(command: str) -> str:
    found = re.search(re.escape(URL) + r"/([\w-]+)", command)
    assert found, command
    return found.group(1)


EXAMPLES = console_examples() + [
    example for text in GUIDES.values() for example in console_examples(text)
]


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
@pytest.mark.parametrize(
    ("command", "printed"),
    EXAMPLES,
    ids=[f"{i}-{_route(command)}" for i, (command, _) in enumerate(EXAMPLES)],
)
def test_readme_example_answers_as_printed(served: str, command: str, printed: str) -> None:
    if "| jq " in command and shutil.which("jq") is None:
        pytest.skip("jq is not installed")
    result = subprocess.run(
        ["bash", "-c", command.replace(URL, served)],
        cwd=PROJECT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    if printed.startswith("event:"):
        actual, expected = _events(result.stdout), _events(printed)
        assert [kind for kind, _ in actual].count("done") == 1 and actual[-1][0] == "done"
        text = "".join(data["text"] for kind, data in actual if kind == "chunk")
        assert text == "".join(data["text"] for kind, data in expected if kind == "chunk")
        _same(expected[-1][1], actual[-1][1])
    else:
        _same(json.loads(printed), json.loads(result.stdout))


def test_the_readme_documents_every_setting() -> None:
    table = README.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    for name in Settings.model_fields:
        assert f"`TINYZOO_{name.upper()}`" in table, f"TINYZOO_{name.upper()} is not in the table"


def test_the_readme_is_a_guide_not_a_diary() -> None:
    for name, text in {"README.md": README, **GUIDES}.items():
        for phrase in ("this round", "earlier round", "run before", "previous run", "we tried"):
            assert phrase not in text.lower(), f"{name}: {phrase}"
    for heading in ("## How to add a model", "## Architecture", "## Configuration"):
        assert heading in README


def _rollout_block() -> str:
    """The ``sh`` block that rolls a version out (under "Model versions")."""
    section = README.split("### Model versions", 1)[1]
    return section.split("```sh\n", 1)[1].split("```", 1)[0]


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_the_readme_rolls_a_version_out_as_printed(tmp_path: Path) -> None:
    """The roll-out commands, pasted into a shell beside a copy of the weights, against a server
    started with an admin key, answer what the block's comment says and serve version 2."""
    shutil.copytree(PROJECT / "weights", tmp_path / "weights")
    key = "readme-secret"
    block = _rollout_block()
    (printed,) = re.findall(r"^# answers (\{.*\})$", block, flags=re.MULTILINE)
    weights = str(tmp_path / "weights")
    log = tmp_path / "server.log"
    with _server(log, TINYZOO_WEIGHTS_DIR=weights, TINYZOO_ADMIN_KEY=key) as base:
        done = subprocess.run(
            ["bash", "-e", "-c", block.replace(URL, base)],
            cwd=tmp_path,
            env={**os.environ, "TINYZOO_ADMIN_KEY": key},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout.strip().splitlines()[0]) == json.loads(printed)
        card = httpx.get(f"{base}/models/digit-resnet", timeout=5).json()
        assert card["version"] == "2"
    pointer = json.loads((tmp_path / "weights/digit-resnet/model.json").read_text())
    assert pointer == {"default_version": "2"}
