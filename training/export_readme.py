"""The README.md of an exported model: its tensors, preprocessing, calibration and check."""

import json
from typing import Any

import torch

from training.export_check import CheckResult
from training.export_graphs import ExportGraph, TensorSpec, temperature


def _shape(spec: TensorSpec) -> str:
    """The graph's shape of a tensor, batch axis first."""
    dims = spec.dims if spec.reshape is None else spec.reshape
    return "[" + ", ".join(str(d) for d in (-1, *dims)) + "]"


def _calibration(card: dict[str, Any]) -> str:
    calibration = card.get("calibration")
    temp = temperature(card)
    if calibration is None:
        return "None in the card: the probabilities are the plain softmax of the logits."
    if temp is not None:
        return (
            f"Temperature scaling, applied inside the graph: softmax(logits / {temp:g}). "
            "The probabilities are the calibrated ones."
        )
    return (
        "**Not applied inside the graph**: the probabilities are the plain softmax of the "
        "logits. Apply the card's calibration to them yourself; the entry is below and in "
        "`config.pbtxt` as the parameter `calibration` (JSON):\n\n"
        f"```json\n{json.dumps(calibration, indent=2)}\n```"
    )


def entry_readme(
    name: str,
    card: dict[str, Any],
    graph: ExportGraph,
    version: int,
    max_batch_size: int,
    check: CheckResult,
    opset: int,
) -> str:
    """Markdown for ``OUT/NAME/README.md``."""
    rows = [
        f"| `{t.name}` | {kind} | {t.data_type.removeprefix('TYPE_')} | `{_shape(t)}` | "
        f"{t.description} |"
        for kind, specs in (("input", graph.inputs), ("output", graph.outputs))
        for t in specs
    ]
    return "\n".join(
        [
            f"# {name}: ONNX export",
            "",
            f"{card['task']}. Exported from the checkpoint whose weights have sha256 "
            f"`{card['weights_sha256']}` (created {card.get('created', 'unknown')}), with "
            f"torch {torch.__version__.split('+')[0]}, ONNX opset {opset}. A Triton model "
            f"repository entry: `config.pbtxt`, `labels.txt` and `{version}/model.onnx`; the "
            f"batch axis (-1) takes 1 to {max_batch_size} rows in Triton, any number in "
            "ONNX Runtime.",
            "",
            "| tensor | role | type | shape in the graph | what it holds |",
            "|---|---|---|---|---|",
            *rows,
            "",
            "Preprocessing (the card's): "
            + "; ".join(f"{k}: {v}" for k, v in card.get("preprocessing", {}).items())
            + ".",
            "",
            "Calibration: " + _calibration(card),
            "",
            f"Check: {check.summary()}.",
            "",
        ]
    )
