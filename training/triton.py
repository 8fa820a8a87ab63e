"""Triton model repository layout: ``OUT/NAME/config.pbtxt``, ``labels.txt``, ``1/model.onnx``.

The configuration is protobuf text format (Triton's ``ModelConfig``): the ONNX Runtime
backend, the largest batch, dynamic batching on, and each tensor's name, type and shape
without the batch axis. Entries that are not Triton's own (a calibration map to apply to the
outputs) go in ``parameters``, which the backend ignores and clients can read through the
model's configuration.
"""

import json
from collections.abc import Sequence
from pathlib import Path

from training.export_graphs import TensorSpec

PLATFORM = "onnxruntime_onnx"
MODEL_FILE = "model.onnx"
LABELS_FILE = "labels.txt"
CONFIG_FILE = "config.pbtxt"


def _quote(text: str) -> str:
    """A protobuf text-format string literal."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _ints(values: Sequence[int]) -> str:
    return f"[ {', '.join(str(v) for v in values)} ]" if values else "[ ]"


def _tensor(spec: TensorSpec) -> str:
    lines = [
        f"    name: {_quote(spec.name)}",
        f"    data_type: {spec.data_type}",
        f"    dims: {_ints(spec.dims)}",
    ]
    if spec.reshape is not None:
        lines.append(f"    reshape: {{ shape: {_ints(spec.reshape)} }}")
    if spec.labels:
        lines.append(f"    label_filename: {_quote(LABELS_FILE)}")
    return "  {\n" + "\n".join(lines) + "\n  }"


def config_pbtxt(
    name: str,
    max_batch_size: int,
    inputs: Sequence[TensorSpec],
    outputs: Sequence[TensorSpec],
    parameters: dict[str, str] | None = None,
) -> str:
    """The text of a model's ``config.pbtxt``."""
    parts = [
        f"name: {_quote(name)}",
        f"platform: {_quote(PLATFORM)}",
        f"max_batch_size: {max_batch_size}",
        "input [\n" + ",\n".join(_tensor(t) for t in inputs) + "\n]",
        "output [\n" + ",\n".join(_tensor(t) for t in outputs) + "\n]",
        "dynamic_batching { }",
    ]
    for key, value in (parameters or {}).items():
        parts.append(
            f"parameters {{\n  key: {_quote(key)}\n  value: {{ string_value: {_quote(value)} }}\n}}"
        )
    return "\n".join(parts) + "\n"


def write_repository_entry(
    model_dir: Path, version: int, config: str, labels: Sequence[str]
) -> Path:
    """Fill ``model_dir`` with its config and labels; return the model file's path to write."""
    (model_dir / str(version)).mkdir(parents=True, exist_ok=True)
    (model_dir / CONFIG_FILE).write_text(config, encoding="utf-8")
    (model_dir / LABELS_FILE).write_text("".join(f"{label}\n" for label in labels), "utf-8")
    return model_dir / str(version) / MODEL_FILE


def calibration_parameter(calibration: object) -> dict[str, str]:
    """A calibration entry the graph does not apply, as a ``parameters`` entry (JSON)."""
    return {"calibration": json.dumps(calibration, sort_keys=True)}
