"""``python -m app`` as an operator meets it: ``--help`` lists every setting, and a bad setting
is one line on stderr and a non-zero exit, never a traceback."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from app.settings import Settings

PROJECT = Path(__file__).resolve().parents[2]


def _run(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("TINYZOO_")}
    return subprocess.run(
        [sys.executable, "-m", "app", *args],
        cwd=PROJECT,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_help_lists_every_setting_with_its_default() -> None:
    done = _run("--help")
    assert done.returncode == 0, done.stderr
    for name, field in Settings.model_fields.items():
        assert f"TINYZOO_{name.upper()}  (default: " in done.stdout
        assert field.description and field.description in done.stdout
    assert "TINYZOO_PORT  (default: 8000)" in done.stdout


@pytest.mark.parametrize(
    ("env", "says"),
    [
        ({"TINYZOO_PORT": "abc"}, "TINYZOO_PORT='abc'"),
        ({"TINYZOO_WORKERS": "0"}, "TINYZOO_WORKERS='0'"),
        ({"TINYZOO_DEVICE": "tpu"}, "TINYZOO_DEVICE='tpu'"),
    ],
)
def test_a_bad_setting_is_one_line_and_a_non_zero_exit(env: dict[str, str], says: str) -> None:
    done = _run(**env)
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert 1 <= len(lines) <= 3, done.stderr
    assert says in lines[0]
    assert "Traceback" not in done.stderr


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_a_gpu_asked_for_where_there_is_none_is_one_line() -> None:
    done = _run(TINYZOO_DEVICE="cuda")
    assert done.returncode != 0
    assert done.stderr.strip().splitlines() == [
        "tinyzoo: TINYZOO_DEVICE=cuda but CUDA is not available here (use auto or cpu)"
    ]
