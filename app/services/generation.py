"""Generations: admitted through a bounded gate, each run whole in one thread of its own.

A generation is thousands of model steps that cannot be batched with others', so it is bounded
as a unit: at most ``limit`` requests generate at once (each generation in its own thread, where
every step enters inference mode), ``queue`` more wait, the rest are refused (429). Its chunks
reach the event loop through a queue. It stops within one step when its client goes (ASGI's
``http.disconnect``, asked each time a chunk arrives), when its reader stops reading (a stream
whose response was cancelled) or, for a plain request, at the deadline.
"""

import asyncio
import contextlib
import os
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

from app.admission import Admission
from app.batching import Gone
from app.errors import ClientClosedRequest, DeadlineExceeded

Steps = Callable[[Callable[[], bool]], Iterator[str]]
"""A generation to run: given its ``stop`` probe, the iterator of its chunks."""

_END, _CUT = object(), object()
HAND_OVER_S = 0.02
"""How often a generation hands what it has made to the event loop: 50 times a second reads as
continuous, where a hand-over per character (thousands a second from a few generations) would
keep the loop busy with them."""


class Generation:
    """One generation running in a worker thread; read its text with ``chunks`` or ``text``."""

    def __init__(self, gone: Gone | None) -> None:
        self.gone = gone
        self._stop = threading.Event()
        self._loop = asyncio.get_running_loop()
        self._queue: asyncio.Queue[object] = asyncio.Queue()
        self.cut = False
        """Whether it ended before its last character (stopped, or its client went)."""

    def stopped(self) -> bool:
        """Whether to stop before the next step (asked from the worker thread)."""
        return self._stop.is_set()

    def stop(self) -> None:
        self._stop.set()

    def run(self, steps: Iterator[str]) -> None:
        """In the worker thread: drive ``steps`` to its end, handing its chunks to the loop:
        the first at once, then gathered, at most every ``HAND_OVER_S`` (each hand-over wakes
        the event loop, which serves every other request too)."""
        end: object = _END
        try:
            pending: list[str] = []
            handed = time.monotonic() - HAND_OVER_S  # the first chunk goes at once
            for chunk in steps:
                pending.append(chunk)
                if (now := time.monotonic()) - handed >= HAND_OVER_S:
                    self._put("".join(pending))
                    pending, handed = [], now
            if pending:
                self._put("".join(pending))
            if self.stopped():
                end = _CUT
        except Exception as exc:  # raised again on the loop, by the reader
            end = exc
        self._put(end)

    def _put(self, item: object) -> None:
        with contextlib.suppress(RuntimeError):  # the loop closed: nobody reads any more
            self._loop.call_soon_threadsafe(self._queue.put_nowait, item)

    async def chunks(self) -> AsyncIterator[str]:
        """The chunks as they come; leaving early (or being cancelled) stops the generation."""
        ended = False
        try:
            while (item := await self._queue.get()) not in (_END, _CUT):
                if isinstance(item, Exception):
                    raise item
                if self.gone is not None and await self.gone():
                    self.stop()
                    ended = self.cut = True
                    return
                yield str(item)
            ended, self.cut = True, item is _CUT
        finally:
            if not ended:
                self.stop()

    async def text(self, deadline: float) -> str:
        """All of it (504 at ``deadline``, on the loop's clock; 499 when the client left)."""
        parts: list[str] = []
        try:
            async with asyncio.timeout_at(deadline):
                async for chunk in self.chunks():
                    parts.append(chunk)
        except TimeoutError:
            raise DeadlineExceeded(
                f"generation unfinished after {len(''.join(parts))} characters at the deadline; "
                "ask for fewer characters or retry"
            ) from None
        if self.cut:
            raise ClientClosedRequest("the client went away; generation stopped")
        return "".join(parts)


NICER = 5
"""How much lower a generation thread's CPU priority is than the event loop's (Linux nice
levels: at +5 a thread gets about a third of the CPU time of one at +0 when both want it).
Measured on one core (``bench.overload``, ``make soak``): at +10 the loop stayed quickest, but
under mixed traffic generations slowed until their queue overflowed (429s); at 0 a burst of
2,000 connections beside four generations kept ``/healthz`` waiting 1-2 s."""


def _lower_priority() -> None:
    """In each generation thread, once: a lower CPU priority than the event loop's (a Linux
    thread has a nice value of its own), so that generations computing flat out leave the loop,
    which answers every other request and probe, the core it needs."""
    with contextlib.suppress(OSError, AttributeError):  # not Linux, or not allowed
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, os.getpriority(os.PRIO_PROCESS, tid) + NICER)


class Generations:
    """The gate and the threads that every generation of this process goes through."""

    def __init__(self, *, limit: int, queue: int, timeout_s: float) -> None:
        self.admission = Admission("generation", limit=limit, queue=queue, timeout_s=timeout_s)
        self.timeout_s = timeout_s
        self._pool = ThreadPoolExecutor(
            limit, thread_name_prefix="generate", initializer=_lower_priority
        )
        self._running: set[Generation] = set()

    def _launch(
        self, steps: Steps, gone: Gone | None, done: Callable[[], None] | None = None
    ) -> Generation:
        """Run one generation in a thread of the pool; ``done`` when the thread has ended."""
        generation = Generation(gone)
        self._running.add(generation)

        def finished(_: object) -> None:
            self._running.discard(generation)
            if done is not None:
                done()

        chunks = steps(generation.stopped)
        future = asyncio.get_running_loop().run_in_executor(self._pool, generation.run, chunks)
        future.add_done_callback(finished)
        return generation

    async def start(self, steps: Steps, gone: Gone | None) -> Generation:
        """Admit one generation (429, 504) and start it; its slot is held until it ends."""
        entered = await self.admission.enter()
        return self._launch(steps, gone, lambda: self.admission.leave(entered))

    async def generate(self, many: list[Steps], gone: Gone | None) -> list[str]:
        """Whole generations, one after another in one slot, within the deadline counted
        from now (429, 499, 504)."""
        deadline = asyncio.get_running_loop().time() + self.timeout_s
        entered = await self.admission.enter()  # waits at most timeout_s
        texts: list[str] = []
        try:
            for steps in many:
                ended = asyncio.Event()
                generation = self._launch(steps, gone, ended.set)
                try:
                    texts.append(await generation.text(deadline))
                finally:
                    generation.stop()
                    await ended.wait()  # within a step: the slot is free only once it is
        finally:
            self.admission.leave(entered)
        return texts

    def close(self) -> None:
        """At shutdown: stop every generation and let the threads go."""
        for generation in list(self._running):
            generation.stop()
        self._pool.shutdown(wait=False, cancel_futures=True)
