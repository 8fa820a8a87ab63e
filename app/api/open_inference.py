"""The served models as the Open Inference Protocol sees them: each model's tensors, and
``infer``, which runs a parsed request through the same services and batchers as the typed
routes (``/digit``, ``/classify-name``, ``/char-rnn/...``).

Tensors by family:

- digit nets: ``image`` BYTES [-1], each element one encoded image (any format ``/digit``
  takes; base64 in the JSON encoding), or ``pixels`` FP32 [-1, 28, 28] in MNIST's form (0..1);
  out ``probabilities`` FP32 [-1, 10];
- ``name-gru``: ``name`` BYTES [-1] (UTF-8 surnames); out ``probabilities`` FP32 [-1, 18];
- ``char-rnn-hello``: ``text`` BYTES [-1]; out ``output`` BYTES [-1], the transduced texts;
- ``char-rnn-shakespeare``: ``prompt`` BYTES [-1] and the request parameters ``max_chars``,
  ``temperature``, ``top_k``, ``seed``; out ``text`` BYTES [-1].
"""

import asyncio
import base64
import binascii
from collections.abc import Callable
from typing import Any, Final, TypeGuard

import anyio.to_thread
import numpy as np

from app.errors import BadRequest, InvalidInput, ModelUnavailable, NotFound, ServiceError
from app.runtime import Runtime
from app.schemas_v2 import ModelMetadata, TensorMetadata
from app.services.char_rnn import CharModel
from app.services.common import Answer
from app.services.digits import DigitService
from app.services.names import fold_name
from app.services.protocol import (
    Encoded,
    InferCall,
    Output,
    Tensor,
    encode_response,
    parse_request,
)

PLATFORM: Final = "pytorch"
FIELD: Final = 28
MAX_SEED: Final = 2**63 - 1
Gone = Callable[[], bool] | None


def served_version(runtime: Runtime, name: str, version: str | None) -> str:
    """The version ``name`` serves; 404 for an unknown model or a version it does not serve,
    503 for a model in the repository that is not loaded."""
    if name not in runtime.registry.models:
        if name in runtime.registry.on_disk():
            raise ModelUnavailable(f"model {name!r} is not loaded; load it through the repository")
        raise NotFound(
            f"no model named {name!r}; served: {', '.join(sorted(runtime.registry.models))}"
        )
    served = runtime.registry.versions[name]
    if version is not None and version != served:
        raise NotFound(f"{name} serves version {served}, not {version!r}")
    return served


def metadata(runtime: Runtime, name: str, version: str | None) -> ModelMetadata:
    """A served model's tensors: names, datatypes and shapes (-1: any size)."""
    served = served_version(runtime, name, version)
    services = runtime.services()
    service = services[name]
    if isinstance(service, DigitService):
        width = len(service.labels)
        inputs = [
            TensorMetadata(
                name="image", datatype="BYTES", shape=[-1], description="encoded images"
            ),
            TensorMetadata(
                name="pixels", datatype="FP32", shape=[-1, FIELD, FIELD], description="MNIST form"
            ),
        ]
        outputs = [TensorMetadata(name="probabilities", datatype="FP32", shape=[-1, width])]
    elif isinstance(service, CharModel):
        source, target = ("text", "output") if name in _TRANSDUCERS else ("prompt", "text")
        inputs = [TensorMetadata(name=source, datatype="BYTES", shape=[-1])]
        outputs = [TensorMetadata(name=target, datatype="BYTES", shape=[-1])]
    else:
        inputs = [TensorMetadata(name="name", datatype="BYTES", shape=[-1])]
        outputs = [
            TensorMetadata(name="probabilities", datatype="FP32", shape=[-1, len(service.labels)])
        ]
    return ModelMetadata(
        name=name, versions=[served], platform=PLATFORM, inputs=inputs, outputs=outputs
    )


async def infer(
    runtime: Runtime,
    name: str,
    version: str | None,
    body: bytes,
    header_length: int | None,
    gone: Gone,
) -> Encoded:
    """Parse a request, run it through the model's service, encode the outputs asked for."""
    served_version(runtime, name, version)
    call = parse_request(body, header_length)
    service = runtime.services()[name]
    if isinstance(service, DigitService):
        answers = await _digits(service, _one_input(call, name, ("image", "pixels")), gone)
    elif isinstance(service, CharModel):
        return await _chars(runtime, service, call, name)
    else:
        answers = await _names(runtime, name, _one_input(call, name, ("name",)), gone)
    probs = np.asarray([a.probs for a in answers], dtype=np.float32)  # B x C
    outputs = {"probabilities": Output("probabilities", probs, service.labels)}
    return encode_response(name, _version_of(answers), call, outputs)


def _version_of(answers: list[Answer]) -> str:
    """The version that answered; a request split across a swap names both, oldest first."""
    versions = sorted({a.version for a in answers}, key=int)
    return ",".join(versions)


def _one_input(call: InferCall, model: str, names: tuple[str, ...]) -> Tensor:
    if len(call.inputs) != 1 or call.inputs[0].name not in names:
        given = ", ".join(t.name for t in call.inputs)
        raise BadRequest(f"{model} takes one input, {' or '.join(names)}; got {given}")
    return call.inputs[0]


def _element_error(exc: ServiceError, tensor: Tensor, index: int) -> ServiceError:
    return type(exc)(f"{tensor.name}[{index}]: {exc.detail}", headers=exc.headers)


async def _digits(service: DigitService, tensor: Tensor, gone: Gone) -> list[Answer]:
    if isinstance(tensor.values, np.ndarray):
        pixels = tensor.values
        if pixels.ndim != 3 or pixels.shape[1:] != (FIELD, FIELD):
            raise BadRequest(f"{tensor.name}: FP32 shape must be [N, 28, 28], not {tensor.shape}")
        if not np.isfinite(pixels).all() or pixels.min() < 0 or pixels.max() > 1:
            raise BadRequest(f"{tensor.name}: MNIST-form pixels lie in 0..1 (ink 1)")
        images = list(np.ascontiguousarray(pixels))
    else:
        images = []
        for i, blob in enumerate(tensor.values):
            try:
                data = _unbase64(blob) if tensor.from_json else blob
                images.append(await service.prepare_upload(data))
            except ServiceError as exc:
                raise _element_error(exc, tensor, i) from None
    return list(await asyncio.gather(*(service.predict(image, gone) for image in images)))


def _unbase64(text: bytes) -> bytes:
    """A digit image in the JSON encoding: base64, optionally as a ``data:`` URL."""
    if text.startswith(b"data:"):
        text = text.partition(b",")[2]
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise BadRequest("in the JSON encoding an image is base64 text") from None


def _texts(tensor: Tensor) -> list[str]:
    if not isinstance(tensor.values, list):
        raise BadRequest(f"input {tensor.name!r} must be BYTES")
    try:
        return [v.decode("utf-8") for v in tensor.values]
    except UnicodeDecodeError:
        raise BadRequest(f"input {tensor.name!r}: elements must be UTF-8 text") from None


async def _names(runtime: Runtime, name: str, tensor: Tensor, gone: Gone) -> list[Answer]:
    items = []
    for i, text in enumerate(_texts(tensor)):
        try:
            items.append(fold_name(text))
        except ServiceError as exc:
            raise _element_error(exc, tensor, i) from None
    batcher = runtime.batcher(name)
    return list(await asyncio.gather(*(batcher.submit(it.normalized, gone) for it in items)))


_TRANSDUCERS: Final = frozenset({"char-rnn-hello"})
"""Character models that map each input character to an output one; the others generate."""


async def _chars(runtime: Runtime, model: CharModel, call: InferCall, name: str) -> Encoded:
    version = runtime.registry.versions[name]
    if name in _TRANSDUCERS:
        transduced: list[bytes] = []
        for text in _texts(_one_input(call, name, ("text",))):
            steps = await anyio.to_thread.run_sync(model.transduce, text)
            transduced.append("".join(s.output for s in steps).encode())
        return encode_response(name, version, call, {"output": Output("output", transduced)})
    options = _generation(call.parameters, runtime.settings.max_generate_chars)
    generated: list[bytes] = []
    for prompt in _texts(_one_input(call, name, ("prompt",))):
        model.encode(prompt, "prompt")
        chunks = model.generate(prompt, **options)
        generated.append((await anyio.to_thread.run_sync("".join, chunks)).encode())
    return encode_response(name, version, call, {"text": Output("text", generated)})


def _generation(parameters: dict[str, Any], cap: int) -> dict[str, Any]:
    """``max_chars``, ``temperature``, ``top_k`` and ``seed`` from the request parameters."""
    max_chars = parameters.get("max_chars", 200)
    temperature = parameters.get("temperature", 0.8)
    top_k = parameters.get("top_k")
    seed = parameters.get("seed")
    if not (_whole(max_chars) and 1 <= max_chars <= cap):
        raise InvalidInput(f"max_chars must be a whole number from 1 to {cap}")
    if not _number(temperature) or not 0 < temperature <= 10:
        raise InvalidInput("temperature must be a number above 0, at most 10")
    for key, value in (("top_k", top_k), ("seed", seed)):
        if value is not None and not (_whole(value) and 0 <= value <= MAX_SEED):
            raise InvalidInput(f"{key} must be a whole number from 0 to {MAX_SEED}")
    if top_k == 0:
        raise InvalidInput("top_k must be at least 1")
    return {"max_chars": max_chars, "temperature": float(temperature), "top_k": top_k, "seed": seed}


def _whole(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _number(value: object) -> TypeGuard[float]:
    return isinstance(value, int | float) and not isinstance(value, bool)
