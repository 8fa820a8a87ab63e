"""Character RNNs: per-step transduction and seeded, streamable generation."""

from collections.abc import Callable, Generator

import torch
import torch.nn.functional as F

from app.errors import InvalidInput
from app.schemas import Step
from models.char_rnn import CharRNN, Hidden
from models.checkpoint import Checkpoint

MIN_TEMPERATURE = 1e-4  # below this, sampling is the same as taking the likeliest character


class CharModel:
    """A char-RNN checkpoint and its vocabulary."""

    def __init__(self, checkpoint: Checkpoint, device: torch.device) -> None:
        if not isinstance(checkpoint.model, CharRNN):
            raise TypeError(f"{checkpoint.name} is not a CharRNN")
        self.model: CharRNN = checkpoint.model
        self.name = checkpoint.name
        self.device = device
        self.vocab: list[str] = list(checkpoint.card["vocabulary"])
        self.index = {c: i for i, c in enumerate(self.vocab)}

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
