"""Recipes for the character RNNs: ``char-rnn-hello`` and ``char-rnn-shakespeare``."""

import math
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from tqdm import tqdm

from models import CharRNN, CharRNNConfig
from models.char_rnn import Cell
from training.common import History, Run, apply_overrides, seed_everything
from training.data import checksums, load_shakespeare, shakespeare_paths
from training.walkthroughs import HELLO_INPUT, HELLO_TARGET, HELLO_VOCAB, train_hello_model


def train_hello(run: Run) -> dict[str, Any]:
    """The lecture's Embedding -> RNN -> Linear model taught "hello" -> "ohlol" (Adam lr 0.1)."""
    history = History()
    epochs = int(run.overrides.get("epochs", 15))
    model, predicted = train_hello_model(
        "embedding", epochs=1 if run.dry_run else epochs, seed=run.seed, verbose=False
    )
    if not run.dry_run and predicted != HELLO_TARGET:
        raise SystemExit(f"char-rnn-hello learned {predicted!r}, not {HELLO_TARGET!r}; try --seed")
    card = {
        "task": 'lecture-12 sequence transduction: "hello" -> "ohlol"',
        "architecture": "CharRNN",
        "config": asdict(model.config) if isinstance(model, CharRNN) else {},
        "vocabulary": HELLO_VOCAB,
        "preprocessing": {"encoding": "index of each character in the vocabulary"},
        "metrics": {
            "input": HELLO_INPUT,
            "predicted": predicted,
            "target": HELLO_TARGET,
            "exact_match": predicted == HELLO_TARGET,
        },
        "data": {"dir": None, "sha256": {}, "text": "built in: hello -> ohlol"},
        "hyperparameters": {"optimizer": "adam", "lr": 0.1, "epochs": epochs},
    }
    return run.finish(model, card, history)


@dataclass(frozen=True)
class CharLMRecipe:
    """Model size and optimisation settings for the Shakespeare language model."""

    cell: Cell
    embedding_dim: int
    hidden_size: int
    num_layers: int
    dropout: float
    epochs: int
    batch_size: int  # parallel streams of text
    seq_len: int  # truncated back-propagation length
    lr: float
    weight_decay: float
    grad_clip: float = 1.0
    val_fraction: float = 0.05  # taken from the start of the text (see split_text)
    test_fraction: float = 0.10  # the last 10 % of the text, never trained on


RECIPES = {
    "default": CharLMRecipe(
        cell="gru",
        embedding_dim=64,
        hidden_size=512,
        num_layers=2,
        dropout=0.25,
        epochs=8,
        batch_size=32,
        seq_len=128,
        lr=3e-3,
        weight_decay=1e-4,
    ),
}
RECIPES["lecture"] = RECIPES["default"]


def split_text(text: str, recipe: CharLMRecipe) -> tuple[str, str, str]:
    """(train, validation, test): test is the last 10 %, validation the first 5 %.

    Validation comes from the start so that training runs right up to the test text: plays run
    on across the cut (The Taming of the Shrew begins 2 % of the text before it, and its
    speakers fill most of the test), and a model that never read their opening scenes pays for
    every name.
    """
    n = len(text)
    test_start = int(n * (1 - recipe.test_fraction))
    val_end = int(n * recipe.val_fraction)
    return text[val_end:test_start], text[:val_end], text[test_start:]


def streams(ids: torch.Tensor, batch_size: int) -> torch.Tensor:
    """Cut a 1-D id sequence into ``batch_size`` contiguous streams: B x (N // B)."""
    per = len(ids) // batch_size
    return ids[: per * batch_size].view(batch_size, per)


@torch.inference_mode()
def nats_per_char(
    model: CharRNN,
    ids: torch.Tensor,
    device: torch.device,
    batch_size: int = 16,
    seq_len: int = 256,
) -> float:
    """Mean next-character cross-entropy over ``ids``, state carried along 16 streams."""
    model.eval()
    data = streams(ids, batch_size).to(device)
    hidden = None
    total, count = 0.0, 0
    for start in range(0, data.shape[1] - 1, seq_len):
        x = data[:, start : start + seq_len]
        y = data[:, start + 1 : start + seq_len + 1]
        x = x[:, : y.shape[1]]
        logits, hidden = model(x, hidden)  # B x T x V
        total += float(F.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="sum"))
        count += y.numel()
    return total / count


def train_shakespeare(run: Run) -> dict[str, Any]:
    """Train the Shakespeare character language model (truncated BPTT over parallel streams)."""
    recipe = apply_overrides(RECIPES[run.recipe], run.overrides)
    gen = seed_everything(run.seed)
    text = load_shakespeare(run.data_dir)
    vocab = sorted(set(text))
    train_text, val_text, test_text = split_text(text, recipe)

    table = torch.zeros(128, dtype=torch.long)
    table[[ord(c) for c in vocab]] = torch.arange(len(vocab))

    def encode(s: str) -> torch.Tensor:
        return table[torch.frombuffer(bytearray(s.encode("ascii")), dtype=torch.uint8).long()]

    config = CharRNNConfig(
        vocab_size=len(vocab),
        embedding_dim=recipe.embedding_dim,
        hidden_size=recipe.hidden_size,
        num_layers=recipe.num_layers,
        cell=recipe.cell,
        dropout=recipe.dropout,
    )
    model = CharRNN(config).to(run.device)
    train_ids, val_ids, test_ids = encode(train_text), encode(val_text), encode(test_text)
    if run.dry_run:  # one batch, and a quick look at slices of the held-out text
        val_ids, test_ids = val_ids[:4096], test_ids[:4096]
    if run.dry_run:  # one small batch of the real model
        recipe = CharLMRecipe(**{**asdict(recipe), "epochs": 1, "batch_size": 8, "seq_len": 32})
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay
    )
    job = run.dist
    per_stream = len(train_ids) // (recipe.batch_size * job.world)
    steps = (per_stream - 1) // recipe.seq_len
    if run.dry_run:
        steps = 1
    total_steps = steps * recipe.epochs
    warmup = max(1, total_steps // 50)

    def lr_at(step: int) -> float:  # linear warm-up, then cosine decay to 5 %
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total_steps - warmup)
        return 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * progress))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_at)
    history = History()
    best: tuple[float, dict[str, torch.Tensor]] | None = None
    trained = job.wrap(model, run.device)
    bar = tqdm(range(recipe.epochs), desc=run.name, unit="epoch", disable=not job.main)
    for _ in bar:
        trained.train()
        # A fresh random offset each epoch so the stream cuts move; each rank its own streams.
        offset = int(torch.randint(recipe.seq_len, (1,), generator=gen))
        every = streams(train_ids[offset:], recipe.batch_size * job.world)
        data = every[job.rank :: job.world].to(run.device)
        hidden: Any = None
        loss_sum = 0.0
        for step in tqdm(range(steps), leave=False, unit="batch", disable=not job.main):
            start = step * recipe.seq_len
            x = data[:, start : start + recipe.seq_len]  # B x T
            y = data[:, start + 1 : start + recipe.seq_len + 1]
            if y.shape[1] < x.shape[1]:
                break
            if hidden is not None:
                hidden = (
                    tuple(h.detach() for h in hidden)
                    if isinstance(hidden, tuple)
                    else hidden.detach()
                )
            logits, hidden = trained(x, hidden)
            loss = F.cross_entropy(logits.flatten(0, 1), y.flatten())
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), recipe.grad_clip)
            optimizer.step()
            scheduler.step()
            loss_sum += float(loss.detach())
        if not job.main:
            continue
        val = nats_per_char(model, val_ids, run.device)
        history.log(train_loss=loss_sum / max(1, steps), val_loss=val)
        bar.set_postfix(val_nats=f"{val:.3f}")
        if best is None or val <= best[0]:
            best = (val, {k: v.detach().clone() for k, v in model.state_dict().items()})
    if best is not None:
        model.load_state_dict(best[1])
    if not job.main:
        return run.finish(model, {}, history)
    test = nats_per_char(model, test_ids, run.device)
    card = {
        "task": "character-level language model of tiny Shakespeare",
        "architecture": "CharRNN",
        "config": asdict(config),
        "vocabulary": vocab,
        "preprocessing": {"encoding": "index of each character in the vocabulary"},
        "metrics": {
            "test_nats_per_char": round(test, 5),
            "test_bits_per_char": round(test / math.log(2), 5),
            "val_nats_per_char": round(best[0], 5) if best else None,
            "test_chars": len(test_ids),
            "test_split": "last 10 % of the text",
        },
        "data": {"dir": "shakespeare", "sha256": checksums(shakespeare_paths(run.data_dir))},
        "hyperparameters": asdict(recipe),
    }
    return run.finish(model, card, history)
