"""Recipe for the surname -> country GRU (``name-gru``)."""

import math
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from models import NameGRU, NameGRUConfig
from models.text import NAME_MAX_LENGTH, encode_name, normalize_name
from training.common import (
    History,
    Run,
    apply_overrides,
    data_generator,
    holdout_split,
    seed_everything,
)
from training.data import checksums, load_names, names_paths

PREPROCESSING = {
    "normalize": "models.text.normalize_name: drop symbols, anyascii transliteration, "
    "letters/apostrophe/space only, collapse spaces, title-case words",
    "encoding": "ASCII code of each character",
    "max_length": NAME_MAX_LENGTH,
}


@dataclass(frozen=True)
class NameRecipe:
    """Optimisation settings for one name-gru run."""

    epochs: int
    batch_size: int
    lr: float
    weight_decay: float = 0.0
    dropout: float = 0.0
    one_cycle: bool = False
    label_smoothing: float = 0.0
    val_fraction: float = 0.0
    drop_junk: bool = False
    class_weight_power: float = 0.0  # loss weight (largest class / class count) ** power
    select_epoch: bool = True  # keep the epoch best on the held-out names (False: the last one,
    # so that the held-out names stay untouched, for an unbiased calibration)


RECIPES = {
    "lecture": NameRecipe(epochs=100, batch_size=256, lr=1e-3),
    "default": NameRecipe(
        epochs=60,
        batch_size=64,
        lr=1e-3,
        weight_decay=1e-2,
        dropout=0.4,
        one_cycle=True,
        label_smoothing=0.05,
        val_fraction=0.2,
        drop_junk=True,
        class_weight_power=0.3,
        select_epoch=False,
    ),
}


def held_out_names(n: int, val_fraction: float) -> int:
    """How many of ``n`` training rows are held out for model selection and calibration."""
    return int(n * val_fraction)


def encode_batch(names: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """Normalised names -> B x T zero-padded ASCII codes and B lengths."""
    codes = [encode_name(n) for n in names]
    lengths = torch.tensor([len(c) for c in codes], dtype=torch.long)
    padded = torch.zeros(len(codes), int(lengths.max()), dtype=torch.long)
    for i, c in enumerate(codes):
        padded[i, : len(c)] = torch.tensor(c)
    return padded, lengths


@torch.inference_mode()
def name_logits(model: nn.Module, names: list[str], device: torch.device) -> torch.Tensor:
    """N x C logits (float32, on the CPU) for normalised names, in batches of 512."""
    model.eval()
    out = []
    for start in range(0, len(names), 512):
        codes, lengths = encode_batch(names[start : start + 512])
        out.append(model(codes.to(device), lengths).float().cpu())
    return torch.cat(out)


def predict_names(model: nn.Module, names: list[str], device: torch.device) -> torch.Tensor:
    """N x C class probabilities (plain softmax) for normalised names."""
    return F.softmax(name_logits(model, names, device), dim=1)


def training_names(data_dir: Path, drop_junk: bool) -> tuple[list[str], list[str]]:
    """The rows of names_train as training reads them: normalised names and their labels."""
    rows = load_names(data_dir, "train", drop_junk=drop_junk)
    return [normalize_name(n) for n, _ in rows], [label for _, label in rows]


def held_out_name_rows(card: dict[str, Any], data_dir: Path) -> tuple[list[str], list[str]]:
    """The names (normalised) and labels a name checkpoint kept from its weights: its run's
    ``val_fraction`` of names_train, first in the seed's ``holdout_split`` (empty when 0)."""
    hp = card["hyperparameters"]
    names, labels = training_names(data_dir, bool(hp.get("drop_junk", False)))
    n_val = held_out_names(len(names), float(hp.get("val_fraction", 0.0)))
    val_idx, _ = holdout_split(len(names), n_val, data_generator(int(card["seed"])))
    return [names[i] for i in val_idx.tolist()], [labels[i] for i in val_idx.tolist()]


def name_metrics(
    probs: torch.Tensor, targets: torch.Tensor, seen: list[bool], num_classes: int
) -> dict[str, float]:
    """Top-1, top-3, macro-F1, loss, and top-1 on the rows whose name is not in train."""
    pred = probs.argmax(1)
    correct = pred == targets
    top3 = (probs.topk(3, dim=1).indices == targets[:, None]).any(1)
    f1s = []
    for c in range(num_classes):
        tp = int(((pred == c) & (targets == c)).sum())
        fp = int(((pred == c) & (targets != c)).sum())
        fn = int(((pred != c) & (targets == c)).sum())
        f1s.append(2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0)
    unseen = ~torch.tensor(seen)
    nll = -torch.log(probs[torch.arange(len(targets)), targets].clamp_min(1e-12)).mean()
    return {
        "accuracy": float(correct.float().mean()),
        "top3_accuracy": float(top3.float().mean()),
        "macro_f1": sum(f1s) / num_classes,
        "loss": float(nll),
        "accuracy_unseen_names": float(correct[unseen].float().mean()),
        "unseen_names": int(unseen.sum()),
        "examples": len(targets),
    }


def names_test_set(data_dir: Path, labels: list[str]) -> tuple[list[str], torch.Tensor, list[bool]]:
    """Every row of names_test: the normalised names, their class indices, and whether each
    name is also in names_train."""
    train_names = {normalize_name(n) for n, _ in load_names(data_dir, "train")}
    test = load_names(data_dir, "test")
    names = [normalize_name(n) for n, _ in test]
    targets = torch.tensor([labels.index(label) for _, label in test])
    return names, targets, [n in train_names for n in names]


def evaluate_names(
    model: nn.Module, labels: list[str], data_dir: Path, device: torch.device
) -> dict[str, float]:
    """Metrics on every row of names_test (normalised as the card says)."""
    names, targets, seen = names_test_set(data_dir, labels)
    return name_metrics(predict_names(model, names, device), targets, seen, len(labels))


def train_names(run: Run) -> dict[str, Any]:
    """Train name-gru with ``run.recipe`` and write its checkpoint."""
    recipe = apply_overrides(RECIPES[run.recipe], run.overrides)
    gen = seed_everything(run.seed)
    names, row_labels = training_names(run.data_dir, recipe.drop_junk)
    labels = sorted(set(row_labels))
    config = NameGRUConfig(num_classes=len(labels), dropout=recipe.dropout)
    model = NameGRU(config).to(run.device)

    targets = torch.tensor([labels.index(label) for label in row_labels])
    n_val = held_out_names(len(names), recipe.val_fraction)
    val_order, train_order = holdout_split(len(names), n_val, gen)
    val_idx, train_idx = val_order.tolist(), train_order.tolist()
    job = run.dist
    steps = math.ceil(len(train_idx) // job.world / recipe.batch_size)
    per_class = torch.bincount(targets, minlength=len(labels)).float()
    class_weights = ((per_class.max() / per_class.clamp_min(1)) ** recipe.class_weight_power).to(
        run.device
    )
    if run.dry_run:
        steps, recipe = 1, NameRecipe(**{**asdict(recipe), "epochs": 1})

    optimizer = torch.optim.AdamW(
        model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay
    )
    scheduler = (
        torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=recipe.lr, epochs=recipe.epochs, steps_per_epoch=steps
        )
        if recipe.one_cycle
        else None
    )
    history = History()
    best: tuple[float, dict[str, torch.Tensor]] | None = None
    last_acc = 0.0
    trained = job.wrap(model, run.device)
    bar = tqdm(range(recipe.epochs), desc=run.name, unit="epoch", disable=not job.main)
    for epoch in bar:
        trained.train()
        perm = torch.tensor(train_idx)[job.order(len(train_idx), epoch, run.seed, gen)].tolist()
        loss_sum, seen = 0.0, 0
        for step in tqdm(range(steps), leave=False, unit="batch", disable=not job.main):
            idx = perm[step * recipe.batch_size : (step + 1) * recipe.batch_size]
            codes, lengths = encode_batch([names[i] for i in idx])
            logits = trained(codes.to(run.device), lengths)
            y = targets[idx].to(run.device)
            loss = F.cross_entropy(
                logits, y, weight=class_weights, label_smoothing=recipe.label_smoothing
            )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
            loss_sum += float(loss.detach()) * len(idx)
            seen += len(idx)
        history.log(train_loss=loss_sum / seen)
        if not job.main:
            continue
        if n_val:
            probs = predict_names(model, [names[i] for i in val_idx], run.device)
            y_val = targets[val_idx]
            acc = last_acc = float((probs.argmax(1) == y_val).float().mean())
            nll = float(F.nll_loss(torch.log(probs.clamp_min(1e-12)), y_val))
            history.log(val_loss=nll, val_accuracy=acc)
            bar.set_postfix(val_accuracy=f"{acc:.4f}")
            if recipe.select_epoch and (best is None or acc >= best[0]):
                best = (acc, {k: v.detach().clone() for k, v in model.state_dict().items()})
        else:
            held = evaluate_names(model, labels, run.data_dir, run.device)
            history.log(test_loss=held["loss"], test_accuracy=held["accuracy"])
    if best is not None:
        model.load_state_dict(best[1])
    if not job.main:
        return run.finish(model, {}, history)
    metrics = evaluate_names(model, labels, run.data_dir, run.device)
    counts = Counter(row_labels)
    card = {
        "task": "surname -> country of origin (18 classes)",
        "architecture": "NameGRU",
        "config": asdict(config),
        "labels": labels,
        "label_counts_train": {label: counts[label] for label in labels},
        "preprocessing": PREPROCESSING,
        "metrics": {
            **{f"test_{k}": round(v, 6) if isinstance(v, float) else v for k, v in metrics.items()},
            **({"val_accuracy": round(best[0] if best else last_acc, 6)} if n_val else {}),
        },
        "data": {"dir": "names", "sha256": checksums(names_paths(run.data_dir))},
        "hyperparameters": asdict(recipe),
    }
    return run.finish(model, card, history)
