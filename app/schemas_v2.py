"""Bodies of the Open Inference Protocol v2 (KServe v2 / Triton HTTP) routes under ``/v2``."""

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Datatype = Literal[
    "BOOL",
    "UINT8",
    "UINT16",
    "UINT32",
    "UINT64",
    "INT8",
    "INT16",
    "INT32",
    "INT64",
    "FP16",
    "FP32",
    "FP64",
    "BF16",
    "BYTES",
]
Parameters = dict[str, Any]


class ProtocolError(BaseModel):
    """The protocol's error body."""

    error: str = Field(examples=["digit-resnet has no input 'images'; it takes image or pixels"])


class ServerMetadata(BaseModel):
    name: str
    version: str
    extensions: list[str]


class Live(BaseModel):
    live: bool


class Ready(BaseModel):
    ready: bool


class ModelReady(BaseModel):
    name: str
    ready: bool


class TensorMetadata(BaseModel):
    name: str
    datatype: Datatype
    shape: list[int] = Field(description="-1: any size along that axis")
    description: str | None = None


class ModelMetadata(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "name": "digit-resnet",
                    "versions": ["1"],
                    "platform": "pytorch",
                    "inputs": [
                        {"name": "image", "datatype": "BYTES", "shape": [-1]},
                        {"name": "pixels", "datatype": "FP32", "shape": [-1, 28, 28]},
                    ],
                    "outputs": [{"name": "probabilities", "datatype": "FP32", "shape": [-1, 10]}],
                }
            ]
        }
    )
    name: str
    versions: list[str] = Field(description="the version served (the one requests may name)")
    platform: str
    inputs: list[TensorMetadata]
    outputs: list[TensorMetadata]


class RequestInput(BaseModel):
    model_config = ConfigDict(strict=True)
    name: str
    shape: list[int]
    datatype: Datatype
    parameters: Parameters | None = Field(
        None, description="binary_data_size: the tensor's bytes after the JSON header"
    )
    data: list[Any] | None = Field(
        None,
        description="row-major, flat or nested; BYTES as strings (a digit image as base64)",
    )


class RequestOutput(BaseModel):
    model_config = ConfigDict(strict=True)
    name: str
    parameters: Parameters | None = Field(
        None, description="binary_data: bool; classification: the k best as 'score:index:label'"
    )


class InferRequest(BaseModel):
    """An inference request's JSON (with the binary extension, the header before the tensors)."""

    model_config = ConfigDict(
        strict=True,
        json_schema_extra={
            "examples": [
                {
                    "id": "42",
                    "inputs": [
                        {
                            "name": "name",
                            "shape": [2],
                            "datatype": "BYTES",
                            "data": [
                                "Kowalski",
                                "Nguyen",
                            ],
                        }
                    ],
                    "outputs": [{"name": "probabilities", "parameters": {"classification": 1}}],
                }
            ]
        },
    )
    id: str | None = None
    parameters: Parameters | None = Field(
        None, description="binary_data_output: every output as binary tensor data"
    )
    inputs: list[RequestInput] = Field(min_length=1)
    outputs: list[RequestOutput] | None = Field(
        None, description="default: every output of the model"
    )


class ResponseOutput(BaseModel):
    name: str
    shape: list[int]
    datatype: Datatype
    parameters: Parameters | None = None
    data: list[Any] | None = None


class InferResponse(BaseModel):
    model_name: str
    model_version: str
    id: str | None = None
    outputs: list[ResponseOutput]


class RepositoryIndexRequest(BaseModel):
    model_config = ConfigDict(strict=True)
    ready: bool = Field(False, description="list only the versions being served")


class RepositoryModel(BaseModel):
    name: str
    version: str
    state: Literal["READY", "UNAVAILABLE"]
    reason: str


class LoadRequest(BaseModel):
    model_config = ConfigDict(
        strict=True, json_schema_extra={"examples": [{"parameters": {"version": "2"}}]}
    )
    parameters: Parameters | None = Field(
        None,
        description="version: the version to serve (default: the newest on disk); or config, "
        'a JSON string like tritonclient sends: {"version_policy": {"specific": '
        '{"versions": [2]}}}',
    )


class LoadResponse(BaseModel):
    name: str
    version: str = Field(description="the version served from now on")
    previous_version: str | None = Field(description="the version it replaced, if one was served")


class UnloadRequest(BaseModel):
    model_config = ConfigDict(strict=True)
    parameters: Parameters | None = None


class UnloadResponse(BaseModel):
    name: str
    version: str = Field(description="the version that was served")
