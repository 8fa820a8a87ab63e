"""``python -m training export``: Triton model repository entries that ONNX Runtime runs to the
same probabilities as PyTorch, on held-out data, at any batch size and (names) any lengths."""

import contextlib
import importlib.util
import io
import json
import shutil
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F
import tritonclient
from google.protobuf import text_format

from models.checkpoint import Checkpoint, load_checkpoint
from models.name_gru import NameGRU, NameGRUConfig
from models.text import normalize_name
from training import export_check
from training.__main__ import main
from training.data import load_mnist, load_names
from training.digits import normalize
from training.export import EXPORTABLE, ExportError, export_model, write_onnx
from training.export_graphs import name_graph
from training.names import encode_batch

PROJECT = Path(__file__).resolve().parents[2]
WEIGHTS = PROJECT / "weights"
DIGITS = ("digit-resnet", "digit-inception")
TOLERANCE = 1e-4
ONNX_TYPES = {"TYPE_FP32": onnx.TensorProto.FLOAT, "TYPE_INT64": onnx.TensorProto.INT64}


@pytest.fixture(scope="module")
def exported(
    tmp_path_factory: pytest.TempPathFactory, data_dir: Path
) -> tuple[Path, dict[str, Any]]:
    """Every classifier exported by the command line, and the line it printed for each."""
    out = tmp_path_factory.mktemp("exports")
    args = ["export", "all", "--out", str(out), "--data-dir", str(data_dir), "--examples", "100"]
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert main(args) == 0
    lines = [json.loads(line) for line in printed.getvalue().splitlines()]
    return out, {line["name"]: line for line in lines}


def _session(out: Path, name: str) -> ort.InferenceSession:
    return ort.InferenceSession(
        str(out / name / "1" / "model.onnx"), providers=["CPUExecutionProvider"]
    )


def _model_config() -> ModuleType:
    """Triton's ModelConfig protobuf, as tritonclient ships it (its gRPC extra not needed)."""
    path = Path(tritonclient.__file__).parent / "grpc" / "model_config_pb2.py"
    spec = importlib.util.spec_from_file_location("model_config_pb2", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_command_checks_each_export_and_prints_the_figure(
    exported: tuple[Path, dict[str, Any]],
) -> None:
    out, printed = exported
    assert set(printed) == set(EXPORTABLE)
    for name, line in printed.items():
        assert line["model"] == str(out / name / "1" / "model.onnx")
        assert line["examples"] == 100
        assert line["data"] in ("MNIST test digits", "names_test names")
        assert 0 <= line["max_abs_diff"] <= TOLERANCE
        assert line["same_top_class"] == 1.0
        readme = (out / name / "README.md").read_text()
        assert "max |diff| of probabilities" in readme
        checkpoint = load_checkpoint(WEIGHTS / name)
        if checkpoint.calibration.method == "temperature":  # applied inside the graph
            assert f"softmax(logits / {checkpoint.calibration.temperature:g}" in readme
        else:  # an isotonic map, for the client to apply
            assert "Not applied inside the graph" in readme
    assert not list(out.glob(".*.partial")), "no half-written entry is left behind"


@pytest.mark.parametrize("name", DIGITS)
def test_digit_export_matches_pytorch_on_mnist_test_digits(
    name: str, exported: tuple[Path, dict[str, Any]], data_dir: Path
) -> None:
    session = _session(exported[0], name)
    checkpoint = load_checkpoint(WEIGHTS / name)
    model, calibration = checkpoint.model, checkpoint.calibration
    divide = calibration.temperature if calibration.method == "temperature" else 1.0
    images = load_mnist(data_dir, "test").images[:200]
    for batch in (images[:1], images[1:8], images):  # dynamic batch: 1, 7 and 200
        with torch.inference_mode():
            expected = F.softmax(model(normalize(batch)) / divide, dim=1).numpy()
        (got,) = session.run(["probabilities"], {"pixels": (batch.float() / 255).numpy()})
        assert got.shape == expected.shape
        assert float(np.abs(got - expected).max()) <= TOLERANCE
        assert np.allclose(got.sum(1), 1, atol=1e-5)


def test_name_export_matches_the_packed_gru_on_mixed_lengths(
    exported: tuple[Path, dict[str, Any]], data_dir: Path
) -> None:
    session = _session(exported[0], "name-gru")
    model = load_checkpoint(WEIGHTS / "name-gru").model
    names = [normalize_name(n) for n, _ in load_names(data_dir, "test")[::20]]
    lengths = {len(n) for n in names}
    assert min(lengths) <= 3 and max(lengths) >= 12, "the batch mixes short and long names"
    for batch in (names[:1], names[1:8], names):  # dynamic batch: 1, 7 and 335, one padding
        codes, lens = encode_batch(batch)
        with torch.inference_mode():
            expected = F.softmax(model(codes, lens), dim=1).numpy()  # packed sequences
        (got,) = session.run(["probabilities"], {"codes": codes.numpy(), "lengths": lens.numpy()})
        assert got.shape == expected.shape
        assert float(np.abs(got - expected).max()) <= TOLERANCE


def test_a_one_direction_three_layer_gru_exports_as_well(tmp_path: Path) -> None:
    torch.manual_seed(0)
    config = NameGRUConfig(
        embedding_dim=12, hidden_size=10, num_layers=3, bidirectional=False, num_classes=4
    )
    net = NameGRU(config).eval()
    with torch.no_grad():
        net.fc.weight.mul_(20)  # confident answers, so a wrong state shows in the probabilities
    card = {"name": "tiny", "architecture": "NameGRU", "labels": list("abcd")}
    write_onnx(name_graph(Checkpoint(net, card)), tmp_path / "tiny.onnx")
    session = ort.InferenceSession(str(tmp_path / "tiny.onnx"), providers=["CPUExecutionProvider"])
    codes, lengths = encode_batch(["Li", "Smith", "Abdulrahmanov", "O'Neal", "Wu"])
    with torch.inference_mode():
        expected = F.softmax(net(codes, lengths), dim=1).numpy()
    (got,) = session.run(["probabilities"], {"codes": codes.numpy(), "lengths": lengths.numpy()})
    assert float(np.abs(got - expected).max()) <= TOLERANCE
    assert expected.max(1).min() > 0.5


def test_a_name_answers_the_same_whatever_the_padding(
    exported: tuple[Path, dict[str, Any]],
) -> None:
    session = _session(exported[0], "name-gru")
    alone, _ = encode_batch(["Li"])
    padded, lengths = encode_batch(["Li", "Abdulrahmanovich"])

    def run(codes: torch.Tensor, lens: list[int]) -> np.ndarray:
        feed = {"codes": codes.numpy(), "lengths": np.array(lens, dtype=np.int64)}
        return np.asarray(session.run(["probabilities"], feed)[0])

    assert np.abs(run(alone, [2])[0] - run(padded, lengths.tolist())[0]).max() <= 1e-6


@pytest.mark.parametrize("name", EXPORTABLE)
def test_the_triton_config_matches_the_graph(
    name: str, exported: tuple[Path, dict[str, Any]]
) -> None:
    entry = exported[0] / name
    config = text_format.Parse(
        (entry / "config.pbtxt").read_text(), _model_config().ModelConfig()
    )  # strict: an unknown field is an error, as in Triton
    graph = onnx.load(str(entry / "1" / "model.onnx")).graph
    card = load_checkpoint(WEIGHTS / name).card
    assert config.name == name
    assert config.platform == "onnxruntime_onnx"
    assert config.max_batch_size == 64
    assert config.HasField("dynamic_batching")
    for declared, actual in [
        *zip(config.input, graph.input, strict=True),
        *zip(config.output, graph.output, strict=True),
    ]:
        assert declared.name == actual.name
        tensor = actual.type.tensor_type
        dtype = _model_config().DataType.Name(declared.data_type)
        assert ONNX_TYPES[dtype] == tensor.elem_type
        dims = [d.dim_value if d.HasField("dim_value") else -1 for d in tensor.shape.dim]
        assert tensor.shape.dim[0].dim_param, f"{actual.name}: the batch axis is dynamic"
        shape = list(declared.reshape.shape) if declared.HasField("reshape") else declared.dims
        assert [-1, *shape] == dims
    (output,) = config.output
    assert output.label_filename == "labels.txt"
    assert (entry / "labels.txt").read_text().splitlines() == card["labels"]
    assert list(output.dims) == [len(card["labels"])]


def test_a_temperature_in_the_card_is_part_of_the_graph(tmp_path: Path, data_dir: Path) -> None:
    weights = tmp_path / "weights"
    shutil.copytree(WEIGHTS / "digit-resnet", weights / "digit-resnet")
    card_path = weights / "digit-resnet" / "card.json"
    card = json.loads(card_path.read_text())
    card["calibration"] = {"method": "temperature", "parameters": {"temperature": 2.5}}
    card_path.write_text(json.dumps(card))
    result = export_model("digit-resnet", weights, tmp_path / "out", data_dir, examples=20)
    assert result.check.max_abs_diff <= TOLERANCE
    model = load_checkpoint(weights / "digit-resnet").model
    images = load_mnist(data_dir, "test").images[:16]
    with torch.inference_mode():
        logits = model(normalize(images))
    session = ort.InferenceSession(str(result.model_path), providers=["CPUExecutionProvider"])
    (got,) = session.run(["probabilities"], {"pixels": (images.float() / 255).numpy()})
    assert np.abs(got - F.softmax(logits / 2.5, dim=1).numpy()).max() <= TOLERANCE
    assert np.abs(got - F.softmax(logits, dim=1).numpy()).max() > 0.01, "not the plain softmax"
    assert "softmax(logits / 2.5)" in (tmp_path / "out" / "digit-resnet" / "README.md").read_text()


def test_a_calibration_map_is_written_beside_the_graph(tmp_path: Path, data_dir: Path) -> None:
    weights = tmp_path / "weights"
    shutil.copytree(WEIGHTS / "name-gru", weights / "name-gru")
    card_path = weights / "name-gru" / "card.json"
    calibration = json.loads(card_path.read_text())["calibration"]  # the committed map
    assert calibration["method"] != "temperature", "a map the graph does not apply"
    result = export_model("name-gru", weights, tmp_path / "out", data_dir, examples=20)
    assert result.check.max_abs_diff <= TOLERANCE  # the plain softmax, as the reference
    entry = tmp_path / "out" / "name-gru"
    config = text_format.Parse((entry / "config.pbtxt").read_text(), _model_config().ModelConfig())
    assert json.loads(config.parameters["calibration"].string_value) == calibration
    assert "Not applied inside the graph" in (entry / "README.md").read_text()


def test_an_export_that_does_not_match_replaces_nothing(
    tmp_path: Path, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "out"
    (out / "digit-resnet").mkdir(parents=True)
    (out / "digit-resnet" / "config.pbtxt").write_text("the previous export")
    monkeypatch.setattr(export_check, "TOLERANCE", 0.0)  # any float rounding now fails
    with pytest.raises(ExportError, match=r"max \|diff\| of probabilities"):
        export_model("digit-resnet", WEIGHTS, out, data_dir, examples=50)
    assert (out / "digit-resnet" / "config.pbtxt").read_text() == "the previous export"
    assert sorted(p.name for p in out.iterdir()) == ["digit-resnet"]


def test_without_the_data_the_check_runs_on_seeded_random_inputs(tmp_path: Path) -> None:
    names, source = export_check.held_out_names(tmp_path, 300)
    assert source == "random names (no names data)"
    assert len(names) == 300 and len({len(n) for n in names}) > 10
    assert names == export_check.held_out_names(tmp_path, 300)[0]
    checkpoint = load_checkpoint(WEIGHTS / "digit-resnet")
    batches, source = export_check.digit_batches(checkpoint, tmp_path, batch_size=64, n=100)
    assert source.startswith("random")
    feeds = list(batches)
    assert [len(feed["pixels"]) for feed, _ in feeds] == [64, 36]
    assert all(torch.allclose(ref.sum(1), torch.ones(len(ref))) for _, ref in feeds)
