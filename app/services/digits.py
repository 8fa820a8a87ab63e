"""Digit uploads -> MNIST form -> a batched CNN -> ranked digits.

One ``DigitService`` per digit checkpoint, in the shape LitServe gives a server: ``open`` (the
upload's header, checked against the limits), ``decode`` (-> greyscale pixels), ``preprocess``
(-> the 28 x 28 MNIST form), ``predict_batch`` (a batch of those -> probabilities, run by the
batcher) and ``encode`` (-> the response). The typed route and any other front door call
``classify``, which runs them in order.
"""

import base64
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import anyio
import anyio.to_thread
import cv2
import numpy as np
import torch

from app.batching import Batcher
from app.errors import ModelUnavailable, NoDigitFound
from app.preprocessing import digits, uploads
from app.schemas import DigitResponse
from app.services.attribution import Attribution, integrated_gradients
from app.services.common import Answer, top_predictions
from models import InceptionNet
from models.checkpoint import Checkpoint
from models.inception_fold import FoldError, fold_inception

logger = logging.getLogger("app.services.digits")

INLINE_PIXELS = 256 * 256
"""Uploads of up to this many pixels are decoded and prepared on the event loop: about
0.1-0.4 ms, less than handing them to a worker thread and back. Larger ones (photos) go to
a thread, so that the loop keeps serving while they decode."""


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


class DigitService:
    """Batched inference over one digit checkpoint, normalised as its card says."""

    def __init__(
        self,
        checkpoint: Checkpoint,
        device: torch.device,
        limits: Limits,
        *,
        fold: bool = True,
    ) -> None:
        self.checkpoint = checkpoint
        self.name = checkpoint.name
        self.device = device
        self.limits = limits
        self.net: torch.nn.Module = checkpoint.model
        """What runs: the checkpoint's net, or its exact fold (``models.inception_fold``)."""
        if fold and isinstance(checkpoint.model, InceptionNet):
            probe = torch.randn(8, 1, digits.FIELD, digits.FIELD, device=device)
            try:
                self.net = fold_inception(checkpoint.model, probe)
            except FoldError as exc:
                logger.warning("%s served layer by layer: %s", self.name, exc)
        pre = checkpoint.card["preprocessing"]
        self.mean, self.std = float(pre["mean"]), float(pre["std"])
        self.labels: list[str] = list(checkpoint.card["labels"])
        self.calibration = checkpoint.calibration
        abstention = checkpoint.card.get("abstention") or {}
        self.abstain_below: float | None = abstention.get("threshold")
        """Softmax top probabilities (before calibration) under this mean "not a digit"."""
        self.batcher: Batcher[np.ndarray, Answer] | None = None
        self.cpu_limiter: anyio.CapacityLimiter | None = None

    @property
    def folded(self) -> bool:
        return self.net is not self.checkpoint.model

    def serving(self) -> dict[str, object]:
        """How this server computes the net, for its model card."""
        return {"folded": self.folded}

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

    def doubt(self, answer: Answer) -> str | None:
        """Why an answer is not given (the net abstains: the upload does not look like a digit
        to it), or None."""
        if not answer.abstain:
            return None
        top = max(answer.probs)
        best = self.labels[answer.probs.index(top)]
        return (
            f"no digit found: this does not look like a handwritten digit to {self.name} "
            f"(its best guess, {best}, is no better than chance: probability {top:.2f}); "
            "add answer_anyway=true to get its guess"
        )

    def encode(
        self,
        answer: Answer,
        top_k: int,
        image: np.ndarray | None = None,
        *,
        answer_anyway: bool = False,
    ) -> DigitResponse:
        """Probabilities -> the response: the best digit first, and the input if asked for.
        An answer the net abstains from is a 422, or flagged when ``answer_anyway``."""
        reason = self.doubt(answer)
        if reason is not None and not answer_anyway:
            raise NoDigitFound(reason)
        predictions = top_predictions(answer.probs, self.labels, top_k)
        return DigitResponse(
            digit=int(predictions[0].label),
            probability=predictions[0].probability,
            model=self.name,
            version=answer.version,
            predictions=predictions,
            image=None
            if image is None
            else "data:image/png;base64," + base64.b64encode(to_png(image)).decode(),
            abstained=(reason is not None) if answer_anyway else None,
            reason=reason,
        )

    async def prepare_upload(self, data: bytes) -> np.ndarray:
        """``open``, ``decode`` and ``preprocess`` one upload: on the event loop when small,
        in a worker thread when large."""
        upload = self.open(data)
        if upload.width * upload.height <= INLINE_PIXELS:
            return self.prepare(upload)
        return await anyio.to_thread.run_sync(self.prepare, upload, limiter=self.cpu_limiter)

    async def predict(self, image: np.ndarray, gone: Callable[[], bool] | None = None) -> Answer:
        """One prepared 28 x 28 input through the batcher, run by the version served now."""
        if self.batcher is None:
            raise ModelUnavailable(f"model {self.name!r} is not started on this server")
        return await self.batcher.submit(image, gone)

    async def classify(
        self,
        data: bytes,
        *,
        top_k: int = 3,
        debug: bool = False,
        answer_anyway: bool = False,
        gone: Callable[[], bool] | None = None,
    ) -> DigitResponse:
        """One upload through decode, preprocess, the batcher and encode."""
        if self.batcher is None:
            raise ModelUnavailable(f"model {self.name!r} is not started on this server")
        image = await self.prepare_upload(data)
        answer = await self.predict(image, gone)
        return self.encode(answer, top_k, image if debug else None, answer_anyway=answer_anyway)
