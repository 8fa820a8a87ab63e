"""Network definitions shared by training and serving; one definition of each model."""

from models.checkpoint import Checkpoint, CheckpointError, load_checkpoint, save_checkpoint
from models.char_rnn import CharRNN, CharRNNConfig
from models.inception import InceptionA, InceptionNet, InceptionNetConfig
from models.name_gru import NameGRU, NameGRUConfig
from models.registry import ARCHITECTURES, Architecture, build_model, count_parameters
from models.resnet import ResidualBlock, ResNet, ResNetConfig

__all__ = [
    "Checkpoint",
    "CheckpointError",
    "load_checkpoint",
    "save_checkpoint",
    "ARCHITECTURES",
    "Architecture",
    "CharRNN",
    "CharRNNConfig",
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
]
