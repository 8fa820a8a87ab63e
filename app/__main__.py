"""``python -m app``: serve ``app.main:app`` with uvicorn in ``TINYZOO_WORKERS`` processes.

Where it listens, how many workers and how long a shutdown may take are settings
(``TINYZOO_HOST``, ``TINYZOO_PORT``, ``TINYZOO_WORKERS``, ``TINYZOO_GRACEFUL_SHUTDOWN_S``); this
process reads only those, and each worker builds its own app from the same environment (its own
models, batchers and metrics, and its connection limits ``TINYZOO_MAX_HEADER_BYTES`` and
``TINYZOO_CLIENT_TIMEOUT_S``: ``app.connections``). uvicorn's access log is off: the app writes
its own access line.
"""

import argparse
import os
import sys
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import uvicorn
from pydantic import ValidationError

from app import tracing
from app.connections import GuardedHTTP
from app.settings import Settings, from_environment

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
"""As ``app.metrics`` reads it; not imported from there, so that this process never imports
prometheus-client, which fixes its mode when imported."""


@contextmanager
def multiprocess_metrics(workers: int) -> Iterator[Path | None]:
    """Point prometheus-client's multiprocess mode at an empty directory while the server runs.

    Several workers: a fresh temporary directory, removed afterwards; the variable is set here,
    before uvicorn starts a worker, so each worker's prometheus-client sees it when imported
    and writes its values there, and ``/metrics`` sums them. A ``PROMETHEUS_MULTIPROC_DIR`` the
    operator set is used instead (any number of workers) after its ``*.db`` files, the values
    of an earlier run, are deleted: prometheus-client wants it empty at start, and nothing else
    in it is touched. One worker and no variable: no directory, values stay in memory.

    Why not always multiprocess mode: with one process there is nothing to sum, and in-memory
    values cost every request less than writing each one to a memory-mapped file.
    """
    given = os.environ.get(MULTIPROC_ENV)
    if given:
        directory = Path(given)
        directory.mkdir(parents=True, exist_ok=True)
        for stale in directory.glob("*.db"):
            stale.unlink()
        yield directory
    elif workers == 1:
        yield None
    else:
        with tempfile.TemporaryDirectory(prefix="tinyzoo-metrics-") as fresh:
            os.environ[MULTIPROC_ENV] = fresh
            try:
                yield Path(fresh)
            finally:
                del os.environ[MULTIPROC_ENV]


def describe_settings() -> str:
    """Every ``TINYZOO_*`` setting with its default and what it does, from the settings class."""
    prefix = str(Settings.model_config.get("env_prefix", ""))
    lines = []
    for name, info in Settings.model_fields.items():
        default = info.get_default(call_default_factory=True)
        shown = "(unset)" if default is None else str(default)
        lines.append(f"  {prefix}{name.upper()}  (default: {shown})")
        if info.description:
            lines.append(f"      {info.description}")
    return "\n".join(lines)


def read_settings() -> Settings:
    """The settings from the environment, or exit 2 with one line on stderr per bad setting."""
    try:
        settings = from_environment()
    except ValidationError as exc:
        prefix = str(Settings.model_config.get("env_prefix", ""))
        for error in exc.errors()[:3]:
            name = prefix + "_".join(str(p) for p in error["loc"]).upper()
            given = os.environ.get(name)
            shown = "" if given is None else f"={given!r}"
            print(f"tinyzoo: bad setting {name}{shown}: {error['msg']}", file=sys.stderr)
        raise SystemExit(2) from None
    try:
        tracing.check_environment()
    except tracing.TracingError as exc:
        print(f"tinyzoo: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    if settings.device.startswith("cuda"):
        import torch  # only where a GPU is asked for: the check needs CUDA's runtime

        if not torch.cuda.is_available():
            print(
                f"tinyzoo: TINYZOO_DEVICE={settings.device} but CUDA is not available here "
                "(use auto or cpu)",
                file=sys.stderr,
            )
            raise SystemExit(2)
    return settings


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m app",
        description="Serve tinyzoo's models over HTTP (uvicorn). Every option is an "
        "environment variable:",
        epilog="settings:\n" + describe_settings(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.parse_args(argv)
    settings = read_settings()
    with multiprocess_metrics(settings.workers):
        uvicorn.run(
            "app.main:app",
            host=settings.host,
            port=settings.port,
            workers=settings.workers,
            access_log=False,
            timeout_graceful_shutdown=settings.graceful_shutdown_s,
            http=GuardedHTTP,  # uvicorn's own protocol with bounded heads and timeouts
        )


if __name__ == "__main__":
    main()
