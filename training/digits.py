"""Recipes for the MNIST digit nets (``digit-inception``, ``digit-resnet``)."""

import math
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from models import InceptionNet, InceptionNetConfig, ResNet, ResNetConfig
from models.checkpoint import load_checkpoint
from models.detector import DigitDetector
from training import uploads
from training.common import (
    History,
    Run,
    apply_overrides,
    data_generator,
    holdout_split,
    seed_everything,
)
from training.data import MnistSplit, checksums, load_mnist, mnist_paths
from training.outliers import outliers as make_outliers

MEAN, STD = 0.1307, 0.3081
LABELS = [str(d) for d in range(10)]
PREPROCESSING = {
    "input": "28x28 greyscale, ink bright on dark, as MNIST",
    "digit_box": 20,
    "centre": "centre of mass at the centre of the 28x28 field",
    "scale": "pixel / 255",
    "mean": MEAN,
    "std": STD,
}
DIGIT_MODELS: dict[str, tuple[str, type[nn.Module], type[Any]]] = {
    "digit-inception": ("InceptionNet", InceptionNet, InceptionNetConfig),
    "digit-resnet": ("ResNet", ResNet, ResNetConfig),
}


@dataclass(frozen=True)
class DigitRecipe:
    """Optimisation settings for one digit training run."""

    epochs: int
    batch_size: int
    optimizer: str  # "sgd" (the lecture's) or "adamw"
    lr: float
    momentum: float = 0.0
    weight_decay: float = 0.0
    one_cycle: bool = False
    label_smoothing: float = 0.0
    augment: bool = False
    ema_decay: float = 0.0  # exponential moving average of the weights; 0 = off
    val_size: int = 0  # carved from train for model selection; 0 = none
    train_limit: int = 0  # use only this many training images (0 = all), for quick runs
    outliers: int = 0  # pool of generated non-digits (training.outliers) for outlier exposure
    outlier_batch: int = 64  # outliers beside each batch of digits
    outlier_weight: float = 0.5  # weight of their loss: cross-entropy to the even spread
    init: str = ""  # start from this checkpoint's weights (a folder), to fine-tune; "" = random
    detector: int = 0  # > 0: a digit detector of this many units on the net's features
    detector_epochs: int = 0  # its epochs after the net's (0: the recipe's epochs, with init)
    uploads: int = 0  # renderings of each training digit as an upload (training.uploads); 0 = off
    upload_batch: int = 64  # upload-rendered digits beside each batch of MNIST digits


RECIPES = {
    "lecture": DigitRecipe(epochs=10, batch_size=64, optimizer="sgd", lr=0.01, momentum=0.5),
    "default": DigitRecipe(
        epochs=30,
        batch_size=128,
        optimizer="adamw",
        lr=4e-3,
        weight_decay=5e-4,
        one_cycle=True,
        label_smoothing=0.05,
        augment=True,
        ema_decay=0.999,
        val_size=5000,
        outliers=30_000,
        outlier_weight=0.0,
        uploads=2,
        detector=128,
        detector_epochs=4,
    ),
}
"""``default`` trains the net on MNIST and on MNIST rendered as uploads (``training.uploads``),
then a digit detector on its frozen features (``models.detector``): digits, MNIST and uploads,
against generated non-digits, plain and rendered as uploads. No outlier exposure of the net
itself (``outlier_weight`` 0): it cost the digits accuracy."""


def normalize(images: torch.Tensor) -> torch.Tensor:
    """uint8 N x 28 x 28 -> float N x 1 x 28 x 28, scaled and normalised as the card says."""
    return ((images.float() / 255.0 - MEAN) / STD).unsqueeze(1)


def augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Random small affine warp and stroke-width change of B x 1 x 28 x 28 images in [0, 1].

    Rotation +-12 degrees, scale 0.88-1.12, shear +-0.15, shift +-2 px; a third of the batch is
    thickened and a sixth thinned by a partial 3x3 dilation / erosion, so the net sees the pen
    widths of real writing.
    """
    b = x.shape[0]

    def uniform(lo: float, hi: float) -> torch.Tensor:
        return torch.rand(b, generator=gen) * (hi - lo) + lo

    angle = uniform(-12, 12) * math.pi / 180
    scale = uniform(0.88, 1.12)
    shear = uniform(-0.15, 0.15)
    tx, ty = uniform(-0.14, 0.14), uniform(-0.14, 0.14)
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack(
        [torch.stack([cos, -sin + shear, tx], 1), torch.stack([sin, cos, ty], 1)], 1
    )  # B x 2 x 3
    grid = F.affine_grid(theta.to(x.device), list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, align_corners=False, padding_mode="zeros")
    choice = torch.rand(b, generator=gen).to(x.device).view(b, 1, 1, 1)
    amount = torch.rand(b, generator=gen).to(x.device).view(b, 1, 1, 1)
    dilated = torch.maximum(x, amount * F.max_pool2d(x, 3, 1, 1))
    eroded = (1 - 0.6 * amount) * x + 0.6 * amount * -F.max_pool2d(-x, 3, 1, 1)
    x = torch.where(choice < 0.33, dilated, torch.where(choice > 5 / 6, eroded, x))
    return x


@torch.inference_mode()
def float_logits(model: nn.Module, x: torch.Tensor, device: torch.device) -> torch.Tensor:
    """N x 10 logits (float32, on the CPU) of ``model`` on float N x 1 x 28 x 28 images in
    [0, 1], normalised as the card says, 1,000 at a time."""
    model.eval()
    out = [
        model(((x[s : s + 1000] - MEAN) / STD).to(device)).float().cpu()
        for s in range(0, len(x), 1000)
    ]
    return torch.cat(out)


def digit_logits(model: nn.Module, images: torch.Tensor, device: torch.device) -> torch.Tensor:
    """N x 10 logits (float32, on the CPU) of ``model`` on uint8 N x 28 x 28 images."""
    return float_logits(model, (images.float() / 255.0).unsqueeze(1), device)


def evaluate_digits(
    model: nn.Module, images: torch.Tensor, labels: torch.Tensor, device: torch.device
) -> dict[str, float]:
    """Accuracy and mean cross-entropy of ``model`` on uint8 images."""
    return digit_metrics(digit_logits(model, images, device), labels)


def digit_metrics(logits: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    """Accuracy and mean cross-entropy of N x 10 logits against N labels."""
    return {
        "accuracy": int((logits.argmax(1) == labels).sum()) / len(labels),
        "loss": float(F.cross_entropy(logits, labels)),
    }


def held_out_digits(card: dict[str, Any], train: MnistSplit) -> MnistSplit:
    """The training images a digit checkpoint kept from its weights: its run's ``val_size``
    first indices of the seed's ``holdout_split``, as training drew them (empty when 0)."""
    val_size = int(card["hyperparameters"].get("val_size", 0))
    val_idx, _ = holdout_split(len(train.images), val_size, data_generator(int(card["seed"])))
    return MnistSplit(train.images[val_idx], train.labels[val_idx])


def upload_pools(
    recipe: DigitRecipe,
    run: Run,
    train: MnistSplit,
    train_idx: torch.Tensor,
    val_idx: torch.Tensor,
    x_out: torch.Tensor | None,
) -> dict[str, torch.Tensor]:
    """The digits (and non-digits) rendered as uploads and preprocessed as the service does
    (``training.uploads``), as float N x 1 x 28 x 28 in [0, 1]: ``train`` (``recipe.uploads``
    renderings of each training digit, labels in ``train_labels``), ``val`` (one of each
    held-out digit, never trained on: a held-out curve of upload accuracy) and ``outliers``
    (one of each non-digit, for the detector). Empty when the recipe has no uploads."""
    if not recipe.uploads:
        return {}
    cache = None if run.dry_run else uploads.cache_dir()
    limit = 256 if run.dry_run else None
    train_idx, val_idx = train_idx[:limit], val_idx[:limit]
    images, labels = train.images.numpy(), train.labels.numpy()
    out: dict[str, torch.Tensor] = {}

    def as_float(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(a).float().div(255)[:, None]

    copies = [
        uploads.pool(images[train_idx], labels[train_idx], run.seed * 100 + k, cache)
        for k in range(recipe.uploads)
    ]
    out["train"] = as_float(np.concatenate(copies))
    out["train_labels"] = train.labels[train_idx].repeat(recipe.uploads)
    if len(val_idx):
        out["val"] = as_float(uploads.pool(images[val_idx], labels[val_idx], run.seed + 7, cache))
        out["val_labels"] = train.labels[val_idx]
    if x_out is not None:
        odd = np.round(x_out[:limit, 0].numpy() * 255).astype(np.uint8)
        out["outliers"] = as_float(uploads.pool(odd, None, run.seed + 11, cache))
    return out


def with_net(model: nn.Module, source: nn.Module) -> nn.Module:
    """``model`` holding ``source``'s digit weights; its detector, if it has one, new (any
    detector ``source`` had is dropped: a detector belongs to the features it was trained on)."""
    weights = {k: v for k, v in source.state_dict().items() if not k.startswith("detector.")}
    missing, unexpected = model.load_state_dict(weights, strict=False)
    assert not unexpected and all(k.startswith("detector.") for k in missing), missing
    return model


def train_digits(run: Run) -> dict[str, Any]:
    """Train one digit net with ``run.recipe`` and write its checkpoint."""
    _arch, module_cls, config_cls = DIGIT_MODELS[run.name]
    recipe = apply_overrides(RECIPES[run.recipe], run.overrides)
    gen = seed_everything(run.seed)
    config = config_cls()
    model = module_cls(config).to(run.device)
    origin: dict[str, Any] = {}
    if recipe.detector and not recipe.outliers:
        raise ValueError("detector: needs outliers > 0 (the non-digits it learns to tell apart)")
    if recipe.detector and not recipe.init and not recipe.detector_epochs:
        raise ValueError("detector: on a trained net: init=, or detector_epochs after training")
    alone = bool(recipe.detector and recipe.init and not recipe.detector_epochs)
    """A new detector on the start's frozen net, and nothing else trained."""
    if recipe.init:  # fine-tune: the same architecture and config, its weights as the start
        start = load_checkpoint(Path(recipe.init), run.device)
        config = config_cls(**{**start.card["config"], "detector": recipe.detector if alone else 0})
        model = with_net(module_cls(config).to(run.device), start.model)
        origin = {"fine_tuned_from": {"weights_sha256": start.card.get("weights_sha256")}}

    train, test = load_mnist(run.data_dir, "train"), load_mnist(run.data_dir, "test")
    if run.dry_run:  # one batch, and a quick look at a slice of the held-out set
        test = MnistSplit(test.images[:500], test.labels[:500])
    val_idx, train_idx = holdout_split(len(train.images), recipe.val_size, gen)
    if recipe.train_limit:
        train_idx = train_idx[: recipe.train_limit]
    x_train = (train.images[train_idx].float() / 255.0).unsqueeze(1).to(run.device)
    y_train = train.labels[train_idx].to(run.device)
    pool = min(recipe.outliers, recipe.outlier_batch) if run.dry_run else recipe.outliers
    x_out = (
        torch.from_numpy(make_outliers(pool, seed=run.seed)).float().div(255)[:, None]
        if pool
        else None
    )  # N x 1 x 28 x 28
    ups = upload_pools(recipe, run, train, train_idx, val_idx, x_out)
    if alone:
        assert x_out is not None
        history = train_detector(model, x_train, x_out, recipe, run, ups)
        val = evaluate_digits(model, train.images[val_idx], train.labels[val_idx], run.device)
        return finish_digits(run, model, config, recipe, test, history, val["accuracy"], [], origin)
    job = run.dist
    steps_per_epoch = math.ceil(len(x_train) // job.world / recipe.batch_size)
    if run.dry_run:
        steps_per_epoch = 1
        recipe = replace(recipe, epochs=1, detector_epochs=min(1, recipe.detector_epochs))

    optimizer: torch.optim.Optimizer
    if recipe.optimizer == "sgd":
        optimizer = torch.optim.SGD(model.parameters(), lr=recipe.lr, momentum=recipe.momentum)
    else:
        optimizer = torch.optim.AdamW(
            model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay
        )
    scheduler = (
        torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=recipe.lr, epochs=recipe.epochs, steps_per_epoch=steps_per_epoch
        )
        if recipe.one_cycle
        else None
    )

    ema = (
        torch.optim.swa_utils.AveragedModel(
            model, multi_avg_fn=torch.optim.swa_utils.get_ema_multi_avg_fn(recipe.ema_decay)
        )
        if recipe.ema_decay
        else None
    )
    evaluated: nn.Module = ema.module if ema is not None else model
    trained = job.wrap(model, run.device)
    augment_gen = torch.Generator().manual_seed(run.seed * 1009 + job.rank)
    history = History()
    best: tuple[float, float, dict[str, torch.Tensor]] | None = None
    """The kept epoch's score, its held-out MNIST accuracy, and its weights."""
    shards: list[dict[str, Any]] = []
    exposure = x_out is not None and recipe.outlier_weight > 0
    bar = tqdm(range(recipe.epochs), desc=run.name, unit="epoch", disable=not job.main)
    for epoch in bar:
        trained.train()
        perm = job.order(len(x_train), epoch, run.seed, gen).to(run.device)
        if epoch == 0:
            mine = train_idx[perm.cpu()].tolist()
            shards = job.gather({"rank": job.rank, "examples": len(mine), "first": mine[:8]})
        loss_sum, seen = 0.0, 0
        for step in tqdm(range(steps_per_epoch), leave=False, unit="batch", disable=not job.main):
            idx = perm[step * recipe.batch_size : (step + 1) * recipe.batch_size]
            x, y = x_train[idx], y_train[idx]
            if recipe.augment:
                x = augment(x, augment_gen)
            if ups:  # beside them, digits as the service reads uploads (augmented already)
                pick = torch.randint(
                    len(ups["train"]), (recipe.upload_batch,), generator=augment_gen
                )
                x = torch.cat([x, ups["train"][pick].to(run.device)])
                y = torch.cat([y, ups["train_labels"][pick].to(run.device)])
            if exposure:  # outlier exposure: digits, then non-digits, in one pass
                assert x_out is not None
                pick = torch.randint(len(x_out), (recipe.outlier_batch,), generator=augment_gen)
                odd = augment(x_out[pick].to(run.device), augment_gen)
                logits = trained((torch.cat([x, odd]) - MEAN) / STD)
                logits, odd_logits = logits[: len(x)], logits[len(x) :]
                loss = F.cross_entropy(logits, y, label_smoothing=recipe.label_smoothing)
                spread = -F.log_softmax(odd_logits, dim=1).mean()
                loss = loss + recipe.outlier_weight * spread
            else:
                logits = trained((x - MEAN) / STD)
                loss = F.cross_entropy(logits, y, label_smoothing=recipe.label_smoothing)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
            if ema is not None:
                ema.update_parameters(model)
            loss_sum += float(loss.detach()) * len(idx)
            seen += len(idx)
        history.log(train_loss=loss_sum / seen)
        if not job.main:
            continue
        if recipe.val_size:
            val = evaluate_digits(
                evaluated, train.images[val_idx], train.labels[val_idx], run.device
            )
            history.log(val_loss=val["loss"], val_accuracy=val["accuracy"])
            score = val["accuracy"]
            if "val" in ups:  # the same held-out digits, as uploads
                up = digit_metrics(
                    float_logits(evaluated, ups["val"], run.device), ups["val_labels"]
                )
                history.log(val_upload_loss=up["loss"], val_upload_accuracy=up["accuracy"])
                score = (score + up["accuracy"]) / 2
            bar.set_postfix(val=f"{score:.4f}")
            if best is None or score >= best[0]:
                state = {k: v.detach().clone() for k, v in evaluated.state_dict().items()}
                best = (score, val["accuracy"], state)
        else:
            held = evaluate_digits(evaluated, test.images, test.labels, run.device)
            history.log(test_loss=held["loss"], test_accuracy=held["accuracy"])
    val_accuracy = None
    if best is not None:
        _, val_accuracy, state = best
        evaluated.load_state_dict(state)
    if recipe.detector:  # a detector on the trained net's features
        assert x_out is not None
        config = replace(config, detector=recipe.detector)
        net = with_net(module_cls(config).to(run.device), evaluated)
        detector_history = train_detector(net, x_train, x_out, recipe, run, ups)
        for key, values in detector_history.series.items():
            history.series[f"detector_{key}"] = values
        evaluated = net
    return finish_digits(
        run, evaluated, config, recipe, test, history, val_accuracy, shards, origin
    )


def finish_digits(
    run: Run,
    model: nn.Module,
    config: Any,
    recipe: DigitRecipe,
    test: MnistSplit,
    history: History,
    val_accuracy: float | None,
    shards: list[dict[str, Any]],
    origin: dict[str, Any],
) -> dict[str, Any]:
    """Measure the trained net on the test set and write its checkpoint and card."""
    job = run.dist
    if not job.main:
        return run.finish(model, {}, history)
    arch = DIGIT_MODELS[run.name][0]
    test_metrics = evaluate_digits(model, test.images, test.labels, run.device)
    card = {
        "task": "MNIST handwritten digit classification (10 classes)",
        "architecture": arch,
        "config": asdict(config),
        "labels": LABELS,
        "preprocessing": PREPROCESSING,
        "metrics": {
            "test_accuracy": round(test_metrics["accuracy"], 6),
            "test_loss": round(test_metrics["loss"], 6),
            "test_examples": len(test.images),
            **({"val_accuracy": round(val_accuracy, 6)} if val_accuracy is not None else {}),
        },
        "data": {"dir": "mnist", "sha256": checksums(mnist_paths(run.data_dir))},
        "hyperparameters": asdict(recipe),
        **(
            {"uploads": {"steps": uploads.card(), "module": "training.uploads"}}
            if recipe.uploads
            else {}
        ),
        **origin,
        **({"distributed": {"shards": shards}} if job.world > 1 else {}),
    }
    return run.finish(model, card, history)


def train_detector(
    model: nn.Module,
    x_train: torch.Tensor,
    x_out: torch.Tensor,
    recipe: DigitRecipe,
    run: Run,
    ups: dict[str, torch.Tensor] | None = None,
) -> History:
    """Train ``model.detector`` alone (``models.detector``): digits (label 1) against generated
    non-digits (label 0), both augmented as the net's training was, on the frozen net's
    features; with upload pools (``upload_pools``), digits and non-digits rendered as uploads
    beside them, so that what the service makes of a real upload reads as a digit. Each batch
    weighs the two kinds equally, so the detector's odds are for an even prior; the calibration
    fitted afterwards sets them for the mix a service sees."""
    detector = model.detector
    assert isinstance(detector, DigitDetector)
    ups = ups or {}
    model.requires_grad_(False)
    detector.requires_grad_(True)
    gen = torch.Generator().manual_seed(run.seed * 1009 + 17)

    def features(x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            z: torch.Tensor = model.features(((x - MEAN) / STD).to(run.device))  # type: ignore[operator]
            return z

    digits_all = torch.cat([x_train.cpu(), ups["train"]]) if "train" in ups else x_train.cpu()
    odd_all = torch.cat([x_out, ups["outliers"]]) if "outliers" in ups else x_out
    sample = torch.randperm(len(digits_all), generator=gen)[:5000]
    sample_out = torch.randperm(len(odd_all), generator=gen)[:5000]
    detector.standardise_on(
        torch.cat([features(digits_all[sample]), features(odd_all[sample_out])])
    )
    epochs = recipe.detector_epochs or recipe.epochs
    steps = max(1, len(x_train) // recipe.batch_size)
    if run.dry_run:
        steps, epochs = 1, 1
    optimizer = torch.optim.AdamW(
        detector.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay
    )
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=recipe.lr, epochs=epochs, steps_per_epoch=steps
    )
    history = History()
    model.eval()  # the net is frozen: no dropout or batch statistics to update
    for _ in tqdm(range(epochs), desc=run.name, unit="epoch"):
        perm = torch.randperm(len(x_train), generator=gen)
        loss_sum = 0.0
        for step in tqdm(range(steps), leave=False, unit="batch"):
            digits = augment(
                x_train[perm[step * recipe.batch_size : (step + 1) * recipe.batch_size]], gen
            )
            pick = torch.randint(len(x_out), (recipe.outlier_batch,), generator=gen)
            odd = augment(x_out[pick].to(run.device), gen)
            if "train" in ups:
                pick = torch.randint(len(ups["train"]), (recipe.upload_batch,), generator=gen)
                digits = torch.cat([digits, ups["train"][pick].to(run.device)])
            if "outliers" in ups:
                pick = torch.randint(len(ups["outliers"]), (recipe.outlier_batch,), generator=gen)
                odd = torch.cat([odd, ups["outliers"][pick].to(run.device)])
            z = features(torch.cat([digits, odd]))
            log_odds = detector(z)
            target = torch.cat([torch.ones(len(digits)), torch.zeros(len(odd))]).to(run.device)
            each = F.binary_cross_entropy_with_logits(log_odds, target, reduction="none")
            loss = each[: len(digits)].mean() + each[len(digits) :].mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            loss_sum += float(loss.detach())
        history.log(train_loss=loss_sum / steps)
    model.requires_grad_(True)
    return history
