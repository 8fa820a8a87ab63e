"""Explanations: the plain answer, then integrated gradients for its best label.

An explanation costs ``steps`` forward and backward passes (128 by default), hundreds of times
the model work of a prediction, and is not batched with others: it is bounded as a unit, like a
generation. At most ``limit`` run at once (each in a worker thread, gradients on), ``queue``
more wait, the rest are refused (429 with ``Retry-After``). The answer itself goes through the
model's batcher as on the plain route, so its label and probabilities are the plain route's; the
attributions are for that label.
"""

import base64
import contextlib
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import anyio
import anyio.to_thread
import numpy as np

from app.admission import Admission
from app.batching import Batcher
from app.errors import ClientClosedRequest
from app.schemas_explain import CharacterAttribution, DigitExplanation, NameExplanation
from app.services.attribution import Attribution
from app.services.common import Answer, top_predictions
from app.services.digits import DigitService
from app.services.heatmap import overlay_png
from app.services.names import NameClassifier, NameInput

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


def _rounded(values: np.ndarray) -> Any:
    return np.round(values.astype(np.float64), DECIMALS).tolist()


class Explanations:
    """The gate every explanation of this process goes through, and its settings."""

    def __init__(self, *, limit: int, queue: int, timeout_s: float, steps: Steps) -> None:
        self.admission = Admission("explanation", limit=limit, queue=queue, timeout_s=timeout_s)
        self.steps = steps
        self._threads = anyio.CapacityLimiter(limit)

    @contextlib.asynccontextmanager
    async def _slot(self) -> AsyncIterator[None]:
        """Hold one of the ``limit`` slots (429 when the queue is full, 504 past the deadline)."""
        entered = await self.admission.enter()
        try:
            yield
        finally:
            self.admission.leave(entered)

    @staticmethod
    def _check(gone: Callable[[], bool] | None) -> None:
        if gone is not None and gone():
            raise ClientClosedRequest("the client went away; explanation not computed")

    async def digit(
        self,
        service: DigitService,
        data: bytes,
        *,
        top_k: int,
        gone: Callable[[], bool] | None = None,
    ) -> DigitExplanation:
        """One upload: prepared and answered as on ``POST /digit``, then its best digit
        explained pixel by pixel, with the overlay picture."""
        async with self._slot():
            image = await service.prepare_upload(data)
            answer = await service.predict(image, gone)
            self._check(gone)

            def explain() -> tuple[Attribution, bytes]:
                attribution = service.attribute(
                    image,
                    best(answer.probs),
                    steps=self.steps.digit,
                    batch_size=self.steps.batch_size,
                )
                return attribution, overlay_png(image, attribution.values)

            attribution, png = await anyio.to_thread.run_sync(explain, limiter=self._threads)
        plain = service.encode(answer, top_k)
        return DigitExplanation(
            digit=plain.digit,
            probability=plain.probability,
            model=plain.model,
            version=plain.version,
            predictions=plain.predictions,
            input=_rounded(image),
            attributions=_rounded(attribution.values),
            logit=round(attribution.logit, DECIMALS),
            baseline_logit=round(attribution.baseline_logit, DECIMALS),
            delta=round(attribution.delta, DECIMALS),
            overlay="data:image/png;base64," + base64.b64encode(png).decode(),
        )

    async def name(
        self,
        classifier: NameClassifier,
        batcher: Batcher[object, Answer],
        item: NameInput,
        *,
        top_k: int,
        gone: Callable[[], bool] | None = None,
    ) -> NameExplanation:
        """One folded name: answered through ``batcher`` as on ``POST /classify-name``, then its
        best country explained character by character."""
        async with self._slot():
            answer = await batcher.submit(item.normalized, gone)
            self._check(gone)
            target = best(answer.probs)
            attribution = await anyio.to_thread.run_sync(
                lambda: classifier.attribute(
                    item.normalized,
                    target,
                    steps=self.steps.name,
                    batch_size=self.steps.batch_size,
                ),
                limiter=self._threads,
            )
        values = _rounded(attribution.values)
        return NameExplanation(
            name=item.name,
            normalized=item.normalized,
            model=classifier.checkpoint.name,
            version=answer.version,
            predictions=top_predictions(answer.probs, classifier.labels, top_k),
            label=classifier.labels[target],
            characters=[
                CharacterAttribution(char=c, attribution=v)
                for c, v in zip(item.normalized, values, strict=True)
            ],
            logit=round(attribution.logit, DECIMALS),
            baseline_logit=round(attribution.baseline_logit, DECIMALS),
            delta=round(attribution.delta, DECIMALS),
        )
