"""``python -m training export NAME``: a checkpoint as a checked Triton model repository entry.

``OUT/NAME/config.pbtxt``, ``OUT/NAME/labels.txt``, ``OUT/NAME/README.md`` and
``OUT/NAME/<version>/model.onnx``, written by ``torch.onnx.export``'s ``torch.export``-based
exporter (the TorchScript-based one, ``dynamo=False``, still exists in torch 2.13 but warns
that it is deprecated and will be removed). The entry is built beside ``OUT/NAME`` and moved
into place only once ONNX Runtime has matched PyTorch on held-out data
(:mod:`training.export_check`), so a failed export never replaces a good one.
"""

import json
import logging
import shutil
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from models.checkpoint import Checkpoint, load_checkpoint
from training.export_check import EXAMPLES, CheckResult, check_onnx
from training.export_graphs import (
    EXPORTABLE,
    ExportGraph,
    digit_graph,
    name_graph,
    temperature,
)
from training.export_readme import entry_readme
from training.triton import calibration_parameter, config_pbtxt, write_repository_entry

GRAPHS: dict[str, Callable[[Checkpoint], ExportGraph]] = {
    "ResNet": digit_graph,
    "InceptionNet": digit_graph,
    "NameGRU": name_graph,
}
OPSET = 20
"""ONNX opset of the exported graphs: ONNX Runtime 1.17 and later run it (so must a Triton
server's ONNX Runtime backend)."""


__all__ = ["EXPORTABLE", "ExportError", "ExportResult", "export_model", "report", "write_onnx"]


class ExportError(Exception):
    """An export that could not be written or did not match PyTorch."""


@dataclass(frozen=True)
class ExportResult:
    """Where an export went and how it compared with PyTorch."""

    name: str
    model_path: Path
    check: CheckResult


def write_onnx(graph: ExportGraph, path: Path) -> None:
    """Export ``graph`` to one self-contained ONNX file with a dynamic batch axis."""
    exporter_log = logging.getLogger("torch.onnx")
    level = exporter_log.level
    with warnings.catch_warnings():
        # Notices about torch.export's internals (FutureWarning), raised whatever the model, and
        # that the inputs share their batch axis, as they should; the log's warnings are about
        # torchvision's operators, which these nets do not use.
        warnings.filterwarnings("ignore", category=FutureWarning)
        warnings.filterwarnings("ignore", message="# The axis name: batch will not be used")
        exporter_log.setLevel(logging.ERROR)
        try:
            torch.onnx.export(
                graph.module,
                graph.example,
                str(path),
                dynamo=True,
                input_names=[t.name for t in graph.inputs],
                output_names=[t.name for t in graph.outputs],
                dynamic_shapes=graph.dynamic_shapes,
                opset_version=OPSET,
                external_data=False,
                verbose=False,
            )
        finally:
            exporter_log.setLevel(level)


def export_model(
    name: str,
    weights_dir: Path,
    out_dir: Path,
    data_dir: Path,
    max_batch_size: int = 64,
    version: int = 1,
    examples: int = EXAMPLES,
) -> ExportResult:
    """Export ``weights_dir/name`` to ``out_dir/name``, checked; raise ExportError on a mismatch."""
    checkpoint = load_checkpoint(weights_dir / name)
    card = checkpoint.card
    if card["architecture"] not in GRAPHS:
        raise ExportError(f"{name}: {card['architecture']} nets are not exported")
    graph = GRAPHS[card["architecture"]](checkpoint)
    calibration = card.get("calibration")
    applied = temperature(card) is not None
    parameters = calibration_parameter(calibration) if calibration and not applied else {}
    config = config_pbtxt(name, max_batch_size, graph.inputs, graph.outputs, parameters)
    final = out_dir / name
    staging = out_dir / f".{name}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        model_path = write_repository_entry(staging, version, config, card["labels"])
        write_onnx(graph, model_path)
        check = check_onnx(model_path, checkpoint, data_dir, max_batch_size, examples)
        if not check.passed:
            raise ExportError(f"{name}: {check.summary()}")
        readme = entry_readme(name, card, graph, version, max_batch_size, check, OPSET)
        (staging / "README.md").write_text(readme, encoding="utf-8")
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    shutil.rmtree(final, ignore_errors=True)
    staging.rename(final)
    return ExportResult(name, final / str(version) / model_path.name, check)


def report(result: ExportResult) -> str:
    """One JSON line for the command's output."""
    check = result.check
    return json.dumps(
        {
            "name": result.name,
            "model": str(result.model_path),
            "max_abs_diff": float(f"{check.max_abs_diff:.3g}"),
            "examples": check.examples,
            "data": check.source,
            "same_top_class": round(check.argmax_agreement, 6),
        }
    )
