"""The micro-batcher: batches form under load, and overload answers 429 / 504 cleanly."""

import asyncio
import threading
from collections.abc import Awaitable, Callable, Sequence

import pytest

from app.batching import ASK_GONE_AFTER_S, Batcher
from app.errors import ClientClosedRequest, DeadlineExceeded, InferenceFailed, QueueFull

pytestmark = pytest.mark.anyio


class Recorder:
    """A predict_batch that doubles its inputs, records batch sizes and can be held."""

    def __init__(self) -> None:
        self.sizes: list[int] = []
        self.release = threading.Event()
        self.release.set()
        self.fail = False

    def __call__(self, items: Sequence[int]) -> list[int]:
        self.release.wait(5)
        if self.fail:
            raise RuntimeError("model exploded")
        self.sizes.append(len(items))
        return [2 * i for i in items]


def make(recorder: Recorder, **kw: float) -> Batcher[int, int]:
    options = {"max_batch_size": 8, "max_wait_ms": 5.0, "max_queue": 64, "timeout_s": 5.0, **kw}
    return Batcher("test", recorder, **options)  # type: ignore[arg-type]


async def test_concurrent_submissions_are_batched_and_answered_in_order() -> None:
    recorder = Recorder()
    batcher = make(recorder)
    batcher.start()
    results = await asyncio.gather(*(batcher.submit(i) for i in range(20)))
    await batcher.stop()
    assert results == [2 * i for i in range(20)]
    assert max(recorder.sizes) > 1
    assert max(recorder.sizes) <= 8
    assert sum(recorder.sizes) == 20


async def test_batch_size_one_turns_batching_off() -> None:
    recorder = Recorder()
    batcher = make(recorder, max_batch_size=1)
    batcher.start()
    await asyncio.gather(*(batcher.submit(i) for i in range(5)))
    await batcher.stop()
    assert recorder.sizes == [1] * 5


async def test_queue_depth_is_reported_as_inputs_arrive_and_leave() -> None:
    recorder = Recorder()
    depths: list[int] = []
    batcher = Batcher(
        "test",
        recorder,
        max_batch_size=8,
        max_wait_ms=5.0,
        max_queue=64,
        timeout_s=5.0,
        on_depth=depths.append,
    )
    submitted = [asyncio.ensure_future(batcher.submit(i)) for i in range(5)]
    await asyncio.sleep(0)
    assert depths == [1, 2, 3, 4, 5]
    batcher.start()
    await asyncio.gather(*submitted)
    await batcher.stop()
    assert depths[5:] == [0]  # all five taken as one batch


async def test_full_queue_is_429_with_retry_after() -> None:
    recorder = Recorder()
    recorder.release.clear()
    batcher = make(recorder, max_batch_size=1, max_queue=2)
    batcher.start()
    first = asyncio.ensure_future(batcher.submit(0))  # taken by the worker, which is held
    await asyncio.sleep(0.05)
    queued = [asyncio.ensure_future(batcher.submit(i)) for i in (1, 2)]
    await asyncio.sleep(0.01)
    with pytest.raises(QueueFull) as info:
        await batcher.submit(3)
    assert int(info.value.headers["Retry-After"]) >= 1
    recorder.release.set()
    assert await first == 0
    assert [await q for q in queued] == [2, 4]
    await batcher.stop()


async def test_request_past_its_deadline_is_504_and_dropped() -> None:
    recorder = Recorder()
    recorder.release.clear()
    batcher = make(recorder, max_batch_size=1, timeout_s=0.05)
    batcher.start()
    with pytest.raises(DeadlineExceeded):
        await batcher.submit(1)
    late = asyncio.ensure_future(batcher.submit(2))
    while batcher.depth == 0:  # queued behind the held batch
        await asyncio.sleep(0.001)
    late.cancel()  # a client that went away
    recorder.release.set()
    assert await batcher.submit(3) == 6
    await batcher.stop()
    assert batcher.stats.dropped >= 1


async def test_input_of_a_client_that_went_away_is_dropped_unrun() -> None:
    recorder = Recorder()
    recorder.release.clear()
    batcher = make(recorder, max_batch_size=1)
    batcher.start()
    first = asyncio.ensure_future(batcher.submit(1))  # taken by the worker, which is held
    await asyncio.sleep(0.05)
    connected = {"left": False, "stayed": False}

    def probe(client: str) -> Callable[[], Awaitable[bool]]:
        async def gone() -> bool:  # as Starlette's Request.is_disconnected answers
            return connected[client]

        return gone

    left = asyncio.ensure_future(batcher.submit(2, probe("left")))
    stayed = asyncio.ensure_future(batcher.submit(3, probe("stayed")))
    while batcher.depth < 2:
        await asyncio.sleep(0.001)
    connected["left"] = True  # this client hangs up while its input waits in the queue
    await asyncio.sleep(2 * ASK_GONE_AFTER_S)  # an input is asked once it has waited this long
    recorder.release.set()
    assert await first == 2
    assert await stayed == 6
    with pytest.raises(ClientClosedRequest):
        await left
    await batcher.stop()
    assert sorted(recorder.sizes) == [1, 1]  # the model never saw input 2
    assert batcher.stats.dropped == 1


async def test_a_failing_batch_fails_only_its_requests() -> None:
    recorder = Recorder()
    batcher = make(recorder)
    batcher.start()
    recorder.fail = True
    with pytest.raises(InferenceFailed, match="failed on this input's batch"):
        await batcher.submit(1)
    recorder.fail = False
    assert await batcher.submit(4) == 8
    await batcher.stop()
