"""What the lifespan builds: settings, loaded models, their services and batchers."""

import asyncio
import logging
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from urllib.parse import parse_qs

import anyio
import numpy as np
import torch
from starlette.types import Scope

from app.batching import Batcher
from app.errors import ModelUnavailable, QueueFull
from app.metrics import Metrics
from app.registry import ModelRegistry
from app.services.char_rnn import CharModel
from app.services.common import Answer
from app.services.digits import DigitService, Limits
from app.services.explanations import Explanations, Steps
from app.services.generation import Generations
from app.services.names import NameClassifier
from app.settings import Settings
from models.checkpoint import Checkpoint
from models.device import resolve_device

logger = logging.getLogger("app.runtime")
Service = DigitService | NameClassifier | CharModel
Classifier = DigitService | NameClassifier
PROBE_NAMES = ["Smith", "Nguyen"]


def probe_digits() -> list[np.ndarray]:
    """Two 28 x 28 inputs with a vertical stroke: a digit net's warm-up and probe batch."""
    stroke = np.zeros((28, 28), dtype=np.float32)
    stroke[8:20, 12:16] = 1.0
    return [stroke, stroke]


NAME_ROUTES = frozenset({"/classify-name", "/classify-name/batch"})
EXPLAIN_ROUTES = frozenset({"/digit/explain", "/classify-name/explain"})


@dataclass
class Runtime:
    """Everything the routes need, built once at startup and kept on ``app.state``.

    Each classifier has one batcher for the life of the app; the service it runs, and the
    version that answers, are swapped in between batches by ``install``.
    """

    settings: Settings
    registry: ModelRegistry
    digits: dict[str, DigitService] = field(default_factory=dict)
    names: dict[str, NameClassifier] = field(default_factory=dict)
    chars: dict[str, CharModel] = field(default_factory=dict)
    batchers: dict[str, Batcher[object, Answer]] = field(default_factory=dict)
    generations: Generations | None = None
    explanations: Explanations | None = None
    started: float = field(default_factory=time.perf_counter)
    cpu_limiter: anyio.CapacityLimiter = field(
        default_factory=lambda: anyio.CapacityLimiter(os.cpu_count() or 1)
    )
    metrics: Metrics | None = None
    running: dict[str, int] = field(default_factory=dict)
    """Batches each classifier is computing right now (0 or 1)."""
    repository_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    """Held while a version loads or a model unloads: one change to what is served at a time."""
    ready: bool = False

    @classmethod
    def build(cls, settings: Settings) -> "Runtime":
        """Load every model's default version onto the configured device, in its service."""
        if settings.threads:
            torch.set_num_threads(settings.threads)
        device = resolve_device(settings.device)
        runtime = cls(settings=settings, registry=ModelRegistry.load(settings.weights_dir, device))
        if settings.preprocess_threads:
            runtime.cpu_limiter = anyio.CapacityLimiter(settings.preprocess_threads)
        for name, checkpoint in runtime.registry.models.items():
            runtime.serve(name, runtime.make_service(checkpoint))
        return runtime

    def make_service(self, checkpoint: Checkpoint) -> Service:
        """The service for a checkpoint, by its architecture (the Inception net folded, checked)."""
        arch = checkpoint.card["architecture"]
        device = self.registry.device
        if arch in ("InceptionNet", "ResNet"):
            s = self.settings
            limits = Limits(s.max_image_pixels, s.max_decoded_bytes)
            return DigitService(checkpoint, device, limits, fold=s.fold)
        if arch == "NameGRU":
            return NameClassifier(checkpoint, device)
        return CharModel(checkpoint, device)

    @staticmethod
    def check(service: Service) -> None:
        """Run a probe batch through a service (which also warms it); ValueError unless every
        answer is a finite probability distribution of the right width."""
        if isinstance(service, CharModel):
            steps = service.transduce(service.vocab[0] * 2)
            rows = [[step.probability] for step in steps]
            width = 1
        else:
            if isinstance(service, DigitService):
                rows = service.predict_batch(probe_digits())
            else:
                rows = service.predict_batch(PROBE_NAMES)
            width = len(service.labels)
        for row in rows:
            if len(row) != width or not all(math.isfinite(p) and 0 <= p <= 1 for p in row):
                raise ValueError(f"the probe batch gave {row[:4]}..., not probabilities")
            if width > 1 and abs(sum(row) - 1) > 1e-3:
                raise ValueError(f"the probe batch's probabilities sum to {sum(row):.4f}, not 1")

    def warm(self) -> None:
        """One probe batch per model, so the first request pays no lazy initialisation."""
        for name, service in self.services().items():
            self.check(service)
            if isinstance(service, DigitService) and service.folded:
                logger.info("%s: served folded into matrix products", name)

    def services(self) -> dict[str, Service]:
        return {**self.digits, **self.names, **self.chars}

    def serve(self, name: str, service: Service) -> None:
        if isinstance(service, DigitService):
            self.digits[name] = service
            self.registry.serving[name] = service.serving()
        elif isinstance(service, NameClassifier):
            self.names[name] = service
        else:
            self.chars[name] = service

    def start_batchers(self, metrics: Metrics | None = None) -> None:
        """One bounded queue and worker per classifier (digits and names), and the gates of
        the generations and the explanations."""
        self.metrics = metrics
        s = self.settings
        self.generations = Generations(
            limit=s.max_generations, queue=s.max_generation_queue, timeout_s=s.request_timeout_s
        )
        self.explanations = Explanations(
            limit=s.max_explanations,
            queue=s.max_explanation_queue,
            timeout_s=s.request_timeout_s,
            steps=Steps(s.explain_digit_steps, s.explain_name_steps, s.explain_batch_size),
        )
        classifiers: dict[str, Classifier] = {**self.digits, **self.names}
        for name, service in classifiers.items():
            self._start_batcher(name, service)
        for name in self.registry.models:
            self._set_model_info(name, 1)

    def _predictor(
        self, service: Classifier, version: str
    ) -> Callable[[Sequence[object]], list[Answer]]:
        name = service.checkpoint.name

        def predict(inputs: Sequence[object]) -> list[Answer]:
            self.running[name] = self.running.get(name, 0) + 1
            try:
                if isinstance(service, DigitService):
                    probs, abstain = service.score_batch(inputs)  # type: ignore[arg-type]
                    return [Answer(p, version, a) for p, a in zip(probs, abstain, strict=True)]
                probs = service.predict_batch(inputs)  # type: ignore[arg-type]
            finally:
                self.running[name] -= 1
            return [Answer(p, version) for p in probs]

        return predict

    def _start_batcher(self, name: str, service: Classifier) -> Batcher[object, Answer]:
        s, metrics = self.settings, self.metrics
        batcher: Batcher[object, Answer] = Batcher(
            name,
            self._predictor(service, self.registry.versions[name]),
            max_batch_size=s.max_batch_size,
            max_wait_ms=s.max_wait_ms,
            max_queue=s.max_queue,
            timeout_s=s.request_timeout_s,
            on_batch=metrics.observe_batch if metrics else None,
            on_drop=metrics.observe_drop if metrics else None,
            on_depth=metrics.queue_depth.labels(name).set if metrics else None,
        )
        batcher.start()
        self.batchers[name] = batcher
        if isinstance(service, DigitService):
            service.batcher = batcher  # type: ignore[assignment]
            service.cpu_limiter = self.cpu_limiter
        return batcher

    def install(self, name: str, version: str, checkpoint: Checkpoint, service: Service) -> None:
        """Serve a loaded, checked version from now on. Called on the event loop, so nothing
        runs between its assignments: the batcher's next batch runs the new net, a batch already
        running finishes on the old one, and no request sees a half-made swap."""
        if name in self.registry.models:
            self._set_model_info(name, 0)
        self.registry.models[name] = checkpoint
        self.registry.versions[name] = version
        self.serve(name, service)
        if not isinstance(service, CharModel):
            batcher = self.batchers.get(name)
            if batcher is None:
                self._start_batcher(name, service)
            else:
                batcher.predict_batch = self._predictor(service, version)
                if isinstance(service, DigitService):
                    service.batcher = batcher  # type: ignore[assignment]
                    service.cpu_limiter = self.cpu_limiter
        self._set_model_info(name, 1)

    async def remove(self, name: str) -> str:
        """Stop serving a model: new requests get 503, queued ones are answered first."""
        self._set_model_info(name, 0)
        version = self.registry.versions.pop(name)
        self.registry.models.pop(name)
        self.registry.serving.pop(name, None)
        digit = self.digits.pop(name, None)
        self.names.pop(name, None)
        self.chars.pop(name, None)
        if digit is not None:
            digit.batcher = None
        batcher = self.batchers.pop(name, None)
        if batcher is not None:
            await self._drain(batcher)
            await batcher.stop()
        return version

    async def _drain(self, batcher: Batcher[object, Answer]) -> None:
        """Wait until the queue is empty and the batch being gathered, if any, has run."""
        deadline = time.perf_counter() + self.settings.request_timeout_s
        before = -1
        while time.perf_counter() < deadline:
            done = batcher.stats.items + batcher.stats.dropped
            idle = batcher.depth == 0 and not self.running.get(batcher.name)
            if idle and done == before:
                return
            before = done
            await asyncio.sleep(self.settings.max_wait_ms / 1000 + 0.05)

    def _set_model_info(self, name: str, value: int) -> None:
        if self.metrics is None or name not in self.registry.models:
            return
        card = self.registry.models[name].card
        self.metrics.model_info.labels(
            model=name,
            architecture=str(card["architecture"]),
            parameters=str(card.get("num_parameters", "")),
            device=str(self.registry.device),
            weights_sha256=str(card["weights_sha256"])[:16],
            version=self.registry.versions[name],
        ).set(value)

    def refusal(self, scope: Scope) -> QueueFull | None:
        """The 429 a POST to this path would meet in its queue, decided from the path and query
        alone (``AdmissionMiddleware``); None when it may go in."""
        path = scope["path"]
        if path in EXPLAIN_ROUTES and self.explanations is not None:
            if (refused := self.explanations.admission.refusal()) is not None:
                return refused
            path = path.removesuffix("/explain")
        if path in NAME_ROUTES:
            batcher = self.batchers.get("name-gru")
        elif path == "/digit":
            query = parse_qs(scope["query_string"].decode("latin-1"))
            batcher = self.batchers.get(query.get("model", ["digit-resnet"])[-1])
        elif path == "/char-rnn/generate" and self.generations is not None:
            return self.generations.admission.refusal()
        else:
            return None
        return None if batcher is None else batcher.refusal()

    def batcher(self, name: str) -> Batcher[object, Answer]:
        """The batching queue of a loaded classifier; 503 when that model is not served."""
        if name not in self.batchers:
            raise ModelUnavailable(f"model {name!r} is not loaded on this server")
        return self.batchers[name]

    def digit_service(self, name: str) -> DigitService:
        """A loaded digit net's service; 503 when that model is not served."""
        if name not in self.digits:
            raise ModelUnavailable(f"model {name!r} is not loaded on this server")
        return self.digits[name]

    def name_classifier(self, name: str) -> NameClassifier:
        """A loaded name model's classifier; 503 when that model is not served."""
        if name not in self.names:
            raise ModelUnavailable(f"model {name!r} is not loaded on this server")
        return self.names[name]

    def explanation(self) -> Explanations:
        """The gate every explanation goes through; 503 before it is started."""
        if self.explanations is None:
            raise ModelUnavailable("explanations are not started on this server")
        return self.explanations

    def generation(self) -> Generations:
        """The gate every generation goes through; 503 before it is started."""
        if self.generations is None:
            raise ModelUnavailable("generation is not started on this server")
        return self.generations

    def char_model(self, name: str) -> CharModel:
        """A loaded character RNN; 503 when that model is not served."""
        if name not in self.chars:
            raise ModelUnavailable(f"model {name!r} is not loaded on this server")
        return self.chars[name]

    async def stop(self) -> None:
        if self.generations is not None:
            self.generations.close()
        await asyncio.gather(*(b.stop() for b in self.batchers.values()))
