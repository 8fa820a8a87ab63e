"""The service layer: one door per model family, and the assembly of the registry beneath them.

``Services.create`` reads nothing and loads nothing; ``load`` (in a worker thread) reads every
model's default version and builds what serves it, warmed and checked; ``start`` (on the event
loop) starts their queues. Settings are handed down from here, read once by the app.
"""

import math
import os
from dataclasses import dataclass, field
from typing import Any, Literal

import anyio
import numpy as np
import torch
from opentelemetry.trace import Tracer

from app.metrics import Metrics
from app.preprocessing import uploads
from app.registry import ModelRegistry, Runner, Served
from app.services.char_rnn import TRANSDUCERS, CharModel, CharService
from app.services.common import Batching
from app.services.digits import DigitNet, DigitService, Limits
from app.services.explanations import Explanations, Steps
from app.services.generation import Generations
from app.services.names import NameNet, NameService
from app.settings import Settings
from models.checkpoint import Checkpoint
from models.device import resolve_device

PROBE_NAMES = ["Smith", "Nguyen"]
Family = Literal["digits", "names", "transduce", "generate"]


@dataclass(frozen=True)
class ModelView:
    """What a door needs to know of a served model: its kind, version and labels."""

    name: str
    family: Family
    version: str
    labels: list[str]


DIGIT_FAMILY = frozenset({"InceptionNet", "ResNet"})


def probe_digits() -> list[np.ndarray]:
    """Two 28 x 28 inputs with a vertical stroke: a digit net's warm-up and probe batch."""
    stroke = np.zeros((28, 28), dtype=np.float32)
    stroke[8:20, 12:16] = 1.0
    return [stroke, stroke]


def check(runner: Runner) -> None:
    """Run a probe batch through a version (which also warms it); ValueError unless every
    answer is a finite probability distribution of the right width."""
    if isinstance(runner, CharModel):
        steps = runner.transduce(runner.vocab[0] * 2)
        rows = [[step.probability] for step in steps]
        width = 1
    elif isinstance(runner, DigitNet):
        rows, width = runner.predict_batch(probe_digits()), len(runner.labels)
    elif isinstance(runner, NameNet):
        rows, width = runner.predict_batch(PROBE_NAMES), len(runner.labels)
    else:
        raise TypeError(f"no probe for {type(runner).__name__}")
    for row in rows:
        if len(row) != width or not all(math.isfinite(p) and 0 <= p <= 1 for p in row):
            raise ValueError(f"the probe batch gave {row[:4]}..., not probabilities")
        if width > 1 and abs(sum(row) - 1) > 1e-3:
            raise ValueError(f"the probe batch's probabilities sum to {sum(row):.4f}, not 1")


@dataclass
class Services:
    """Every model family's service over one registry, built from the settings."""

    settings: Settings
    registry: ModelRegistry
    digits: DigitService
    names: NameService
    chars: CharService
    explanations: Explanations
    generations: Generations
    metrics: Metrics | None = None
    ready: bool = False
    batching: Batching = field(init=False)

    @classmethod
    def create(
        cls, settings: Settings, metrics: Metrics | None = None, tracer: Tracer | None = None
    ) -> "Services":
        """The services and an empty registry (nothing loaded yet); ``tracer``: spans of the
        services' steps (``app.tracing``)."""
        if settings.threads:
            torch.set_num_threads(settings.threads)
        uploads.guard_decompression(settings.max_image_pixels)
        s = settings
        explanations = Explanations(
            limit=s.max_explanations,
            queue=s.max_explanation_queue,
            timeout_s=s.request_timeout_s,
            steps=Steps(s.explain_digit_steps, s.explain_name_steps, s.explain_batch_size),
        )
        generations = Generations(
            limit=s.max_generations, queue=s.max_generation_queue, timeout_s=s.request_timeout_s
        )
        registry = ModelRegistry(
            device=resolve_device(s.device),
            weights_dir=s.weights_dir,
            build=lambda c, v: services.build(c, v),
        )
        cpu = anyio.CapacityLimiter(s.preprocess_threads or os.cpu_count() or 1)
        services = cls(
            settings=settings,
            registry=registry,
            digits=DigitService(
                registry,
                Limits(s.max_image_pixels, s.max_decoded_bytes),
                explanations,
                cpu,
                tracer,
            ),
            names=NameService(registry, explanations),
            chars=CharService(registry, generations, s.max_generate_chars),
            explanations=explanations,
            generations=generations,
            metrics=metrics,
        )
        registry.on_change = services._model_info
        services.batching = Batching(
            max_batch_size=s.max_batch_size,
            max_wait_ms=s.max_wait_ms,
            max_queue=s.max_queue,
            timeout_s=s.request_timeout_s,
            on_batch=metrics.observe_batch if metrics else None,
            on_drop=metrics.observe_drop if metrics else None,
            on_depth=(lambda name: metrics.queue_depth.labels(name).set) if metrics else None,
            tracer=tracer,
        )
        return services

    def build(self, checkpoint: Checkpoint, version: str) -> Runner:
        """What serves a checkpoint, by its architecture, checked on a probe batch."""
        arch = checkpoint.card["architecture"]
        device = self.registry.device
        runner: Runner
        if arch in DIGIT_FAMILY:
            runner = DigitNet(
                checkpoint,
                device,
                version=version,
                batching=self.batching,
                fold=self.settings.fold,
            )
        elif arch == "NameGRU":
            runner = NameNet(checkpoint, device, version=version, batching=self.batching)
        else:
            runner = CharModel(checkpoint, device, version)
        check(runner)
        return runner

    def load(self) -> None:
        """Load, build, warm and check every model's default version (in a worker thread)."""
        self.registry.load_defaults()

    def start(self) -> None:
        """On the event loop: every version's queue starts; the services are ready."""
        self.registry.start()
        self.ready = True

    async def close(self) -> None:
        """At shutdown: generations stop, every queue answers what it admitted."""
        self.ready = False
        self.generations.close()
        await self.registry.close()

    def served(self) -> list[str]:
        """The names of the models served now."""
        return sorted(self.registry.served)

    def describe(self, name: str) -> ModelView:
        """A served model's kind, version and labels (503 when not loaded, 404 when unknown)."""
        served = self.registry.get(name)
        runner = served.runner
        family: Family
        if isinstance(runner, DigitNet):
            family = "digits"
        elif isinstance(runner, NameNet):
            family = "names"
        else:
            family = "transduce" if name in TRANSDUCERS else "generate"
        labels = list(getattr(runner, "labels", []))
        return ModelView(name, family, served.version, labels)

    def cards(self) -> list[dict[str, Any]]:
        """Every served model's card, by name."""
        return [self.registry.card(name) for name in sorted(self.registry.served)]

    def card(self, name: str) -> dict[str, Any]:
        """One served model's card (404)."""
        return self.registry.card(name)

    def _model_info(self, served: Served, serving: bool) -> None:
        if self.metrics is None:
            return
        card = served.checkpoint.card
        self.metrics.model_info.labels(
            model=served.name,
            architecture=str(card["architecture"]),
            parameters=str(card.get("num_parameters", "")),
            device=str(self.registry.device),
            weights_sha256=str(card["weights_sha256"])[:16],
            version=served.version,
        ).set(1 if serving else 0)
