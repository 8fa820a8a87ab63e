"""Network definitions shared by training and serving; one definition of each model."""

from models.char_rnn import CharRNN, CharRNNConfig
from models.checkpoint import Checkpoint, CheckpointError, load_checkpoint, save_checkpoint
from models.inception import InceptionA, InceptionNet, InceptionNetConfig
from models.name_gru import NameGRU, NameGRUConfig
from models.registry import ARCHITECTURES, Architecture, build_model, count_parameters
from models.resnet import ResidualBlock, ResNet, ResNetConfig

__all__ = [
    "ARCHITECTURES",
    "Architecture",
    "CharRNN",
    "CharRNNConfig",
    "Checkpoint",
    "CheckpointError",
    "InceptionA",
    "InceptionNet",
    "InceptionNetConfig",
    "NameGRU",
    "NameGRUConfig",
    "ResNet",
    "ResNetConfig",
    "ResidualBlock",
    "build_model",
    "count_parameters",
    "load_checkpoint",
    "save_checkpoint",
]
