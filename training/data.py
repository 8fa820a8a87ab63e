"""Readers for the real data sets in the shared data directory; no downloads.

Every reader checks what it reads and fails with a :class:`DataError` that names the file and
what was expected.
"""

import csv
import gzip
import io
import os
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from models.checkpoint import sha256_file

DATA_DIR_ENV = "TINYZOO_DATA_DIR"
MNIST_FILES = {
    "train_images": "train-images-idx3-ubyte.gz",
    "train_labels": "train-labels-idx1-ubyte.gz",
    "test_images": "t10k-images-idx3-ubyte.gz",
    "test_labels": "t10k-labels-idx1-ubyte.gz",
}
NAMES_FILES = {"train": "names_train.csv.gz", "test": "names_test.csv.gz"}
SHAKESPEARE_FILE = "shakespeare.txt.gz"
# Rows of the names files that are scraping debris, not surnames (docs/data.md).
NAMES_JUNK = frozenset({"To The First Page"})


class DataError(Exception):
    """A data file that is missing or not what was expected."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path


def default_data_dir() -> Path:
    """``$TINYZOO_DATA_DIR``, else ``../shared/data`` beside the project when it exists."""
    if env := os.environ.get(DATA_DIR_ENV):
        return Path(env)
    project = Path(__file__).resolve().parent.parent
    for candidate in (project.parent / "shared" / "data", Path.cwd().parent / "shared" / "data"):
        if candidate.is_dir():
            return candidate
    return project.parent / "shared" / "data"


def _existing(path: Path) -> Path:
    if not path.is_file():
        raise DataError(path, "file not found (set --data-dir or $TINYZOO_DATA_DIR)")
    return path


def _gunzip(path: Path) -> bytes:
    try:
        with gzip.open(_existing(path), "rb") as f:
            return f.read()
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(path, f"not a readable gzip file ({exc})") from exc


def checksums(paths: list[Path]) -> dict[str, str]:
    """sha256 of each file, keyed by file name."""
    return {p.name: sha256_file(_existing(p)) for p in paths}


# --------------------------------------------------------------------------- MNIST


def read_idx(path: Path, magic: int, ndim: int) -> np.ndarray:
    """Read an IDX file (big-endian header, unsigned bytes) as a uint8 array."""
    raw = _gunzip(path)
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(path, f"truncated: {len(raw)} bytes, shorter than the IDX header")
    found = int.from_bytes(raw[:4], "big")
    if found != magic:
        raise DataError(path, f"IDX magic {found:#x}, expected {magic:#x}")
    dims = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    expected = int(np.prod(dims)) + header
    if len(raw) != expected:
        raise DataError(path, f"{len(raw)} bytes, expected {expected} for shape {dims}")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


@dataclass
class MnistSplit:
    """uint8 images N x 28 x 28 and int64 labels N."""

    images: torch.Tensor
    labels: torch.Tensor


def load_mnist(data_dir: Path, split: str) -> MnistSplit:
    """Load the ``train`` or ``test`` split of MNIST from ``data_dir/mnist``."""
    base = data_dir / "mnist"
    images = read_idx(base / MNIST_FILES[f"{split}_images"], 0x803, 3)
    labels = read_idx(base / MNIST_FILES[f"{split}_labels"], 0x801, 1)
    if len(images) != len(labels):
        raise DataError(base, f"{len(images)} images but {len(labels)} labels in {split}")
    if images.shape[1:] != (28, 28):
        raise DataError(base / MNIST_FILES[f"{split}_images"], "expected 28 x 28 images")
    return MnistSplit(torch.from_numpy(images.copy()), torch.from_numpy(labels.astype(np.int64)))


def mnist_paths(data_dir: Path) -> list[Path]:
    return [data_dir / "mnist" / f for f in MNIST_FILES.values()]


# --------------------------------------------------------------------------- names


def load_names(data_dir: Path, split: str, drop_junk: bool = False) -> list[tuple[str, str]]:
    """(name, country) rows of ``names_<split>.csv.gz``, names stripped of outer spaces."""
    path = data_dir / "names" / NAMES_FILES[split]
    text = _gunzip(path).decode("utf-8", errors="strict")
    rows: list[tuple[str, str]] = []
    for lineno, row in enumerate(csv.reader(io.StringIO(text)), start=1):
        if len(row) != 2:
            raise DataError(path, f"line {lineno}: expected 2 fields (name, country), got {row}")
        name, label = row[0].strip(), row[1].strip()
        if not name or not label:
            raise DataError(path, f"line {lineno}: empty name or label")
        if drop_junk and name in NAMES_JUNK:
            continue
        rows.append((name, label))
    if not rows:
        raise DataError(path, "no rows")
    return rows


def names_paths(data_dir: Path) -> list[Path]:
    return [data_dir / "names" / f for f in NAMES_FILES.values()]


# --------------------------------------------------------------------------- Shakespeare


def load_shakespeare(data_dir: Path) -> str:
    """The tiny-Shakespeare text."""
    path = data_dir / "shakespeare" / SHAKESPEARE_FILE
    try:
        text = _gunzip(path).decode("ascii")
    except UnicodeDecodeError as exc:
        raise DataError(path, f"expected ASCII text ({exc})") from exc
    if len(text) < 10_000:
        raise DataError(path, f"only {len(text)} characters; expected about 1.1 million")
    return text


def shakespeare_paths(data_dir: Path) -> list[Path]:
    return [data_dir / "shakespeare" / SHAKESPEARE_FILE]
