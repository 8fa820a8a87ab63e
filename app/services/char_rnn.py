"""Character RNNs: per-step transduction and seeded, streamable generation; the one door to them.

``CharModel`` is one loaded version. ``CharService`` is what every door calls
(``/char-rnn/transduce``, ``/char-rnn/generate`` plain or streamed, ``/v2``): it owns the limits
(characters per text and prompt, texts and prompts per request, characters generated), and runs
every generation through the one gate (``app.services.generation``: admission, deadline, stop
when the client leaves).
"""

from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from typing import Any, Final

import anyio.to_thread
import torch
import torch.nn.functional as F

from app.batching import Gone
from app.errors import InvalidInput, QueueFull
from app.registry import ModelRegistry
from app.schemas import Step
from app.services.generation import Generation, Generations
from app.services.limits import MAX_PROMPT_CHARS, MAX_PROMPTS, MAX_TEXT_CHARS, MAX_TEXTS
from models.char_rnn import CharRNN, Hidden
from models.checkpoint import Checkpoint

MIN_TEMPERATURE = 1e-4  # below this, sampling is the same as taking the likeliest character


class CharModel:
    """A char-RNN checkpoint and its vocabulary."""

    def __init__(self, checkpoint: Checkpoint, device: torch.device, version: str = "1") -> None:
        if not isinstance(checkpoint.model, CharRNN):
            raise TypeError(f"{checkpoint.name} is not a CharRNN")
        self.model: CharRNN = checkpoint.model
        self.checkpoint = checkpoint
        self.name = checkpoint.name
        self.version = version
        self.device = device
        self.vocab: list[str] = list(checkpoint.card["vocabulary"])
        self.index = {c: i for i, c in enumerate(self.vocab)}

    def start(self) -> None:
        """Nothing to start: a generation runs in the gate's threads, a transduction in one."""

    async def close(self) -> None:
        """Nothing to drain: work already started holds this version until it ends."""

    def serving(self) -> dict[str, Any]:
        return {}

    def encode(self, text: str, field: str) -> torch.Tensor:
        """1 x T indices, or 422 naming every character outside the vocabulary."""
        unknown = sorted(set(text) - set(self.index))
        if unknown:
            shown = ", ".join(repr(c) for c in unknown[:20])
            raise InvalidInput(
                f"{field} has characters that {self.name} does not know: {shown}; "
                f"it knows {self.describe_vocabulary()}"
            )
        return torch.tensor([[self.index[c] for c in text]], device=self.device)

    def describe_vocabulary(self) -> str:
        """Short human description: 'helo', or 'letters, newline, space and ...'."""
        letters = "".join(c for c in self.vocab if c.isalpha())
        parts = [letters if len(letters) < 10 else "letters A-Z and a-z"]
        parts += ["newline"] if "\n" in self.vocab else []
        others = "".join(c for c in self.vocab if not c.isalpha() and c != "\n")
        parts += [f"the characters {others!r}"] if others else []
        return ", ".join(parts)

    def transduce(self, text: str) -> list[Step]:
        """The likeliest output character at every input step."""
        idx = self.encode(text, "text")
        with torch.inference_mode():
            logits, _ = self.model(idx)  # 1 x T x V
            probs = F.softmax(logits[0].float(), dim=-1).cpu()  # T x V
        best = probs.max(dim=-1)
        return [
            Step(input=c, output=self.vocab[i], probability=round(float(p), 6))
            for c, i, p in zip(text, best.indices.tolist(), best.values.tolist(), strict=True)
        ]

    def generate(
        self,
        prompt: str,
        max_chars: int,
        temperature: float,
        top_k: int | None,
        seed: int | None,
        *,
        stop: Callable[[], bool] | None = None,
        chunk_chars: int = 16,
    ) -> Generator[str, None, None]:
        """Yield generated text in chunks; the same seed gives the same text on a device.

        Every step enters inference mode itself (the mode belongs to a thread, and whoever
        advances this generator may do so from any thread) and first asks ``stop``, so a
        generation nobody waits for ends within one step.
        """
        context = self.encode(prompt or "\n", "prompt")
        generator = torch.Generator(device="cpu")
        if seed is None:
            generator.seed()
        else:
            generator.manual_seed(seed)
        k = None if top_k is None else min(top_k, len(self.vocab))
        hidden: Hidden | None = None
        chunk: list[str] = []
        with torch.inference_mode():
            logits, hidden = self.model(context, hidden)
        for _ in range(max_chars):
            if stop is not None and stop():
                return
            with torch.inference_mode():
                scores = logits[0, -1].double().cpu() / max(temperature, MIN_TEMPERATURE)  # V
                if k is not None:
                    kth = scores.topk(k).values[-1]
                    scores = scores.masked_fill(scores < kth, float("-inf"))
                probs = F.softmax(scores, dim=-1)
                choice = int(torch.multinomial(probs, 1, generator=generator))
                step = torch.tensor([[choice]], device=self.device)
                logits, hidden = self.model(step, hidden)
            chunk.append(self.vocab[choice])
            if len(chunk) >= chunk_chars:
                yield "".join(chunk)
                chunk = []
        if chunk:
            yield "".join(chunk)


TRANSDUCERS: Final = frozenset({"char-rnn-hello"})
"""Character models that map each input character to an output one; the others generate."""


@dataclass(frozen=True)
class GenerateOptions:
    """How to continue a prompt."""

    max_chars: int = 200
    temperature: float = 0.8
    top_k: int | None = None
    seed: int | None = None


class CharService:
    """The one door to the character RNNs, for every route that reaches them."""

    def __init__(
        self, registry: ModelRegistry, generations: Generations, max_generate_chars: int
    ) -> None:
        self.registry = registry
        self.generations = generations
        self.max_generate_chars = max_generate_chars

    def model(self, name: str) -> CharModel:
        """The version served now (503 when not loaded, 404 when unknown)."""
        runner = self.registry.get(name).runner
        if not isinstance(runner, CharModel):
            raise InvalidInput(f"{name} is not a character RNN")
        return runner

    def refusal(self) -> QueueFull | None:
        """The 429 one more generation would get now, or None."""
        return self.generations.admission.refusal()

    @staticmethod
    def _count(items: Sequence[str], what: str, limit: int) -> None:
        if not 1 <= len(items) <= limit:
            raise InvalidInput(f"{len(items)} {what}s; 1 to {limit} per request")

    async def transduce(self, name: str, texts: Sequence[str]) -> list[list[Step]]:
        """The likeliest output character at every step of each text (1 to ``MAX_TEXTS``
        texts of 1 to ``MAX_TEXT_CHARS`` characters)."""
        model = self.model(name)
        self._count(texts, "text", MAX_TEXTS)
        for text in texts:
            if not 1 <= len(text) <= MAX_TEXT_CHARS:
                raise InvalidInput(
                    f"text is {len(text)} characters; 1 to {MAX_TEXT_CHARS} are transduced"
                )
            model.encode(text, "text")  # 422 for characters outside the vocabulary
        return await anyio.to_thread.run_sync(lambda: [model.transduce(t) for t in texts])

    def _check(self, model: CharModel, prompts: Sequence[str], options: GenerateOptions) -> None:
        self._count(prompts, "prompt", MAX_PROMPTS)
        cap = self.max_generate_chars
        if not 1 <= options.max_chars <= cap:
            raise InvalidInput(
                f"max_chars is {options.max_chars}; this server generates 1 to {cap}"
            )
        if not options.temperature > 0:
            raise InvalidInput("temperature must be above 0")
        if options.top_k is not None and options.top_k < 1:
            raise InvalidInput("top_k must be at least 1")
        for prompt in prompts:
            if len(prompt) > MAX_PROMPT_CHARS:
                raise InvalidInput(
                    f"prompt is {len(prompt)} characters; the limit is {MAX_PROMPT_CHARS}"
                )
            model.encode(prompt, "prompt")  # 422 for characters outside the vocabulary

    def _steps(
        self, model: CharModel, prompt: str, options: GenerateOptions
    ) -> Callable[[Callable[[], bool]], Generator[str, None, None]]:
        def steps(stop: Callable[[], bool]) -> Generator[str, None, None]:
            return model.generate(
                prompt,
                options.max_chars,
                options.temperature,
                options.top_k,
                options.seed,
                stop=stop,
            )

        return steps

    async def generate(
        self, name: str, prompts: Sequence[str], options: GenerateOptions, gone: Gone | None
    ) -> list[str]:
        """Continue each prompt, one after another in one slot of the gate and within one
        deadline (429, 499, 504)."""
        model = self.model(name)
        self._check(model, prompts, options)
        return await self.generations.generate(
            [self._steps(model, p, options) for p in prompts], gone
        )

    async def stream(
        self, name: str, prompt: str, options: GenerateOptions, gone: Gone | None
    ) -> Generation:
        """Start continuing one prompt; read its chunks as they come (429)."""
        model = self.model(name)
        self._check(model, [prompt], options)
        return await self.generations.start(self._steps(model, prompt, options), gone)
