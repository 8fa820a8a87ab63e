"""The served models as the Open Inference Protocol sees them: a codec between each model's
tensors and the calls of its family's service, the same calls the typed routes make
(``/digit``, ``/classify-name``, ``/char-rnn/...``). It decides nothing else: limits, refusals,
deadlines and lifecycle are the services'.

Tensors by family:

- digit nets: ``image`` BYTES [-1], each element one encoded image (any format ``/digit``
  takes; base64 in the JSON encoding), or ``pixels`` FP32 [-1, 28, 28] in MNIST's form (0..1);
  out ``probabilities`` FP32 [-1, 10];
- ``name-gru``: ``name`` BYTES [-1] (UTF-8 surnames); out ``probabilities`` FP32 [-1, 18];
- ``char-rnn-hello``: ``text`` BYTES [-1]; out ``output`` BYTES [-1], the transduced texts;
- ``char-rnn-shakespeare``: ``prompt`` BYTES [-1] and the request parameters ``max_chars``,
  ``temperature``, ``top_k``, ``seed``; out ``text`` BYTES [-1].
"""

import base64
import binascii
from typing import Any, Final, TypeGuard

import numpy as np

from app.api.tensors import Encoded, InferCall, Output, Tensor, encode_response, parse_request
from app.batching import Gone
from app.errors import BadRequest, InvalidInput, NotFound, ServiceError
from app.schemas_v2 import ModelMetadata, TensorMetadata
from app.services import ModelView, Services
from app.services.char_rnn import GenerateOptions
from app.services.common import Answer

PLATFORM: Final = "pytorch"
FIELD: Final = 28
MAX_SEED: Final = 2**63 - 1


def served_version(services: Services, name: str, version: str | None) -> ModelView:
    """The model ``name`` as served; 404 for an unknown model or a version it does not serve,
    503 for a model in the repository that is not loaded."""
    model = services.describe(name)
    if version is not None and version != model.version:
        raise NotFound(f"{name} serves version {model.version}, not {version!r}")
    return model


def metadata(services: Services, name: str, version: str | None) -> ModelMetadata:
    """A served model's tensors: names, datatypes and shapes (-1: any size)."""
    model = served_version(services, name, version)
    if model.family == "digits":
        inputs = [
            TensorMetadata(
                name="image", datatype="BYTES", shape=[-1], description="encoded images"
            ),
            TensorMetadata(
                name="pixels", datatype="FP32", shape=[-1, FIELD, FIELD], description="MNIST form"
            ),
        ]
    elif model.family == "names":
        inputs = [TensorMetadata(name="name", datatype="BYTES", shape=[-1])]
    else:
        source, target = ("text", "output") if model.family == "transduce" else ("prompt", "text")
        inputs = [TensorMetadata(name=source, datatype="BYTES", shape=[-1])]
        outputs = [TensorMetadata(name=target, datatype="BYTES", shape=[-1])]
    if model.family in ("digits", "names"):
        width = len(model.labels)
        outputs = [TensorMetadata(name="probabilities", datatype="FP32", shape=[-1, width])]
    return ModelMetadata(
        name=name, versions=[model.version], platform=PLATFORM, inputs=inputs, outputs=outputs
    )


async def infer(
    services: Services,
    name: str,
    version: str | None,
    body: bytes,
    header_length: int | None,
    gone: Gone | None,
) -> Encoded:
    """Parse a request, run it through the model's service, encode the outputs asked for."""
    model = served_version(services, name, version)
    call = parse_request(body, header_length)
    if model.family == "transduce":
        texts = _texts(_one_input(call, name, ("text",)))
        steps = await services.chars.transduce(name, texts)
        outputs = ["".join(s.output for s in row).encode() for row in steps]
        return encode_response(name, model.version, call, {"output": Output("output", outputs)})
    if model.family == "generate":
        prompts = _texts(_one_input(call, name, ("prompt",)))
        texts = await services.chars.generate(name, prompts, _generation(call.parameters), gone)
        generated = [t.encode() for t in texts]
        return encode_response(name, model.version, call, {"text": Output("text", generated)})
    if model.family == "digits":
        answers = await _digits(services, name, _one_input(call, name, ("image", "pixels")), gone)
    else:
        tensor = _one_input(call, name, ("name",))
        try:
            items = services.names.fold(_texts(tensor))
        except InvalidInput as exc:  # each unusable name, by its element of the tensor
            if not exc.errors:
                raise
            shown = [f"{tensor.name}[{e['loc'][-1]}]: {e['msg']}" for e in exc.errors[:3]]
            more = f" (and {len(exc.errors) - 3} more)" if len(exc.errors) > 3 else ""
            raise InvalidInput("; ".join(shown) + more) from None
        answers = await services.names.answers(items, gone, name)
    probs = np.asarray([a.probs for a in answers], dtype=np.float32)  # B x C
    scores = {"probabilities": Output("probabilities", probs, answers[0].labels)}
    return encode_response(name, _version_of(answers), call, scores)


def _version_of(answers: list[Answer]) -> str:
    """The version that answered (every input of a request goes to the same one)."""
    return answers[0].version


def _one_input(call: InferCall, model: str, names: tuple[str, ...]) -> Tensor:
    if len(call.inputs) != 1 or call.inputs[0].name not in names:
        given = ", ".join(t.name for t in call.inputs)
        raise BadRequest(f"{model} takes one input, {' or '.join(names)}; got {given}")
    return call.inputs[0]


async def _digits(services: Services, name: str, tensor: Tensor, gone: Gone | None) -> list[Answer]:
    if isinstance(tensor.values, np.ndarray):
        try:
            images = services.digits.check_pixels(tensor.values)
        except ServiceError as exc:
            raise type(exc)(f"{tensor.name}: {exc.detail}") from None
    else:
        images = []
        for i, blob in enumerate(tensor.values):
            try:
                data = _unbase64(blob) if tensor.from_json else blob
                images.append(await services.digits.prepare_upload(data))
            except ServiceError as exc:
                raise type(exc)(f"{tensor.name}[{i}]: {exc.detail}", headers=exc.headers) from None
    return await services.digits.answers(name, images, gone)


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


def _generation(parameters: dict[str, Any]) -> GenerateOptions:
    """``max_chars``, ``temperature``, ``top_k`` and ``seed`` from the request parameters, as
    the types the service takes (the service checks their ranges)."""
    defaults = GenerateOptions()
    max_chars = parameters.get("max_chars", defaults.max_chars)
    temperature = parameters.get("temperature", defaults.temperature)
    top_k = parameters.get("top_k")
    seed = parameters.get("seed")
    if not _whole(max_chars):
        raise InvalidInput("parameter max_chars must be a whole number")
    if not _number(temperature) or not 0 < temperature <= 10:
        raise InvalidInput("parameter temperature must be a number above 0, at most 10")
    for key, value in (("top_k", top_k), ("seed", seed)):
        if value is not None and not (_whole(value) and 0 <= value <= MAX_SEED):
            raise InvalidInput(f"parameter {key} must be a whole number from 0 to {MAX_SEED}")
    return GenerateOptions(max_chars, float(temperature), top_k, seed)


def _whole(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _number(value: object) -> TypeGuard[float]:
    return isinstance(value, int | float) and not isinstance(value, bool)
