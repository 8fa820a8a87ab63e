"""``python -m app``: serve ``app.main:app`` with uvicorn in ``TINYZOO_WORKERS`` processes.

Where it listens, how many workers and how long a shutdown may take are settings
(``TINYZOO_HOST``, ``TINYZOO_PORT``, ``TINYZOO_WORKERS``, ``TINYZOO_GRACEFUL_SHUTDOWN_S``); this
process reads only those, and each worker builds its own app from the same environment (its own
models, batchers and metrics, and its connection limits ``TINYZOO_MAX_HEADER_BYTES`` and
``TINYZOO_CLIENT_TIMEOUT_S``: ``app.connections``). uvicorn's access log is off: the app writes
its own access line.
"""

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import uvicorn

from app.connections import GuardedHTTP
from app.settings import Settings

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


def main() -> None:
    settings = Settings()
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
