"""The gate every explanation goes through, whichever model it explains.

An explanation costs ``steps`` forward and backward passes (128 by default), hundreds of times
the model work of a prediction, and is not batched with others: it is bounded as a unit, like a
generation. At most ``limit`` run at once (each in a worker thread, gradients on), ``queue``
more wait, the rest are refused (429 with ``Retry-After``). The answer itself goes through the
model's queue as on the plain route (the family's service does both), so its label and
probabilities are the plain route's; the attributions are for that label.
"""

import contextlib
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import anyio
import anyio.to_thread
import numpy as np

from app.admission import Admission
from app.errors import QueueFull

T = TypeVar("T")
DECIMALS = 6
"""Inputs, attributions, logits and deltas are rounded to this many decimals in the answers."""


@dataclass(frozen=True)
class Steps:
    """How finely the integrals are computed (``TINYZOO_EXPLAIN_*``)."""

    digit: int
    name: int
    batch_size: int


def best(probs: Sequence[float]) -> int:
    """The index of the best label (the first of equals, as ``top_predictions`` ranks them)."""
    return max(range(len(probs)), key=probs.__getitem__)


def rounded(values: np.ndarray) -> Any:
    """An array as nested lists, rounded to ``DECIMALS``."""
    return np.round(values.astype(np.float64), DECIMALS).tolist()


class Explanations:
    """The gate every explanation of this process goes through, and its settings."""

    def __init__(self, *, limit: int, queue: int, timeout_s: float, steps: Steps) -> None:
        self.admission = Admission("explanation", limit=limit, queue=queue, timeout_s=timeout_s)
        self.steps = steps
        self._threads = anyio.CapacityLimiter(limit)

    def refusal(self) -> QueueFull | None:
        """The 429 one more explanation would get now, or None."""
        return self.admission.refusal()

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Hold one of the ``limit`` slots (429 when the queue is full, 504 past the deadline)."""
        entered = await self.admission.enter()
        try:
            yield
        finally:
            self.admission.leave(entered)

    async def compute(self, work: Callable[[], T]) -> T:
        """Run an explanation's integrals in a worker thread of this gate."""
        return await anyio.to_thread.run_sync(work, limiter=self._threads)
