"""The model repository: versions on disk, verified and loaded, and the version each model serves.

Layout: ``<weights>/<model>/<version>/`` holds ``model.safetensors`` and ``card.json``, versions
named by positive integers (Triton's convention). A model folder with ``card.json`` directly in
it (the flat layout the committed weights use) is that model's version ``1``. The version served
at startup is ``default_version`` from ``<weights>/<model>/model.json`` when that file exists,
else the newest. Loading a version checks its card and the sha256 of its weights
(``models.checkpoint``); a version replacing a served one must also keep its task, family and
labels, so that answers keep their meaning.
"""

import json
import logging
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import torch

from app.errors import NotFound
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


@dataclass
class ModelRegistry:
    """The repository on disk, the checkpoints served by name, and the device they run on."""

    device: torch.device
    weights_dir: Path
    models: dict[str, Checkpoint] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    """The version each served model answers with."""
    load_seconds: dict[str, float] = field(default_factory=dict)
    serving: dict[str, dict[str, Any]] = field(default_factory=dict)
    """How the server computes each model, where it departs from the layers as written (the
    digit nets: folded, NNPACK kernels), merged into its card."""

    @classmethod
    def load(cls, weights_dir: Path, device: torch.device) -> "ModelRegistry":
        """Load every model's default version; any failure stops startup."""
        registry = cls(device=device, weights_dir=weights_dir)
        if not weights_dir.is_dir():
            raise CheckpointError(weights_dir, "weights directory not found")
        for name in registry.on_disk():
            version, checkpoint = registry.read(name, None, replacing=False)
            registry.models[name] = checkpoint
            registry.versions[name] = version
            logger.info("loaded %s version %s on %s", name, version, device)
        if not registry.models:
            raise CheckpointError(
                weights_dir, "no checkpoints (<model>/card.json or <model>/<version>/card.json)"
            )
        return registry

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
        served = self.models.get(name)
        if replacing and served is not None:
            self._check_same_meaning(card_path, served.card, checkpoint.card)
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
        """A model's card plus where it runs and which version; 404 for an unknown name."""
        if name not in self.models:
            raise NotFound(f"no model named {name!r}; served: {', '.join(sorted(self.models))}")
        checkpoint = self.models[name]
        return {
            **checkpoint.card,
            "device": str(self.device),
            "version": self.versions[name],
            **self.serving.get(name, {}),
        }
