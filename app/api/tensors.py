"""The Open Inference Protocol's tensors on the wire: JSON and the binary tensor extension in,
JSON or binary out, and the classification extension.

With the binary extension a request is a JSON header of ``Inference-Header-Content-Length``
bytes followed by the raw tensors, in input order, each ``binary_data_size`` bytes: numbers
little-endian, BYTES elements each a 4-byte little-endian length and the bytes. Responses use
the same layout when any output asks for ``binary_data`` (or the request for
``binary_data_output``).
"""

import json
import math
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
from pydantic import ValidationError

from app.errors import BadRequest
from app.schemas_v2 import InferRequest, RequestInput

HEADER_LENGTH: Final = "Inference-Header-Content-Length"
MAX_VALUES: Final = 1 << 24
"""Values a tensor's shape may claim, whatever the body holds: a bound for decoding only (the
body limit bounds what can arrive). How many elements a model takes is its service's limit."""
MAX_RANK: Final = 4
_LENGTH = struct.Struct("<I")


@dataclass
class Tensor:
    """One decoded input: BYTES as a list of bytes, FP32 as an array of ``shape``."""

    name: str
    datatype: str
    shape: list[int]
    values: list[bytes] | np.ndarray
    from_json: bool


@dataclass(frozen=True)
class Requested:
    name: str
    binary: bool
    classification: int


@dataclass
class InferCall:
    """A parsed request: its inputs by name and the outputs wanted (None: all of them)."""

    id: str | None
    inputs: list[Tensor]
    outputs: list[Requested] | None
    binary_default: bool
    parameters: dict[str, Any]


@dataclass
class Output:
    """One output of a model: FP32 ``values`` (B x C, with its class labels) or BYTES."""

    name: str
    values: np.ndarray | list[bytes]
    labels: list[str] | None = None
    shape: list[int] | None = None
    """Default: the array's shape, or [number of BYTES elements]."""


@dataclass
class Encoded:
    body: bytes
    media_type: str
    headers: dict[str, str]


def parse_request(body: bytes, header_length: int | None) -> InferCall:
    """A request body (JSON, or a JSON header and binary tensors) -> its inputs and outputs."""
    if header_length is not None and header_length > len(body):
        raise BadRequest(f"{HEADER_LENGTH} is {header_length}; the body has {len(body)} bytes")
    split = len(body) if header_length is None else header_length
    try:
        request = InferRequest.model_validate_json(body[:split])
    except ValidationError as exc:
        raise BadRequest(f"not a valid inference request: {_summary(exc)}") from None
    binary = memoryview(body)[split:]
    offset, inputs = 0, []
    for given in request.inputs:
        size = _binary_size(given)
        if size is not None:
            if offset + size > len(binary):
                raise BadRequest(f"input {given.name!r}: binary_data_size runs past the body")
            inputs.append(_decode_binary(given, bytes(binary[offset : offset + size])))
            offset += size
        else:
            inputs.append(_decode_json(given))
    if offset != len(binary):
        raise BadRequest(f"{len(binary) - offset} bytes after the tensors belong to no input")
    if len({t.name for t in inputs}) != len(inputs):
        raise BadRequest("an input is named twice")
    if request.outputs and len({o.name for o in request.outputs}) != len(request.outputs):
        raise BadRequest("an output is asked for twice")
    parameters = request.parameters or {}
    return InferCall(
        id=request.id,
        inputs=inputs,
        outputs=None
        if request.outputs is None
        else [_requested(o.name, o.parameters or {}) for o in request.outputs],
        binary_default=_flag(parameters, "binary_data_output", "request"),
        parameters=parameters,
    )


def _summary(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors()[:3]:
        loc = ".".join(str(p) for p in err["loc"]) or "body"
        parts.append(f"{loc}: {err['msg']}")
    return "; ".join(parts)


def _flag(parameters: dict[str, Any], key: str, where: str) -> bool:
    value = parameters.get(key, False)
    if not isinstance(value, bool):
        raise BadRequest(f"{where} parameter {key} must be true or false")
    return value


def _requested(name: str, parameters: dict[str, Any]) -> Requested:
    k = parameters.get("classification", 0)
    if not isinstance(k, int) or isinstance(k, bool) or k < 0:
        raise BadRequest(f"output {name!r}: classification must be a whole number >= 0")
    return Requested(name, _flag(parameters, "binary_data", f"output {name!r}"), k)


def _count(tensor: RequestInput) -> int:
    limit = MAX_VALUES
    if not 1 <= len(tensor.shape) <= MAX_RANK or any(not 0 <= d <= limit for d in tensor.shape):
        # the sizes are not shown: a size may have thousands of digits
        raise BadRequest(
            f"input {tensor.name!r}: a shape has 1 to {MAX_RANK} sizes from 0 to {limit}"
        )
    count = math.prod(tensor.shape)
    if not 1 <= count <= limit:
        raise BadRequest(f"input {tensor.name!r}: {count} values; 1 to {limit} per tensor")
    return count


def _binary_size(tensor: RequestInput) -> int | None:
    size = (tensor.parameters or {}).get("binary_data_size")
    if size is None:
        return None
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise BadRequest(f"input {tensor.name!r}: binary_data_size must be a whole number >= 0")
    if tensor.data is not None:
        raise BadRequest(f"input {tensor.name!r}: has both data and binary_data_size")
    return size


def _decode_binary(tensor: RequestInput, raw: bytes) -> Tensor:
    count = _count(tensor)
    if tensor.datatype == "BYTES":
        elements, offset = [], 0
        while offset < len(raw):
            if offset + 4 > len(raw):
                raise BadRequest(f"input {tensor.name!r}: a BYTES element's length is cut off")
            (length,) = _LENGTH.unpack_from(raw, offset)
            elements.append(raw[offset + 4 : offset + 4 + length])
            offset += 4 + length
        if offset != len(raw) or len(elements) != count:
            raise BadRequest(
                f"input {tensor.name!r}: binary data holds {len(elements)} BYTES elements "
                f"(or runs short); shape {tensor.shape} says {count}"
            )
        return Tensor(tensor.name, "BYTES", tensor.shape, elements, from_json=False)
    if tensor.datatype == "FP32":
        if len(raw) != count * 4:
            raise BadRequest(
                f"input {tensor.name!r}: {len(raw)} bytes; FP32 of shape {tensor.shape} "
                f"takes {count * 4}"
            )
        array = np.frombuffer(raw, dtype="<f4").astype(np.float32).reshape(tensor.shape)
        return Tensor(tensor.name, "FP32", tensor.shape, array, from_json=False)
    raise BadRequest(f"input {tensor.name!r}: {tensor.datatype} tensors are not taken here")


def _flatten(data: list[Any], depth: int = 0) -> Iterator[Any]:
    if depth >= MAX_RANK:
        raise BadRequest(f"tensor data nested deeper than {MAX_RANK} levels")
    for item in data:
        if isinstance(item, list):
            yield from _flatten(item, depth + 1)
        else:
            yield item


def _decode_json(tensor: RequestInput) -> Tensor:
    if tensor.data is None:
        raise BadRequest(f"input {tensor.name!r}: no data and no binary_data_size")
    count = _count(tensor)
    flat = list(_flatten(tensor.data))
    if len(flat) != count:
        raise BadRequest(
            f"input {tensor.name!r}: {len(flat)} values; shape {tensor.shape} says {count}"
        )
    if tensor.datatype == "BYTES":
        if not all(isinstance(v, str) for v in flat):
            raise BadRequest(f"input {tensor.name!r}: BYTES data must be strings")
        elements = [v.encode("utf-8", "surrogatepass") for v in flat]
        return Tensor(tensor.name, "BYTES", tensor.shape, elements, from_json=True)
    if tensor.datatype == "FP32":
        if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in flat):
            raise BadRequest(f"input {tensor.name!r}: FP32 data must be numbers")
        try:
            with np.errstate(over="ignore"):
                array = np.asarray(flat, dtype=np.float64).astype(np.float32)
        except OverflowError:  # a whole number too large even for float64
            raise BadRequest(f"input {tensor.name!r}: an FP32 value is out of range") from None
        array = array.reshape(tensor.shape)
        return Tensor(tensor.name, "FP32", tensor.shape, array, from_json=True)
    raise BadRequest(f"input {tensor.name!r}: {tensor.datatype} tensors are not taken here")


def classification(probs: np.ndarray, labels: list[str], k: int) -> list[bytes]:
    """The classification extension: per row, the ``k`` best as ``score:index:label``."""
    out = []
    for row in probs:
        best = sorted(range(len(row)), key=lambda i: -float(row[i]))[:k]
        out += [f"{float(row[i]):f}:{i}:{labels[i]}".encode() for i in best]
    return out


def _shape(output: Output) -> list[int]:
    if output.shape is not None:
        return output.shape
    if isinstance(output.values, np.ndarray):
        return list(output.values.shape)
    return [len(output.values)]


def _select(call: InferCall, outputs: dict[str, Output]) -> list[tuple[Output, bool]]:
    if call.outputs is None:
        return [(o, call.binary_default) for o in outputs.values()]
    chosen = []
    for want in call.outputs:
        if want.name not in outputs:
            raise BadRequest(f"no output {want.name!r}; outputs: {', '.join(outputs)}")
        output = outputs[want.name]
        if want.classification:
            if output.labels is None or not isinstance(output.values, np.ndarray):
                raise BadRequest(f"output {want.name!r} has no classes to rank")
            k = want.classification
            if k > len(output.labels):
                raise BadRequest(f"classification {k}: {want.name} has {len(output.labels)}")
            ranked = classification(output.values, output.labels, k)
            output = Output(output.name, ranked, shape=[len(output.values), k])
        chosen.append((output, want.binary or call.binary_default))
    return chosen


def encode_response(
    model: str, version: str, call: InferCall, outputs: dict[str, Output]
) -> Encoded:
    """The response body: JSON, or a JSON header and the binary tensors."""
    described, blobs = [], []
    for output, binary in _select(call, outputs):
        shape = _shape(output)
        is_bytes = not isinstance(output.values, np.ndarray)
        entry: dict[str, Any] = {
            "name": output.name,
            "datatype": "BYTES" if is_bytes else "FP32",
            "shape": shape,
        }
        if binary:
            blob = _to_binary(output.values)
            entry["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        elif isinstance(output.values, np.ndarray):
            entry["data"] = output.values.astype(np.float32).reshape(-1).tolist()
        else:
            entry["data"] = [v.decode("utf-8", "replace") for v in output.values]
        described.append(entry)
    header = {"model_name": model, "model_version": version, "outputs": described}
    if call.id is not None:
        header["id"] = call.id
    text = json.dumps(header, separators=(",", ":")).encode()
    if not blobs:
        return Encoded(text, "application/json", {})
    return Encoded(
        text + b"".join(blobs), "application/octet-stream", {HEADER_LENGTH: str(len(text))}
    )


def _to_binary(values: np.ndarray | list[bytes]) -> bytes:
    if isinstance(values, np.ndarray):
        return values.astype("<f4").tobytes()
    return b"".join(_LENGTH.pack(len(v)) + v for v in values)
