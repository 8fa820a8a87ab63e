"""The model repository: versions on disk, verified and loaded, and the version each model serves.

Layout: ``<weights>/<model>/<version>/`` holds ``model.safetensors`` and ``card.json``, versions
named by positive integers (Triton's convention). A model folder with ``card.json`` directly in
it (the flat layout the committed weights use) is that model's version ``1``. The version served
at startup is ``default_version`` from ``<weights>/<model>/model.json`` when that file exists,
else the newest. Loading a version checks its card and the sha256 of its weights
(``models.checkpoint``); a version replacing a served one must also keep its task, family and
labels, so that answers keep their meaning.

The registry also owns each served version's lifecycle. What serves a version (its ``Runner``:
the net and its batching queue) is built by the function the app hands in, started on the event
loop and swapped in atomically; a request looks its version up once (``get``) and finishes on it.
A version replaced or unloaded is drained: it takes no new work (503) and answers what it had
admitted before it stops.
"""

import asyncio
import gc
import json
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Protocol

import anyio.to_thread
import torch

from app.errors import ModelUnavailable, NotFound
from models.checkpoint import CARD_FILE, Checkpoint, CheckpointError, load_checkpoint

logger = logging.getLogger("app.registry")

FLAT_VERSION: Final = "1"
"""The version a model folder holding ``card.json`` itself (the flat layout) stands for."""
POINTER_FILE: Final = "model.json"
"""``{"default_version": "2"}``: the version served at startup (default: the newest)."""
VERSION_NAME: Final = re.compile(r"^[1-9][0-9]{0,8}$")
MODEL_NAME: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
"""A model folder's name: never a path (``..``, ``a/b``) that would leave the repository."""
FAMILIES: Final = {"InceptionNet": "digits", "ResNet": "digits", "NameGRU": "names"}
"""Architectures that can stand in for each other (same service, same inputs)."""
SAME_MEANING: Final = ("task", "labels", "vocabulary")
"""Card fields a new version must share with the one it replaces."""


def family(card: dict[str, Any]) -> str:
    """The service family of a card's architecture: digits, names, or the architecture itself."""
    arch = str(card["architecture"])
    return FAMILIES.get(arch, arch)


def model_versions(model_dir: Path) -> dict[str, Path]:
    """A model's versions on disk, oldest first: version name -> checkpoint folder."""
    versions: dict[str, Path] = {}
    if (model_dir / CARD_FILE).is_file():
        versions[FLAT_VERSION] = model_dir
    for child in model_dir.iterdir():
        if not (child.is_dir() and VERSION_NAME.match(child.name)):
            continue
        if not (child / CARD_FILE).is_file():
            continue
        if child.name in versions:
            raise CheckpointError(
                child,
                "version 1 is here twice: card.json in the model folder (the flat layout) "
                "and a folder named 1; keep one",
            )
        versions[child.name] = child
    return dict(sorted(versions.items(), key=lambda item: int(item[0])))


def default_version(model_dir: Path, versions: dict[str, Path]) -> str:
    """The version served at startup: ``model.json``'s ``default_version``, else the newest."""
    pointer = model_dir / POINTER_FILE
    if not pointer.is_file():
        return next(reversed(versions))
    try:
        chosen = json.loads(pointer.read_text(encoding="utf-8"))["default_version"]
    except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as exc:
        raise CheckpointError(
            pointer, f'expected {{"default_version": "<version>"}} ({exc})'
        ) from exc
    if str(chosen) not in versions:
        raise CheckpointError(
            pointer, f"default_version {chosen!r} is not on disk; versions: {', '.join(versions)}"
        )
    return str(chosen)


class Runner(Protocol):
    """What serves one loaded version (built by the app's service layer)."""

    def start(self) -> None:
        """Start serving, on the event loop."""

    async def close(self) -> None:
        """Take no new work, finish what was admitted, stop."""

    def serving(self) -> dict[str, Any]:
        """How the server computes the net, where it departs from the layers as written."""


@dataclass(frozen=True)
class Served:
    """One loaded version of a model, and what serves it."""

    name: str
    version: str
    checkpoint: Checkpoint
    runner: Any
    """The family's ``Runner`` for this version (a service knows which type it built)."""


Build = Callable[[Checkpoint, str], Runner]
"""Makes the runner of a checkpoint (version name given), warmed and checked: in a worker
thread, before anything is served."""
Changed = Callable[[Served, bool], None]
"""Told when a version starts (True) or stops (False) serving, for the metrics."""


@dataclass
class ModelRegistry:
    """The repository on disk, the versions served by name, and the device they run on."""

    device: torch.device
    weights_dir: Path
    build: Build
    on_change: Changed | None = None
    served: dict[str, Served] = field(default_factory=dict)
    load_seconds: dict[str, float] = field(default_factory=dict)
    _lock: asyncio.Lock | None = None

    def load_defaults(self) -> None:
        """Read and build every model's default version (in a thread, at startup); any
        failure stops startup."""
        if not self.weights_dir.is_dir():
            raise CheckpointError(self.weights_dir, "weights directory not found")
        for name in self.on_disk():
            version, checkpoint = self.read(name, None, replacing=False)
            self.served[name] = Served(name, version, checkpoint, self.build(checkpoint, version))
            logger.info("loaded %s version %s on %s", name, version, self.device)
        if not self.served:
            raise CheckpointError(
                self.weights_dir,
                "no checkpoints (<model>/card.json or <model>/<version>/card.json)",
            )

    def start(self) -> None:
        """On the event loop: every loaded version starts serving."""
        for served in self.served.values():
            served.runner.start()
            self._changed(served, True)

    async def close(self) -> None:
        """At shutdown: every version stops, answering what it had admitted."""
        served, self.served = list(self.served.values()), {}
        await asyncio.gather(*(s.runner.close() for s in served))

    @property
    def models(self) -> dict[str, Checkpoint]:
        """The served checkpoints by name."""
        return {name: s.checkpoint for name, s in self.served.items()}

    def get(self, name: str) -> Served:
        """The version ``name`` serves now: 503 for a model in the repository that is not
        loaded, 404 for one that is not there at all."""
        served = self.served.get(name)
        if served is not None:
            return served
        if MODEL_NAME.match(name) and name in self.on_disk():
            raise ModelUnavailable(
                f"model {name!r} is not loaded on this server; load it through the repository",
                headers={"Retry-After": "1"},
            )
        raise NotFound(f"no model named {name!r}; served: {', '.join(sorted(self.served))}")

    def lock(self) -> asyncio.Lock:
        """Held while a version loads or a model unloads: one change at a time."""
        if self._lock is None:
            self._lock = asyncio.Lock()
        return self._lock

    async def load(self, name: str, version: str | None) -> tuple[str, str | None]:
        """Read, verify, build and check a version (default: the newest) in a worker thread,
        then serve it in place of the one served; returns it and the version it replaced.
        NotFound, or CheckpointError / ValueError for a version refused (the served one keeps
        serving)."""
        async with self.lock():
            chosen, checkpoint = await anyio.to_thread.run_sync(self.read, name, version)
            runner = await anyio.to_thread.run_sync(self.build, checkpoint, chosen)
            return chosen, await self._swap(Served(name, chosen, checkpoint, runner))

    async def _swap(self, new: Served) -> str | None:
        """Serve a built version from now on (on the event loop, so no request sees a half-made
        swap); the version it replaces finishes what it admitted. Returns that version."""
        name = new.name
        new.runner.start()
        previous = self.served.get(name)
        self.served[name] = new
        self._changed(new, True)
        if previous is None:
            return None
        self._changed(previous, False)
        await previous.runner.close()
        gc.collect()  # its net and queue refer to each other: free them now, not at some later pass
        return previous.version

    async def unload(self, name: str) -> str:
        """Stop serving a model: new requests get 503, those it admitted are answered first."""
        async with self.lock():
            served = self.served.pop(name, None)
            if served is None:
                raise NotFound(f"model {name!r} is not loaded")
            self._changed(served, False)
            await served.runner.close()
            gc.collect()
            return served.version

    def _changed(self, served: Served, serving: bool) -> None:
        if self.on_change is not None:
            self.on_change(served, serving)

    def on_disk(self) -> dict[str, dict[str, Path]]:
        """Every model folder with at least one version: name -> its versions."""
        found = {}
        for model_dir in sorted(p for p in self.weights_dir.iterdir() if p.is_dir()):
            versions = model_versions(model_dir)
            if versions:
                found[model_dir.name] = versions
        return found

    def read(
        self, name: str, version: str | None, *, replacing: bool = True
    ) -> tuple[str, Checkpoint]:
        """Load a version from disk (default: the newest; at startup, the default one), checked
        against its card and, when ``replacing``, against the served version's card. Nothing
        served changes. NotFound for an unknown model or version; CheckpointError for a bad one."""
        model_dir = self.weights_dir / name
        known = MODEL_NAME.match(name) and model_dir.is_dir()
        versions = model_versions(model_dir) if known else {}
        if not versions:
            raise NotFound(f"no model named {name!r} in the repository")
        if version is None and replacing:
            version = next(reversed(versions))
        elif version is None:
            version = default_version(model_dir, versions)
        if version not in versions:
            raise NotFound(f"{name} has no version {version!r}; on disk: {', '.join(versions)}")
        started = time.perf_counter()
        checkpoint = load_checkpoint(versions[version], self.device)
        card_path = versions[version] / CARD_FILE
        if checkpoint.name != name:
            raise CheckpointError(card_path, f"names the model {checkpoint.name!r}, not {name!r}")
        served = self.served.get(name)
        if replacing and served is not None:
            self._check_same_meaning(card_path, served.checkpoint.card, checkpoint.card)
        self.load_seconds[name] = time.perf_counter() - started
        return version, checkpoint

    @staticmethod
    def _check_same_meaning(card_path: Path, served: dict[str, Any], new: dict[str, Any]) -> None:
        if family(new) != family(served):
            raise CheckpointError(
                card_path,
                f"is a {new['architecture']}; the served version is a {served['architecture']}",
            )
        for key in SAME_MEANING:
            if served.get(key) != new.get(key):
                raise CheckpointError(
                    card_path,
                    f"its {key} differs from the served version's; answers would change "
                    "meaning (serve it under a new model name)",
                )

    def card(self, name: str) -> dict[str, Any]:
        """A served model's card plus where it runs and which version; 404 when not served."""
        served = self.served.get(name)
        if served is None:
            raise NotFound(f"no model named {name!r}; served: {', '.join(sorted(self.served))}")
        return {
            **served.checkpoint.card,
            "device": str(self.device),
            "version": served.version,
            **served.runner.serving(),
        }
