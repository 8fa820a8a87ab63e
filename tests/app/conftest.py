"""API fixtures: tiny random-init checkpoints in tmp_path, the app with its lifespan entered."""

import string
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import torch
from fastapi import FastAPI

from app.main import create_app
from app.settings import Settings
from models import (
    CharRNN,
    CharRNNConfig,
    InceptionNet,
    InceptionNetConfig,
    NameGRU,
    NameGRUConfig,
    ResNet,
    ResNetConfig,
)
from models.checkpoint import save_checkpoint

COUNTRIES = [
    "Arabic",
    "Chinese",
    "Czech",
    "Dutch",
    "English",
    "French",
    "German",
    "Greek",
    "Irish",
    "Italian",
    "Japanese",
    "Korean",
    "Polish",
    "Portuguese",
    "Russian",
    "Scottish",
    "Spanish",
    "Vietnamese",
]
SHAKESPEARE_VOCAB = sorted(set("\n !$&',-.3:;?" + string.ascii_letters))
DIGIT_CARD = {
    "task": "digits",
    "labels": [str(d) for d in range(10)],
    "preprocessing": {"mean": 0.1307, "std": 0.3081},
}


def write_tiny_weights(root: Path) -> Path:
    """Five random-init checkpoints with real architectures and cards."""
    torch.manual_seed(0)
    save_checkpoint(
        root / "digit-resnet",
        ResNet(ResNetConfig()),
        {"name": "digit-resnet", "architecture": "ResNet", "config": {}, **DIGIT_CARD},
    )
    save_checkpoint(
        root / "digit-inception",
        InceptionNet(InceptionNetConfig()),
        {"name": "digit-inception", "architecture": "InceptionNet", "config": {}, **DIGIT_CARD},
    )
    names_config = {"embedding_dim": 8, "hidden_size": 8, "num_layers": 1}
    save_checkpoint(
        root / "name-gru",
        NameGRU(NameGRUConfig(**names_config)),  # type: ignore[arg-type]
        {
            "name": "name-gru",
            "task": "names",
            "architecture": "NameGRU",
            "config": names_config,
            "labels": COUNTRIES,
        },
    )
    save_checkpoint(
        root / "char-rnn-hello",
        CharRNN(CharRNNConfig()),
        {
            "name": "char-rnn-hello",
            "task": "hello",
            "architecture": "CharRNN",
            "config": {},
            "vocabulary": ["h", "e", "l", "o"],
        },
    )
    lm_config = {
        "vocab_size": len(SHAKESPEARE_VOCAB),
        "embedding_dim": 8,
        "hidden_size": 16,
        "cell": "gru",
    }
    save_checkpoint(
        root / "char-rnn-shakespeare",
        CharRNN(CharRNNConfig(**lm_config)),  # type: ignore[arg-type]
        {
            "name": "char-rnn-shakespeare",
            "task": "lm",
            "architecture": "CharRNN",
            "config": lm_config,
            "vocabulary": SHAKESPEARE_VOCAB,
        },
    )
    return root


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_weights(tmp_path_factory.mktemp("weights"))


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


AppFactory = Callable[..., Any]


async def _client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield client


@pytest.fixture
def settings(tiny_weights: Path) -> Settings:
    return Settings(weights_dir=tiny_weights, max_wait_ms=1.0)  # device: $TINYZOO_DEVICE or auto


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the app built on the tiny checkpoints, lifespan entered."""
    async for c in _client(create_app(settings)):
        yield c


@pytest.fixture
def make_client() -> Callable[[Settings], Any]:
    """Build a client for other settings: ``async with make_client(s) as c``."""
    from contextlib import asynccontextmanager

    @asynccontextmanager
    async def factory(s: Settings) -> AsyncIterator[httpx.AsyncClient]:
        async for c in _client(create_app(s)):
            yield c

    return factory
