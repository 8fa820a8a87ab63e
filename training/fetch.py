"""``python -m training data fetch``: the data sets, downloaded and checked against their sha256.

Each file comes from its public source, or from a mirror with the same layout (a base URL or a
local directory), and is moved into the data directory training reads only once its sha256 is
the one in :data:`FILES`; a file already there with that sha256 is not fetched again. Standard
library only, so it runs before anything else is installed.
"""

import argparse
import hashlib
import http.client
import os
import sys
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from models.checkpoint import sha256_file
from training.data import MNIST_FILES, NAMES_FILES, SHAKESPEARE_FILE, default_data_dir

# torchvision's MNIST mirror: the original LeCun, Cortes and Burges files, byte for byte.
MNIST_SOURCE = "https://ossci-datasets.s3.amazonaws.com/mnist/"
# The names and the Shakespeare text, at the commit of hunkim/PyTorchZeroToAll they were taken from.
PYTORCH_ZERO_TO_ALL = (
    "https://raw.githubusercontent.com/hunkim/PyTorchZeroToAll/"
    "e5a260fac0b4ff1e2ec434fc6f0d962ac97fc289/data/"
)
TIMEOUT_S = 60
CHUNK_BYTES = 1 << 20


@dataclass(frozen=True)
class DataFile:
    """One data file: its path under the data directory, its sha256 and its public source."""

    path: str
    sha256: str
    url: str


def _mnist(name: str, sha256: str) -> DataFile:
    return DataFile(f"mnist/{name}", sha256, MNIST_SOURCE + name)


def _zero_to_all(folder: str, name: str, sha256: str) -> DataFile:
    return DataFile(f"{folder}/{name}", sha256, PYTORCH_ZERO_TO_ALL + name)


FILES: tuple[DataFile, ...] = (
    _mnist(
        MNIST_FILES["train_images"],
        "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
    ),
    _mnist(
        MNIST_FILES["train_labels"],
        "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
    ),
    _mnist(
        MNIST_FILES["test_images"],
        "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
    ),
    _mnist(
        MNIST_FILES["test_labels"],
        "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
    ),
    _zero_to_all(
        "names",
        NAMES_FILES["train"],
        "49b4bf41dce5bfeac989b46ca37cf7baccd9a0d2a855df82f86de67a9376268f",
    ),
    _zero_to_all(
        "names",
        NAMES_FILES["test"],
        "57d7758db533a42c99d513b2341a7e7b0f55c1e0e7d233b1ef6a4fa2f1adf753",
    ),
    _zero_to_all(
        "shakespeare",
        SHAKESPEARE_FILE,
        "2eb872a1b46dca57ec6c55bbf528df9ab53a564f803ba17d8b7e8267c66c1e10",
    ),
)


class FetchError(Exception):
    """A file that could not be fetched, or whose bytes are not the expected ones."""


def source_url(file: DataFile, mirror: str | None) -> str:
    """The file's public URL, or its URL under ``mirror`` (a base URL or a local directory)."""
    if mirror is None:
        return file.url
    if "://" in mirror:
        return f"{mirror.rstrip('/')}/{file.path}"
    base = Path(mirror)
    if not base.is_dir():
        raise FetchError(f"--mirror {mirror}: neither a URL nor a directory")
    return (base.resolve() / file.path).as_uri()


def _download(url: str, into: Path) -> str:
    """Write what ``url`` answers into ``into``; return its sha256."""
    digest = hashlib.sha256()
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_S) as response, into.open("wb") as out:
            while chunk := response.read(CHUNK_BYTES):
                digest.update(chunk)
                out.write(chunk)
    except (OSError, ValueError, http.client.HTTPException) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise FetchError(f"{url}: {reason}".replace("\n", " ")) from exc
    return digest.hexdigest()


def fetch_file(file: DataFile, data_dir: Path, mirror: str | None = None) -> str:
    """Make ``data_dir/file.path`` hold the verified file; return ``present`` or ``fetched``.

    The bytes go to a temporary file beside the target and are moved into place only when their
    sha256 matches; otherwise the temporary file is removed and :class:`FetchError` raised.
    """
    target = data_dir / file.path
    if target.is_file() and sha256_file(target) == file.sha256:
        return "present"
    url = source_url(file, mirror)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        handle, name = tempfile.mkstemp(
            dir=target.parent, prefix=f".{target.name}.", suffix=".part"
        )
        os.close(handle)
    except OSError as exc:
        raise FetchError(f"{target.parent}: cannot write there ({exc.strerror})") from exc
    part = Path(name)
    try:
        found = _download(url, part)
        if found != file.sha256:
            raise FetchError(f"{url}: sha256 {found}, expected {file.sha256}; {target} not written")
        part.replace(target)
    finally:
        part.unlink(missing_ok=True)
    return "fetched"


def add_parser(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """``data fetch [--data-dir DIR] [--mirror URL_OR_DIR]``."""
    data = sub.add_parser("data", help="the data sets training reads")
    actions = data.add_subparsers(
        dest="action", required=True, help="fetch: download the data files and check them"
    )
    about = (
        "download every data file from its public source, check its sha256 and write it into "
        "the data directory; files already there with the right sha256 are kept"
    )
    fetch = actions.add_parser("fetch", help=about, description=about)
    fetch.add_argument(
        "--data-dir", type=Path, default=None, help="default: $TINYZOO_DATA_DIR or ../shared/data"
    )
    fetch.add_argument(
        "--mirror",
        default=None,
        metavar="URL_OR_DIR",
        help="fetch from this base URL or local directory instead, laid out as the data "
        "directory (mnist/, names/, shakespeare/)",
    )


def run(args: argparse.Namespace) -> int:
    """Fetch every file of :data:`FILES`; 0 when all are in place, 1 at the first failure."""
    data_dir: Path = args.data_dir or default_data_dir()
    try:
        for file in FILES:
            status = fetch_file(file, data_dir, args.mirror)
            print(f"{status:8} {data_dir / file.path}")
    except FetchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0
