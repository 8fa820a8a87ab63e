"""Name -> architecture registry: how a checkpoint's ``architecture`` field becomes a module."""

import dataclasses
from dataclasses import dataclass
from typing import Any

from torch import nn

from models.char_rnn import CharRNN, CharRNNConfig
from models.inception import InceptionNet, InceptionNetConfig
from models.name_gru import NameGRU, NameGRUConfig
from models.resnet import ResNet, ResNetConfig


@dataclass(frozen=True)
class Architecture:
    """A module class and the config dataclass it takes."""

    module: type[nn.Module]
    config: type[Any]

    def build(self, config: dict[str, Any]) -> nn.Module:
        """Build the module from a config dict; unknown or mistyped keys are an error."""
        known = {f.name for f in dataclasses.fields(self.config)}
        unknown = sorted(set(config) - known)
        if unknown:
            raise ValueError(f"unknown config keys for {self.module.__name__}: {unknown}")
        return self.module(self.config(**config))


ARCHITECTURES: dict[str, Architecture] = {
    "InceptionNet": Architecture(InceptionNet, InceptionNetConfig),
    "ResNet": Architecture(ResNet, ResNetConfig),
    "NameGRU": Architecture(NameGRU, NameGRUConfig),
    "CharRNN": Architecture(CharRNN, CharRNNConfig),
}


def build_model(architecture: str, config: dict[str, Any]) -> nn.Module:
    """Build a registered architecture from its config dict."""
    if architecture not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {architecture!r}; known: {sorted(ARCHITECTURES)}")
    return ARCHITECTURES[architecture].build(config)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
