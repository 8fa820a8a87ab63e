"""Every recipe's --dry-run, the lecture-12 walkthroughs, and data errors that name the file."""

import argparse
import gzip
import shutil
from pathlib import Path

import pytest
import torch

from models.checkpoint import load_checkpoint
from tests.conftest import WEIGHTS
from training.__main__ import MODEL_NAMES, build_parser, main
from training.data import DataError, load_mnist, load_names
from training.walkthroughs import rnn_shapes, rnncell_shapes, train_hello_model


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_dry_run_writes_a_loadable_checkpoint(
    name: str, data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([name, "--dry-run", "--device", "cpu", "--data-dir", str(data_dir)]) == 0
    out = capsys.readouterr().out
    assert f"dry run ok: {name} trained on one batch" in out
    assert "tinyzoo-dry-run-" not in out, "no path to a directory that is already removed"


def test_every_option_says_what_it_does() -> None:
    (commands,) = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    for command in commands.choices.values():
        for action in command._actions:
            name = "/".join(action.option_strings) or action.dest
            assert action.help, f"{command.prog} {name} has no help"


def test_training_writes_card_curves_and_weights(tmp_path: Path, data_dir: Path) -> None:
    assert main(["char-rnn-hello", "--out", str(tmp_path), "--data-dir", str(data_dir)]) == 0
    checkpoint = load_checkpoint(tmp_path / "char-rnn-hello")
    card = checkpoint.card
    assert card["metrics"]["predicted"] == "ohlol"
    assert card["command"].startswith("python -m training char-rnn-hello")
    assert {"torch", "python"} <= set(card["versions"])
    assert (tmp_path / "char-rnn-hello" / "curves.png").stat().st_size > 1000


@pytest.mark.parametrize("variant", ["rnncell", "rnn", "embedding"])
def test_hello_recipes_learn_ohlol(variant: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["hello", "--variant", variant]) == 0
    out = capsys.readouterr().out
    assert out.count("predicted string:") == 15
    assert out.rstrip().endswith("'hello' -> 'ohlol'")


def test_hello_model_is_deterministic_for_a_seed() -> None:
    _, first = train_hello_model("embedding", seed=3, verbose=False)
    _, second = train_hello_model("embedding", seed=3, verbose=False)
    assert first == second


def test_rnncell_walkthrough_keeps_one_hidden_state_per_step() -> None:
    assert rnncell_shapes(batch_size=1, seq_len=5, input_size=4, hidden_size=2) == [(1, 2)] * 5


def test_rnn_walkthrough_shapes_with_layers() -> None:
    shapes = rnn_shapes(batch_size=3, seq_len=5, input_size=4, hidden_size=2, num_layers=2)
    assert shapes == {"input": (3, 5, 4), "output": (3, 5, 2), "hidden": (2, 3, 2)}


def test_missing_data_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"t10k-images-idx3-ubyte\.gz: file not found"):
        load_mnist(tmp_path, "test")


def test_corrupt_data_files_are_named(tmp_path: Path, data_dir: Path) -> None:
    (tmp_path / "mnist").mkdir()
    for f in (data_dir / "mnist").glob("t10k-*.gz"):
        shutil.copy(f, tmp_path / "mnist" / f.name)
    images = tmp_path / "mnist" / "t10k-images-idx3-ubyte.gz"
    images.write_bytes(images.read_bytes()[:5000])
    with pytest.raises(DataError, match=r"t10k-images-idx3-ubyte\.gz: not a readable gzip"):
        load_mnist(tmp_path, "test")
    images.write_bytes(gzip.compress(b"\x00\x00\x08\x01" + b"\x00" * 100))
    with pytest.raises(DataError, match="IDX magic 0x801, expected 0x803"):
        load_mnist(tmp_path, "test")
    (tmp_path / "names").mkdir()
    (tmp_path / "names" / "names_test.csv.gz").write_bytes(gzip.compress(b'"Smith"\r\n'))
    with pytest.raises(DataError, match="line 1: expected 2 fields"):
        load_names(tmp_path, "test")


def test_names_reader_handles_the_quirks_of_the_real_file(data_dir: Path) -> None:
    rows = load_names(data_dir, "train")
    assert len(rows) == 13_374
    assert ("Jevolojnov,", "Russian") in rows
    assert all(name == name.strip() for name, _ in rows)
    assert len(load_names(data_dir, "train", drop_junk=True)) == 13_374 - 16


def test_a_detector_run_trains_the_detector_alone(tmp_path: Path, data_dir: Path) -> None:
    start = WEIGHTS / "digit-inception"
    args = ["digit-inception", "--out", str(tmp_path), "--data-dir", str(data_dir), "--epochs", "1"]
    settings = {
        "init": str(start),
        "detector": "8",
        "detector_epochs": "0",
        "train_limit": "256",
        "outliers": "128",
    }
    for key, value in settings.items():
        args += ["--set", f"{key}={value}"]
    assert main(args) == 0
    trained = load_checkpoint(tmp_path / "digit-inception")
    net = load_checkpoint(start).model.state_dict()
    before = {k: v for k, v in net.items() if not k.startswith("detector.")}
    after = trained.model.state_dict()
    detector = {k for k in after if k.startswith("detector.")}
    assert detector and set(after) - detector == set(before)
    for key, tensor in before.items():  # every digit weight as it was: the answers' order too
        assert torch.equal(after[key], tensor), key
    assert trained.card["config"]["detector"] == 8
    assert (
        trained.card["fine_tuned_from"]["weights_sha256"]
        == load_checkpoint(start).card["weights_sha256"]
    )


def test_a_detector_needs_a_trained_net_to_sit_on(tmp_path: Path, data_dir: Path) -> None:
    with pytest.raises(ValueError, match="detector"):
        main(
            [
                "digit-resnet",
                "--out",
                str(tmp_path),
                "--data-dir",
                str(data_dir),
                "--set",
                "detector=8",
                "--set",
                "detector_epochs=0",
            ]
        )
