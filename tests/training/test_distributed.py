"""The recipes under torchrun: two processes (gloo on CPU) train one model on different data."""

import os
import subprocess
import sys
from pathlib import Path

from models.checkpoint import load_checkpoint


def test_two_processes_shard_the_data_and_rank_0_writes_the_checkpoint(
    tmp_path: Path, data_dir: Path
) -> None:
    torchrun = Path(sys.executable).with_name("torchrun")
    out = tmp_path / "weights"
    result = subprocess.run(
        [
            str(torchrun),
            "--standalone",
            "--nproc_per_node",
            "2",
            "-m",
            "training",
            "digit-resnet",
            "--device",
            "cpu",
            "--threads",
            "1",
            "--epochs",
            "1",
            "--set",
            "train_limit=2000",
            "--set",
            "val_size=500",
            "--data-dir",
            str(data_dir),
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=240,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    checkpoint = load_checkpoint(out / "digit-resnet")
    shards = checkpoint.card["distributed"]["shards"]
    assert checkpoint.card["distributed"]["world_size"] == 2
    assert [s["rank"] for s in shards] == [0, 1]
    assert [s["examples"] for s in shards] == [1000, 1000]
    assert not set(shards[0]["first"]) & set(shards[1]["first"])
    assert result.stdout.count('"name": "digit-resnet"') == 1
