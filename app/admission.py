"""Admission: at most ``limit`` of one kind of work at once, ``queue`` more waiting, the rest
refused at once.

The batchers bound the classifiers' work by their queues; work that cannot be batched (a
generation holds the model for thousands of steps) is bounded here instead. A refusal is
decided before any work is done: 429 with ``Retry-After`` when the queue is full, 504 when a
waiting request's deadline passes before a slot frees.
"""

import asyncio
import math
import time
from collections import deque

from app.errors import DeadlineExceeded, QueueFull


class Admission:
    """A counting gate with a bounded queue of waiters, first come first served."""

    def __init__(self, name: str, *, limit: int, queue: int, timeout_s: float) -> None:
        if limit < 1 or queue < 0 or timeout_s <= 0:
            raise ValueError("limit >= 1, queue >= 0, timeout_s > 0")
        self.name = name
        self.limit = limit
        self.queue = queue
        self.timeout_s = timeout_s
        self.running = 0
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._seconds = 1.0
        """Recent time one piece of work held its slot (moving average), for Retry-After."""

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    def retry_after(self) -> int:
        """Seconds until a slot is likely to be free for one more request."""
        ahead = self.running + self.waiting - self.limit + 1
        return max(1, math.ceil(max(ahead, 1) / self.limit * self._seconds))

    def refusal(self) -> QueueFull | None:
        """The 429 one more request would get now (every slot taken, the queue full), or None."""
        if self.running < self.limit or len(self._waiters) < self.queue:
            return None
        retry = self.retry_after()
        return QueueFull(
            f"{self.name}: {self.running} running and {self.waiting} waiting; retry in {retry} s",
            headers={"Retry-After": str(retry)},
        )

    async def enter(self) -> float:
        """Take a slot (429 when ``queue`` others already wait, 504 when none frees within the
        deadline); returns the time it was taken, to be handed back to ``leave``."""
        if self.running < self.limit and not self._waiters:
            self.running += 1
            return time.perf_counter()
        if (refused := self.refusal()) is not None:
            raise refused
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await asyncio.wait_for(asyncio.shield(waiter), self.timeout_s)
        except TimeoutError:
            self._abandon(waiter)
            raise DeadlineExceeded(
                f"{self.name}: no slot within {self.timeout_s:g} s; the server is overloaded"
            ) from None
        except asyncio.CancelledError:
            self._abandon(waiter)
            raise
        return time.perf_counter()

    def _abandon(self, waiter: "asyncio.Future[None]") -> None:
        """A waiter that gives up: out of the queue, or, if its slot was handed over meanwhile,
        the slot passed on."""
        if waiter.done() and not waiter.cancelled():
            self.leave(None)
        else:
            waiter.cancel()
            if waiter in self._waiters:
                self._waiters.remove(waiter)

    def leave(self, entered: float | None) -> None:
        """Give a slot back (to the first waiter, if any); thread-unsafe: call on the loop."""
        if entered is not None:
            self._seconds = 0.8 * self._seconds + 0.2 * (time.perf_counter() - entered)
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # the slot passes straight to it
                return
        self.running -= 1
