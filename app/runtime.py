"""What the lifespan builds: settings, loaded models, their services and batchers."""

import asyncio
import logging
import os
import time
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
from app.services.digits import DigitService, Limits
from app.services.generation import Generations
from app.services.names import NameClassifier
from app.settings import Settings
from models.device import resolve_device

logger = logging.getLogger("app.runtime")
NAME_ROUTES = frozenset({"/classify-name", "/classify-name/batch"})


@dataclass
class Runtime:
    """Everything the routes need, built once at startup and kept on ``app.state``."""

    settings: Settings
    registry: ModelRegistry
    digits: dict[str, DigitService] = field(default_factory=dict)
    names: dict[str, NameClassifier] = field(default_factory=dict)
    chars: dict[str, CharModel] = field(default_factory=dict)
    batchers: dict[str, Batcher[object, list[float]]] = field(default_factory=dict)
    generations: Generations | None = None
    started: float = field(default_factory=time.perf_counter)
    cpu_limiter: anyio.CapacityLimiter = field(
        default_factory=lambda: anyio.CapacityLimiter(os.cpu_count() or 1)
    )
    ready: bool = False

    @classmethod
    def build(cls, settings: Settings) -> "Runtime":
        """Load every checkpoint onto the configured device and wrap it in its service."""
        if settings.threads:
            torch.set_num_threads(settings.threads)
        device = resolve_device(settings.device)
        runtime = cls(settings=settings, registry=ModelRegistry.load(settings.weights_dir, device))
        if settings.preprocess_threads:
            runtime.cpu_limiter = anyio.CapacityLimiter(settings.preprocess_threads)
        limits = Limits(settings.max_image_pixels, settings.max_decoded_bytes)
        for name, checkpoint in runtime.registry.models.items():
            arch = checkpoint.card["architecture"]
            if arch in ("InceptionNet", "ResNet"):
                runtime.digits[name] = DigitService(checkpoint, device, limits, fold=settings.fold)
            elif arch == "NameGRU":
                runtime.names[name] = NameClassifier(checkpoint, device)
            elif arch == "CharRNN":
                runtime.chars[name] = CharModel(checkpoint, device)
        return runtime

    def warm(self) -> None:
        """One forward pass per model, so the first request pays no lazy initialisation."""
        blank = np.zeros((28, 28), dtype=np.float32)
        blank[8:20, 12:16] = 1.0
        for name, digit in self.digits.items():
            digit.predict_batch([blank, blank])
            if digit.folded:
                logger.info("%s: served folded into matrix products", name)
            self.registry.serving[name] = digit.serving()
        for names in self.names.values():
            names.predict_batch(["Smith", "Nguyen"])
        for char in self.chars.values():
            char.transduce(char.vocab[0] * 2)

    def start_batchers(self, metrics: Metrics | None = None) -> None:
        """One bounded queue and worker per classifier (digits and names), and the gate of
        the generations."""
        s = self.settings
        self.generations = Generations(
            limit=s.max_generations, queue=s.max_generation_queue, timeout_s=s.request_timeout_s
        )
        services: dict[str, DigitService | NameClassifier] = {**self.digits, **self.names}
        for name, service in services.items():
            batcher: Batcher[object, list[float]] = Batcher(
                name,
                service.predict_batch,  # type: ignore[arg-type]
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
        if metrics is not None:
            for name, checkpoint in self.registry.models.items():
                card = checkpoint.card
                metrics.model_info.labels(
                    model=name,
                    architecture=str(card["architecture"]),
                    parameters=str(card.get("num_parameters", "")),
                    device=str(self.registry.device),
                    weights_sha256=str(card["weights_sha256"])[:16],
                ).set(1)

    def refusal(self, scope: Scope) -> QueueFull | None:
        """The 429 a POST to this path would meet in its queue, decided from the path and query
        alone (``AdmissionMiddleware``); None when it may go in."""
        path = scope["path"]
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

    def batcher(self, name: str) -> Batcher[object, list[float]]:
        """The batching queue of a loaded classifier; 503 when that model is not served."""
        if name not in self.batchers:
            raise ModelUnavailable(f"model {name!r} is not loaded on this server")
        return self.batchers[name]

    def digit_service(self, name: str) -> DigitService:
        """A loaded digit net's service; 503 when that model is not served."""
        if name not in self.digits:
            raise ModelUnavailable(f"model {name!r} is not loaded on this server")
        return self.digits[name]

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
