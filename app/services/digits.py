"""Digit uploads -> MNIST form -> a batched CNN -> ranked digits: the one door to the digit nets.

``DigitNet`` serves one loaded version (the net, folded where it can be, and its batching
queue). ``DigitService`` is what every door calls (``POST /digit``, ``/digit/explain``, ``/v2``):
it owns the upload limits, the steps ``open`` (the header, checked against the limits) ->
``decode`` (-> greyscale pixels) -> ``preprocess`` (-> the 28 x 28 MNIST form), the hand-over to
the version served now, abstention and the encoding of the answer.
"""

import base64
import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import anyio
import anyio.to_thread
import cv2
import numpy as np
import torch
from opentelemetry.trace import Tracer

from app.batching import Gone
from app.errors import ClientClosedRequest, InvalidInput, NoDigitFound, QueueFull
from app.logs import request_id
from app.preprocessing import digits, uploads
from app.registry import ModelRegistry
from app.schemas import DigitResponse
from app.schemas_explain import DigitExplanation
from app.services.attribution import Attribution, integrated_gradients
from app.services.common import Answer, BatchedRunner, Batching, top_predictions
from app.services.explanations import Explanations, best, rounded
from app.services.heatmap import overlay_png
from app.services.limits import MAX_IMAGES
from app.tracing import REQUEST_ID
from models import InceptionNet
from models.checkpoint import Checkpoint
from models.inception_fold import FoldError, fold_inception

logger = logging.getLogger("app.services.digits")

INLINE_PIXELS = 256 * 256
"""Uploads of up to this many pixels are decoded and prepared on the event loop: about
0.1-0.4 ms, less than handing them to a worker thread and back. Larger ones (photos) go to
a thread, so that the loop keeps serving while they decode."""
FIELD = digits.FIELD


@dataclass(frozen=True)
class Limits:
    """What one upload may cost before any pixel is decoded."""

    max_pixels: int
    max_decoded_bytes: int


def to_png(array: np.ndarray) -> bytes:
    """An array in [0, 1] as an 8-bit greyscale PNG."""
    pixels = np.clip(array * 255 + 0.5, 0, 255).astype(np.uint8)
    ok, encoded = cv2.imencode(".png", pixels)
    if not ok:
        raise ValueError("PNG encoding failed")
    return encoded.tobytes()


@dataclass(frozen=True)
class Pipeline:
    """An upload's way to MNIST's form, within the limits: ``open`` -> ``decode`` ->
    ``preprocess``."""

    limits: Limits

    def open(self, data: bytes) -> uploads.Upload:
        """Identify the upload and check its header against the limits (400, 413, 415)."""
        return uploads.open_upload(
            data,
            max_pixels=self.limits.max_pixels,
            max_decoded_bytes=self.limits.max_decoded_bytes,
        )

    def decode(self, upload: uploads.Upload) -> np.ndarray:
        """An opened upload -> 8-bit greyscale pixels at working size (400, 422)."""
        return uploads.grey_pixels(upload)

    def preprocess(self, grey: np.ndarray) -> np.ndarray:
        """Greyscale pixels -> a 28 x 28 float32 array in MNIST's form (422 if no digit)."""
        return digits.to_mnist(grey)

    def prepare(self, upload: uploads.Upload) -> np.ndarray:
        """``decode`` then ``preprocess``."""
        return self.preprocess(self.decode(upload))

    async def prepare_upload(
        self, data: bytes, cpu_limiter: anyio.CapacityLimiter | None = None
    ) -> np.ndarray:
        """``open``, ``decode`` and ``preprocess`` one upload: on the event loop when small,
        in a worker thread when large."""
        upload = self.open(data)
        if upload.width * upload.height <= INLINE_PIXELS:
            return self.prepare(upload)
        return await anyio.to_thread.run_sync(self.prepare, upload, limiter=cpu_limiter)


class DigitNet(BatchedRunner[np.ndarray]):
    """One loaded digit checkpoint, normalised as its card says, behind its batching queue."""

    def __init__(
        self,
        checkpoint: Checkpoint,
        device: torch.device,
        *,
        version: str = "1",
        batching: Batching | None = None,
        fold: bool = True,
    ) -> None:
        super().__init__(checkpoint, version, batching or Batching())
        self.device = device
        self.net: torch.nn.Module = checkpoint.model
        """What runs: the checkpoint's net, or its exact fold (``models.inception_fold``)."""
        if fold and isinstance(checkpoint.model, InceptionNet):
            probe = torch.randn(8, 1, FIELD, FIELD, device=device)
            try:
                self.net = fold_inception(checkpoint.model, probe)
            except FoldError as exc:
                logger.warning("%s served layer by layer: %s", self.name, exc)
        pre = checkpoint.card["preprocessing"]
        self.mean, self.std = float(pre["mean"]), float(pre["std"])
        self.calibration = checkpoint.calibration
        abstention = checkpoint.card.get("abstention") or {}
        self.abstain_below: float | None = abstention.get("threshold")
        """Softmax top probabilities (before calibration) under this mean "not a digit"."""

    @property
    def folded(self) -> bool:
        return self.net is not self.checkpoint.model

    def serving(self) -> dict[str, Any]:
        """How this server computes the net, for its model card."""
        return {"folded": self.folded}

    def predict_batch(self, images: Sequence[np.ndarray]) -> list[list[float]]:
        """Calibrated class probabilities (the card's calibration) for 28 x 28 arrays in
        [0, 1], one list per image."""
        return self.score_batch(images)[0]

    def score_batch(self, images: Sequence[np.ndarray]) -> tuple[list[list[float]], list[bool]]:
        """``predict_batch``'s probabilities, and for each image whether the net abstains (its
        softmax top probability, before calibration, is under the card's threshold)."""
        x = torch.from_numpy(np.stack(images)).unsqueeze(1)  # B x 1 x 28 x 28
        x = ((x - self.mean) / self.std).to(self.device)
        with torch.inference_mode():
            logits = self.net(x)  # B x 10
            probs: list[list[float]] = self.calibration.probabilities(logits).tolist()
            if self.abstain_below is None:
                return probs, [False] * len(probs)
            top = torch.softmax(logits.float(), dim=1).max(dim=1).values  # B
            return probs, (top < self.abstain_below).tolist()

    def attribute(
        self, image: np.ndarray, target: int, *, steps: int, batch_size: int
    ) -> Attribution:
        """Integrated gradients of label ``target``'s raw logit for one 28 x 28 input in [0, 1],
        from a blank background (no ink anywhere), through the net the batcher runs. Blank pixels
        get exactly 0: the method multiplies by input - baseline."""
        raw = torch.from_numpy(image[None, None]).to(self.device)  # 1 x 1 x 28 x 28
        x = (raw - self.mean) / self.std
        blank = (torch.zeros_like(raw) - self.mean) / self.std  # rounded as x's blank pixels
        attribution = integrated_gradients(
            self.net, x, blank, target, steps=steps, batch_size=batch_size
        )
        return replace(attribution, values=attribution.values[0])  # 28 x 28


def doubt(name: str, answer: Answer) -> str | None:
    """Why an answer is not given (the net abstains: the upload does not look like a digit
    to it), or None."""
    if not answer.abstain:
        return None
    top = max(answer.probs)
    label = answer.labels[answer.probs.index(top)]
    return (
        f"no digit found: this does not look like a handwritten digit to {name} "
        f"(its best guess, {label}, is no better than chance: probability {top:.2f}); "
        "add answer_anyway=true to get its guess"
    )


class DigitService:
    """The one door to the digit nets, for every route that reaches them."""

    def __init__(
        self,
        registry: ModelRegistry,
        limits: Limits,
        explanations: Explanations,
        cpu_limiter: anyio.CapacityLimiter,
        tracer: Tracer | None = None,
    ) -> None:
        self.registry = registry
        self.pipeline = Pipeline(limits)
        self.explanations = explanations
        self.cpu_limiter = cpu_limiter
        self.tracer = tracer
        """When tracing: spans of each upload's decoding and preprocessing."""

    def net(self, model: str) -> DigitNet:
        """The version of ``model`` served now (503 when not loaded, 404 when unknown)."""
        runner = self.registry.get(model).runner
        if not isinstance(runner, DigitNet):
            raise InvalidInput(f"{model} is not a digit network")
        return runner

    def refusal(self, model: str) -> QueueFull | None:
        """The 429 one more upload for ``model`` would meet in its queue now, or None."""
        served = self.registry.served.get(model)
        runner = None if served is None else served.runner
        return runner.batcher.refusal() if isinstance(runner, DigitNet) else None

    async def prepare_upload(self, data: bytes) -> np.ndarray:
        """One upload in MNIST's form (400, 413, 415, 422): small ones on the event loop,
        large ones in a worker thread."""
        if self.tracer is None:
            return await self.pipeline.prepare_upload(data, self.cpu_limiter)
        return await self._prepare_traced(self.tracer, data)

    async def _prepare_traced(self, tracer: Tracer, data: bytes) -> np.ndarray:
        """``prepare_upload`` with a span for each step (decode: the header, then the pixels)."""
        pipeline, limiter = self.pipeline, self.cpu_limiter
        attributes = {REQUEST_ID: request_id.get()}
        with tracer.start_as_current_span("decode", attributes=attributes):
            upload = pipeline.open(data)
            inline = upload.width * upload.height <= INLINE_PIXELS
            if inline:
                grey = pipeline.decode(upload)
            else:
                grey = await anyio.to_thread.run_sync(pipeline.decode, upload, limiter=limiter)
        with tracer.start_as_current_span("preprocess", attributes=attributes):
            if inline:
                return pipeline.preprocess(grey)
            return await anyio.to_thread.run_sync(pipeline.preprocess, grey, limiter=limiter)

    @staticmethod
    def check_pixels(pixels: np.ndarray) -> list[np.ndarray]:
        """Images already in MNIST's form (N x 28 x 28, ink 1 in 0..1), one array each (422)."""
        if pixels.ndim != 3 or pixels.shape[1:] != (FIELD, FIELD):
            raise InvalidInput(
                f"MNIST-form pixels have the shape [N, 28, 28], not {list(pixels.shape)}"
            )
        if not np.isfinite(pixels).all() or pixels.min() < 0 or pixels.max() > 1:
            raise InvalidInput("MNIST-form pixels lie in 0..1 (ink 1)")
        return list(np.ascontiguousarray(pixels, dtype=np.float32))

    async def answer(self, model: str, image: np.ndarray, gone: Gone | None = None) -> Answer:
        """One prepared 28 x 28 input through the queue of the version served now."""
        return await self.net(model).submit(image, gone)

    async def answers(
        self, model: str, images: Sequence[np.ndarray], gone: Gone | None = None
    ) -> list[Answer]:
        """Several prepared inputs, all through the version served when they arrived."""
        if len(images) > MAX_IMAGES:
            raise InvalidInput(f"{len(images)} images; at most {MAX_IMAGES} per request")
        return await self.net(model).submit_many(images, gone)

    def encode(
        self,
        model: str,
        answer: Answer,
        top_k: int,
        image: np.ndarray | None = None,
        *,
        answer_anyway: bool = False,
    ) -> DigitResponse:
        """Probabilities -> the response: the best digit first, and the input if asked for.
        An answer the net abstains from is a 422, or flagged when ``answer_anyway``."""
        reason = doubt(model, answer)
        if reason is not None and not answer_anyway:
            raise NoDigitFound(reason)
        predictions = top_predictions(answer.probs, answer.labels, top_k)
        return DigitResponse(
            digit=int(predictions[0].label),
            probability=predictions[0].probability,
            model=model,
            version=answer.version,
            predictions=predictions,
            image=None
            if image is None
            else "data:image/png;base64," + base64.b64encode(to_png(image)).decode(),
            abstained=(reason is not None) if answer_anyway else None,
            reason=reason,
        )

    async def classify(
        self,
        model: str,
        data: bytes,
        *,
        top_k: int = 3,
        debug: bool = False,
        answer_anyway: bool = False,
        gone: Gone | None = None,
    ) -> DigitResponse:
        """One upload through decode, preprocess, the batcher and encode."""
        self.net(model)  # 503 before any decoding when the model is not served
        image = await self.prepare_upload(data)
        answer = await self.answer(model, image, gone)
        return self.encode(
            model, answer, top_k, image if debug else None, answer_anyway=answer_anyway
        )

    async def explain(
        self, model: str, data: bytes, *, top_k: int, gone: Gone | None = None
    ) -> DigitExplanation:
        """One upload answered as on ``POST /digit``, then its best digit explained pixel by
        pixel (integrated gradients), with the overlay picture."""
        self.net(model)
        async with self.explanations.slot():
            image = await self.prepare_upload(data)
            net = self.net(model)  # the version served once admitted; it answers and explains
            answer = await net.submit(image, gone)
            plain = self.encode(model, answer, top_k)  # 422 when the net abstains
            if gone is not None and await gone():
                raise ClientClosedRequest("the client went away; explanation not computed")
            steps = self.explanations.steps

            def explain() -> tuple[Attribution, bytes]:
                attribution = net.attribute(
                    image, best(answer.probs), steps=steps.digit, batch_size=steps.batch_size
                )
                return attribution, overlay_png(image, attribution.values)

            attribution, png = await self.explanations.compute(explain)
        return DigitExplanation(
            digit=plain.digit,
            probability=plain.probability,
            model=plain.model,
            version=plain.version,
            predictions=plain.predictions,
            input=rounded(image),
            attributions=rounded(attribution.values),
            logit=round(attribution.logit, 6),
            baseline_logit=round(attribution.baseline_logit, 6),
            delta=round(attribution.delta, 6),
            overlay="data:image/png;base64," + base64.b64encode(png).decode(),
        )
