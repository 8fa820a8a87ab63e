"""Training digits rendered as uploads: what the steps do to a digit, and pools that repeat."""

from pathlib import Path

import numpy as np
import pytest
import torch

from models import ResNet, ResNetConfig
from training import uploads
from training.data import load_mnist


@pytest.fixture(scope="module")
def mnist(data_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    train = load_mnist(data_dir, "train")
    return train.images[:600].numpy(), train.labels[:600].numpy()


def first(mnist: tuple[np.ndarray, np.ndarray], label: int) -> np.ndarray:
    images, labels = mnist
    return images[int(np.flatnonzero(labels == label)[0])].astype(np.float32) / 255


def test_a_continental_one_gains_a_stroke_down_to_the_left_of_its_top(mnist) -> None:
    one = first(mnist, 1)
    flagged = uploads.continental_one(one, np.random.default_rng(0), length=0.5, angle=45)
    added = (flagged > 0.5) & (one < 0.2)
    rows = np.flatnonzero(one.max(axis=1) > 0.3)
    ys, xs = np.nonzero(added)
    assert added.sum() >= 6
    top_x = np.flatnonzero(one[rows[0]] > 0.3).mean()
    assert (xs < top_x).mean() > 0.8, "the up-stroke lies left of the stem's top"
    assert (ys < (rows[0] + rows[-1]) / 2).mean() > 0.8, "in the upper half"


def test_a_crossed_seven_gains_a_bar_across_its_stem(mnist) -> None:
    seven = first(mnist, 7)
    crossed = uploads.crossed_seven(seven, np.random.default_rng(0), length=0.5, height=0.55)
    added = (crossed > 0.5) & (seven < 0.2)
    ys, xs = np.nonzero(added)
    assert added.sum() >= 4
    assert np.ptp(xs) > 2 * max(1, np.ptp(ys)), "the bar is wider than it is tall"


def test_an_open_loop_only_takes_ink_away(mnist) -> None:
    nine = first(mnist, 9)
    opened = uploads.open_loop(nine, np.random.default_rng(0), radius=2.0)
    assert (opened <= nine).all() and opened.sum() < nine.sum()


def test_every_sample_is_in_the_form_the_net_reads(mnist) -> None:
    images, labels = mnist
    for i in range(40):
        x = uploads.sample(images[i], int(labels[i]), seed=5, index=i)
        assert x.shape == (28, 28) and x.dtype == np.uint8
        rows, cols = np.flatnonzero(x.any(axis=1)), np.flatnonzero(x.any(axis=0))
        assert max(rows[-1] - rows[0], cols[-1] - cols[0]) + 1 <= 22, "boxed as MNIST's digits"
        assert x.max() >= 200 and x[0].max() == 0, "ink bright on black"


def test_the_steps_vary_the_uploads_polarity_size_and_format(mnist) -> None:
    images, labels = mnist
    taken = []
    for i in range(200):
        grey, steps = uploads.render(images[i], int(labels[i]), np.random.default_rng((1, i)))
        taken += steps
        assert grey.dtype == np.uint8 and min(grey.shape) >= 8
    named = set(taken)
    assert {"light-on-dark", "jpeg", "low-resolution", "binarise", "elastic"} <= named
    assert {step.name for step in uploads.STEPS} - named <= {"crossed-seven", "open-loop"}


def test_a_pool_is_the_same_however_it_is_made(mnist, tmp_path: Path) -> None:
    images, labels = mnist
    whole = uploads.pool(images[:50], labels[:50], seed=3, cache=tmp_path, progress=False)
    assert list(tmp_path.iterdir()), "cached"
    again = uploads.pool(images[:50], labels[:50], seed=3, cache=None, progress=False)
    one_by_one = np.stack([uploads.sample(images[i], int(labels[i]), 3, i) for i in range(50)])
    assert np.array_equal(whole, again) and np.array_equal(whole, one_by_one)
    other = uploads.pool(images[:50], labels[:50], seed=4, cache=None, progress=False)
    assert not np.array_equal(whole, other)


def test_the_card_lists_every_step_with_its_parameters() -> None:
    listed = uploads.card()
    assert [s["name"] for s in listed] == [s.name for s in uploads.STEPS]
    assert all(0 < s["p"] <= 1 for s in listed)


def test_a_resnet_detector_leaves_the_digits_first_label() -> None:
    torch.manual_seed(0)
    plain = ResNet(ResNetConfig()).eval()
    with_detector = ResNet(ResNetConfig(detector=8)).eval()
    missing, _ = with_detector.load_state_dict(plain.state_dict(), strict=False)
    assert missing and all(k.startswith("detector.") for k in missing)
    x = torch.randn(16, 1, 28, 28)
    with torch.no_grad():
        logits, mixed = plain(x), with_detector(x)
    assert torch.equal(logits.argmax(1), mixed.argmax(1))
    assert torch.allclose(mixed.exp().sum(1), torch.ones(16), atol=1e-5)


def test_the_digit_recipe_reproduces_its_checkpoint(
    tmp_path: Path, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The default recipe, cut small, run twice: the same weights to the bit (the card's sha256),
    the upload pools cached after the first run and found by the second."""
    from models.checkpoint import load_checkpoint
    from training.__main__ import main

    monkeypatch.setenv("TINYZOO_CACHE", str(tmp_path / "cache"))
    small = {"train_limit": 512, "val_size": 200, "outliers": 256, "detector_epochs": 1}
    cards = []
    for run in ("a", "b"):
        args = ["digit-resnet", "--out", str(tmp_path / run), "--data-dir", str(data_dir)]
        args += ["--epochs", "1"]
        for key, value in small.items():
            args += ["--set", f"{key}={value}"]
        assert main(args) == 0
        cards.append(load_checkpoint(tmp_path / run / "digit-resnet").card)
    assert cards[0]["weights_sha256"] == cards[1]["weights_sha256"]
    assert cards[0]["config"]["detector"] == 128
    assert [s["name"] for s in cards[0]["uploads"]["steps"]] == [s.name for s in uploads.STEPS]
    assert "val_upload_accuracy" in cards[0]["history"]
    assert len(list((tmp_path / "cache").iterdir())) == 4  # two copies, held-out, non-digits
