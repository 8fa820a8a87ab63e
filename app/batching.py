"""Dynamic micro-batching: a bounded queue and one worker per model.

Requests are ``submit``-ted one at a time; the worker takes up to ``max_batch_size`` of them,
waiting at most ``max_wait_ms`` for more only when fewer are already queued and traffic is not
light (a lone request after a lone request goes straight to the model), runs
``predict_batch`` off the event loop and answers each request. A full queue answers 429
(``QueueFull``), a request past its deadline 504 (``DeadlineExceeded``); a request whose client
went away (its ``gone`` probe, ASGI's ``http.disconnect``, says so, or its task was cancelled) is
dropped before it reaches the model.

A batcher serves one model version. ``close`` drains it: new inputs are refused (503), those
already queued are answered, then the worker ends. Nothing is left waiting on a stopped batcher:
``stop`` answers whatever is still queued with 503.
"""

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

import anyio.to_thread
from opentelemetry.trace import Tracer

from app.errors import (
    ClientClosedRequest,
    DeadlineExceeded,
    InferenceFailed,
    ModelUnavailable,
    QueueFull,
)
from app.logs import request_id
from app.tracing import REQUEST_ID

In = TypeVar("In")
Out = TypeVar("Out")
Gone = Callable[[], Awaitable[bool]]
ASK_GONE_AFTER_S = 0.01
"""An input is checked for a client gone only once it has waited this long: a client that left
within a batch's gathering is rare, and asking (Starlette's ``is_disconnected``, a cancel scope
around ``receive``) costs every request 0.025 ms on one core; under load, when inputs wait, every
one is asked."""
"""Whether a request's client has disconnected (Starlette's ``Request.is_disconnected``)."""
logger = logging.getLogger("app.batching")


@dataclass
class _Item(Generic[In, Out]):
    value: In
    future: "asyncio.Future[Out]"
    gone: Gone | None = None
    enqueued: float = field(default_factory=time.perf_counter)
    timer: asyncio.TimerHandle | None = None
    """Its deadline."""
    enqueued_ns: int = 0
    """When it was queued, its batch began and its batch ended (epoch ns, for its trace's
    spans; only when tracing)."""
    started_ns: int = 0
    finished_ns: int = 0


@dataclass
class BatchStats:
    """Counters a test or the metrics endpoint can read."""

    batches: int = 0
    items: int = 0
    largest_batch: int = 0
    dropped: int = 0


class Batcher(Generic[In, Out]):
    """Collects single inputs into batches for ``predict_batch(list[In]) -> list[Out]``."""

    def __init__(
        self,
        name: str,
        predict_batch: Callable[[Sequence[In]], list[Out]],
        *,
        max_batch_size: int,
        max_wait_ms: float,
        max_queue: int,
        timeout_s: float,
        on_batch: Callable[[str, int, float, float], None] | None = None,
        on_drop: Callable[[str, int], None] | None = None,
        on_depth: Callable[[int], None] | None = None,
        tracer: Tracer | None = None,
    ) -> None:
        if max_batch_size < 1 or max_queue < 1 or max_wait_ms < 0 or timeout_s <= 0:
            raise ValueError("max_batch_size and max_queue >= 1, max_wait_ms >= 0, timeout_s > 0")
        self.name = name
        self.predict_batch = predict_batch
        self.max_batch_size = max_batch_size
        self.max_wait = max_wait_ms / 1000
        self.timeout_s = timeout_s
        self.on_batch = on_batch
        self.on_drop = on_drop
        self.on_depth = on_depth
        self.tracer = tracer
        """When tracing: each input's wait in the queue and its batch, as spans of its request."""
        self.queue: asyncio.Queue[_Item[In, Out]] = asyncio.Queue(maxsize=max_queue)
        self.stats = BatchStats()
        self._worker: asyncio.Task[None] | None = None
        self._batch_seconds = 0.01
        self._last_size = 1
        self.closed = False
        """No longer taking inputs (``close``)."""
        self._idle = True
        """The worker waits for a first input (nothing taken from the queue)."""
        self._taken: list[_Item[In, Out]] = []
        """The inputs the worker has taken from the queue and not yet answered."""

    def start(self) -> None:
        if self._worker is None and not self.closed:
            self._worker = asyncio.get_running_loop().create_task(self._run(), name=self.name)

    async def close(self) -> None:
        """Drain: refuse new inputs (503), answer those already queued, then stop. Each has a
        deadline, so this ends within ``timeout_s`` (plus a batch)."""
        self.closed = True
        if self._worker is None:
            self._fail_queued()
            return
        if self._idle and self.queue.empty():
            # the worker waits for an input that will never come: end it
            self._worker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._worker
        self._worker = None
        self._fail_queued()

    async def stop(self) -> None:
        """Stop at once: the batch being computed is answered, anything still queued gets 503."""
        self.closed = True
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
            self._worker = None
        self._fail_queued()

    def _fail_queued(self) -> None:
        left, self._taken = self._taken, []
        while not self.queue.empty():
            left.append(self.queue.get_nowait())
        for item in left:
            if not item.future.done():
                item.future.set_exception(self._unavailable())

    def _unavailable(self) -> ModelUnavailable:
        return ModelUnavailable(
            f"{self.name}: this version is no longer served; retry to reach the one that is",
            headers={"Retry-After": "1"},
        )

    @property
    def depth(self) -> int:
        return self.queue.qsize()

    def refusal(self) -> QueueFull | None:
        """The 429 a new input would get now (the queue is full), or None."""
        return self.full() if self.queue.full() else None

    def full(self) -> QueueFull:
        retry = max(1, math.ceil(self.depth / self.max_batch_size * self._batch_seconds))
        return QueueFull(
            f"{self.name}: {self.depth} requests already queued; retry in {retry} s",
            headers={"Retry-After": str(retry)},
        )

    async def submit(self, value: In, gone: Gone | None = None) -> Out:
        """Queue one input and wait for its output (429 when full, 504 past the deadline, 503
        once the batcher is closing).

        ``gone`` tells whether the client has disconnected; such an input is dropped (499)
        instead of being run.
        """
        (item,) = self._enqueue([value], gone)
        return await self._answer(item)

    async def submit_many(self, values: Sequence[In], gone: Gone | None = None) -> list[Out]:
        """Queue several inputs at once, all of them or none (429 when the queue has no room for
        all), and wait for their outputs. They are queued before this returns control to the
        event loop: a request looks its model's version up and is queued on it in one step, so
        a swap in between cannot leave it on a version that has closed."""
        items = self._enqueue(values, gone)
        return list(await asyncio.gather(*(self._answer(item) for item in items)))

    def _enqueue(self, values: Sequence[In], gone: Gone | None) -> list["_Item[In, Out]"]:
        if self.closed:
            raise self._unavailable()
        if self.queue.maxsize - self.queue.qsize() < len(values):
            raise self.full()
        loop = asyncio.get_running_loop()
        items = []
        for value in values:
            item: _Item[In, Out] = _Item(value, loop.create_future(), gone)
            if self.tracer is not None:
                item.enqueued_ns = time.time_ns()
            self.queue.put_nowait(item)
            # A timer rather than asyncio.wait_for, which wraps every request in a task of its
            # own. An expired or cancelled (client gone) future is skipped by the worker.
            item.timer = loop.call_later(self.timeout_s, self._expire, item.future)
            items.append(item)
        if self.on_depth is not None:
            self.on_depth(self.queue.qsize())
        return items

    async def _answer(self, item: "_Item[In, Out]") -> Out:
        try:
            output = await item.future
        finally:
            if item.timer is not None:
                item.timer.cancel()
        if self.tracer is not None:
            self._spans(self.tracer, item)
        return output

    def _spans(self, tracer: Tracer, item: "_Item[In, Out]") -> None:
        """An answered input's wait in the queue and its batch, as spans of its request."""
        attributes = {"tinyzoo.model": self.name, REQUEST_ID: request_id.get()}
        tracer.start_span("queue", start_time=item.enqueued_ns, attributes=attributes).end(
            end_time=item.started_ns
        )
        tracer.start_span("model", start_time=item.started_ns, attributes=attributes).end(
            end_time=item.finished_ns
        )

    def _expire(self, future: "asyncio.Future[Out]") -> None:
        if not future.done():
            future.set_exception(
                DeadlineExceeded(
                    f"{self.name}: no answer within {self.timeout_s:g} s; the server is overloaded"
                )
            )

    async def _next_batch(self) -> list[_Item[In, Out]]:
        self._idle = True
        first = await self.queue.get()
        self._idle = False
        batch = self._taken = [first]
        if self.closed:  # draining: whatever is queued goes now, with no wait for company
            while len(batch) < self.max_batch_size and not self.queue.empty():
                batch.append(self.queue.get_nowait())
            return batch
        if self.queue.empty() and self._last_size <= 1:
            # Nothing else is waiting and the last batch was a single request: traffic is
            # light, so waiting for company would only add latency.
            self._last_size = 1
            return batch
        # One timeout for the whole wait, on the worker's own task (asyncio.wait_for would make
        # a task for every input awaited); a get cut short by it takes nothing from the queue.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.max_wait):
                while len(batch) < self.max_batch_size:
                    batch.append(
                        self.queue.get_nowait() if self.queue.qsize() else await self.queue.get()
                    )
        self._last_size = len(batch)
        return batch

    async def _live(self, taken: list[_Item[In, Out]]) -> list[_Item[In, Out]]:
        """The items still worth running: not expired, not cancelled, their client still there
        (asked of those that waited ``ASK_GONE_AFTER_S`` or more)."""
        live = []
        asked_before = time.perf_counter() - ASK_GONE_AFTER_S
        for item in taken:
            if item.future.done():  # past its deadline, or its request task was cancelled
                continue
            if item.gone is not None and item.enqueued <= asked_before and await item.gone():
                item.future.set_exception(
                    ClientClosedRequest(f"{self.name}: the client went away; input dropped")
                )
                continue
            live.append(item)
        dropped = len(taken) - len(live)
        if dropped:
            self.stats.dropped += dropped
            if self.on_drop is not None:
                self.on_drop(self.name, dropped)
        return live

    async def _run(self) -> None:
        while not (self.closed and self.queue.empty()):
            taken = await self._next_batch()
            if self.on_depth is not None:
                self.on_depth(self.queue.qsize())
            batch = await self._live(taken)
            if not batch:
                continue
            started = time.perf_counter()
            started_ns = time.time_ns()
            try:
                outputs = await anyio.to_thread.run_sync(
                    self.predict_batch, [item.value for item in batch]
                )
            except Exception:  # one failed batch fails only its own requests
                logger.exception("%s: batch of %d failed", self.name, len(batch))
                for item in batch:
                    if not item.future.done():
                        item.future.set_exception(
                            InferenceFailed(f"{self.name} failed on this input's batch; retry")
                        )
                continue
            elapsed = time.perf_counter() - started
            self._batch_seconds = 0.8 * self._batch_seconds + 0.2 * elapsed
            self.stats.batches += 1
            self.stats.items += len(batch)
            self.stats.largest_batch = max(self.stats.largest_batch, len(batch))
            if self.on_batch is not None:
                wait = started - min(item.enqueued for item in batch)
                self.on_batch(self.name, len(batch), wait, elapsed)
            finished_ns = time.time_ns()
            for item, output in zip(batch, outputs, strict=True):
                item.started_ns, item.finished_ns = started_ns, finished_ns
                if not item.future.done():
                    item.future.set_result(output)
            self._taken = []
