"""What the classifier families share: the answer of one input, the ranked labels, and the
batched runner that serves one loaded version."""

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from opentelemetry.trace import Tracer

from app.batching import Batcher, Gone
from app.schemas import Prediction
from models.checkpoint import Checkpoint

In = TypeVar("In")


@dataclass(frozen=True, slots=True)
class Answer:
    """One input's class probabilities, their labels, and the model version that computed
    them."""

    probs: list[float]
    version: str
    labels: list[str]
    abstain: bool = False
    """The net abstains: its uncalibrated top probability is under its card's threshold."""


def top_predictions(probs: Sequence[float], labels: list[str], k: int) -> list[Prediction]:
    """The ``k`` likeliest labels, best first (ties in label order), each probability to 6
    significant digits (not decimals: a label a calibration leaves 1e-9 is not shown as 0)."""
    best = sorted(range(len(labels)), key=probs.__getitem__, reverse=True)[:k]
    return [Prediction(label=labels[i], probability=float(f"{probs[i]:.6g}")) for i in best]


@dataclass(frozen=True)
class Batching:
    """How each version's queue batches (``TINYZOO_MAX_BATCH_SIZE`` and the rest) and what it
    tells the metrics."""

    max_batch_size: int = 64
    max_wait_ms: float = 2.0
    max_queue: int = 1024
    timeout_s: float = 30.0
    on_batch: Callable[[str, int, float, float], None] | None = None
    on_drop: Callable[[str, int], None] | None = None
    on_depth: Callable[[str], Callable[[int], None]] | None = None
    """For a model's name, what to tell of its queue's depth."""
    tracer: Tracer | None = None
    """When tracing: spans of each input's wait in the queue and of its batch."""


class BatchedRunner(Generic[In]):
    """One loaded classifier version and its own bounded batching queue (``app.batching``).

    Subclasses give ``score_batch``: inputs -> (probabilities, abstentions)."""

    def __init__(self, checkpoint: Checkpoint, version: str, batching: Batching) -> None:
        self.checkpoint = checkpoint
        self.name = checkpoint.name
        self.version = version
        self.labels: list[str] = list(checkpoint.card["labels"])
        depth = batching.on_depth
        self.batcher: Batcher[In, Answer] = Batcher(
            self.name,
            self._answers,
            max_batch_size=batching.max_batch_size,
            max_wait_ms=batching.max_wait_ms,
            max_queue=batching.max_queue,
            timeout_s=batching.timeout_s,
            on_batch=batching.on_batch,
            on_drop=batching.on_drop,
            on_depth=None if depth is None else depth(self.name),
            tracer=batching.tracer,
        )

    def score_batch(self, inputs: Sequence[In]) -> tuple[list[list[float]], list[bool]]:
        raise NotImplementedError

    def _answers(self, inputs: Sequence[In]) -> list[Answer]:
        probs, abstain = self.score_batch(inputs)
        return [
            Answer(p, self.version, self.labels, a) for p, a in zip(probs, abstain, strict=True)
        ]

    def start(self) -> None:
        self.batcher.start()

    async def close(self) -> None:
        await self.batcher.close()

    def serving(self) -> dict[str, Any]:
        return {}

    async def submit(self, value: In, gone: Gone | None = None) -> Answer:
        """One input through this version's queue (429, 503, 504, 499)."""
        return await self.batcher.submit(value, gone)

    async def submit_many(self, values: Sequence[In], gone: Gone | None = None) -> list[Answer]:
        """Several inputs through this version's queue, all queued at once (429, 503, 504,
        499)."""
        return await self.batcher.submit_many(values, gone)
