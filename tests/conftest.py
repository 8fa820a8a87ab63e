"""Shared fixtures: the real data directory and the project's committed weights."""

from pathlib import Path

import pytest

from training.data import default_data_dir

PROJECT = Path(__file__).resolve().parent.parent
WEIGHTS = PROJECT / "weights"


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The shared real data; CI has it beside the checkout, so its absence is a failure."""
    path = default_data_dir()
    assert (path / "mnist").is_dir(), f"real data not found at {path}"
    return path
