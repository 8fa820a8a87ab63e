"""Request and response schemas of the HTTP API, with the examples shown in ``/docs``."""

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator
from pydantic_core import PydanticCustomError

from app.services.limits import MAX_NAME_CHARS, MAX_NAMES, MAX_PROMPT_CHARS, MAX_TEXT_CHARS

DigitModel = Literal["digit-resnet", "digit-inception"]
NameModel = Literal["name-gru"]
TransduceModel = Literal["char-rnn-hello"]
GenerateModel = Literal["char-rnn-shakespeare"]
ModelName = Literal[
    "digit-resnet", "digit-inception", "name-gru", "char-rnn-hello", "char-rnn-shakespeare"
]
NAME_CLASSES = 18
MAX_NAME_INPUT = MAX_NAME_CHARS


def _whole_unicode(text: str) -> str:
    """Refuse a lone surrogate (JSON lets ``"\\ud800"`` through; it is no character and cannot
    be written back as UTF-8)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(
            f"has a lone surrogate at position {exc.start}, which is not a Unicode character"
        ) from None
    return text


UnicodeText = Annotated[str, AfterValidator(_whole_unicode)]
"""A string of whole Unicode characters (pydantic's strict ``str`` already refuses lone
surrogates, but not inside a list)."""


PROBABILITY = (
    "calibrated where the model's card carries a calibration (about the share of answers given "
    "this probability that are right, on data the model never trained on), else the softmax"
)


class Prediction(BaseModel):
    label: str
    probability: float = Field(ge=0, le=1, description=PROBABILITY)


class ClassifyNameRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        json_schema_extra={"examples": [{"name": "Kowalski", "top_k": 3}]},
    )
    name: str = Field(
        min_length=1,
        max_length=MAX_NAME_INPUT,
        description="a surname in any script; folded to ASCII before the model",
    )
    top_k: int = Field(3, ge=1, le=NAME_CLASSES, description="how many countries to return")


class ClassifyNameResponse(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "name": "Papadópoulos",
                    "normalized": "Papadopoulos",
                    "model": "name-gru",
                    "version": "1",
                    "predictions": [
                        {"label": "Greek", "probability": 0.944},
                        {"label": "Russian", "probability": 0.012},
                        {"label": "Portuguese", "probability": 0.009},
                    ],
                }
            ]
        }
    )
    name: str
    normalized: str = Field(description="the folded form the model saw")
    model: NameModel
    version: str = Field(description="the model version that answered")
    predictions: list[Prediction] = Field(description="best first")


class ClassifyNameBatchRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        json_schema_extra={"examples": [{"names": ["Müller", "Иванов", "O'Brien"], "top_k": 1}]},
    )
    names: list[UnicodeText] = Field(min_length=1, max_length=MAX_NAMES)
    top_k: int = Field(3, ge=1, le=NAME_CLASSES)


class ClassifyNameBatchResponse(BaseModel):
    model: NameModel
    results: list[ClassifyNameResponse] = Field(description="in input order")


class DigitAnswer(BaseModel):
    """What every digit route answers: the best digit first."""

    digit: int = Field(ge=0, le=9)
    probability: float = Field(description=f"the first prediction's: {PROBABILITY}")
    model: DigitModel
    version: str = Field(description="the model version that answered")
    predictions: list[Prediction] = Field(description="best first")


class DigitResponse(DigitAnswer):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "digit": 7,
                    "probability": 0.998,
                    "model": "digit-resnet",
                    "version": "1",
                    "predictions": [
                        {"label": "7", "probability": 0.998},
                        {"label": "1", "probability": 0.001},
                        {"label": "2", "probability": 0.0005},
                    ],
                }
            ]
        }
    )
    image: str | None = Field(
        None, description="with debug=true: the 28x28 input the model saw, as a PNG data URL"
    )
    abstained: bool | None = Field(
        None,
        description="with answer_anyway=true: whether the model abstains, that is the upload "
        "does not look like a digit to it (without answer_anyway such an upload is a 422)",
    )
    reason: str | None = Field(None, description="why the model abstains, when it does")


class TransduceRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        json_schema_extra={"examples": [{"text": "hello", "model": "char-rnn-hello"}]},
    )
    text: str = Field(min_length=1, max_length=MAX_TEXT_CHARS)
    model: TransduceModel = "char-rnn-hello"


class Step(BaseModel):
    input: str
    output: str
    probability: float


class TransduceResponse(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "output": "ohlol",
                    "model": "char-rnn-hello",
                    "steps": [{"input": "h", "output": "o", "probability": 0.98}],
                }
            ]
        }
    )
    output: str
    model: TransduceModel
    steps: list[Step]


class GenerateRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        json_schema_extra={
            "examples": [
                {
                    "prompt": "ROMEO:",
                    "max_chars": 200,
                    "temperature": 0.8,
                    "top_k": None,
                    "seed": 42,
                    "model": "char-rnn-shakespeare",
                    "stream": False,
                }
            ]
        },
    )
    prompt: str = Field(
        "", max_length=MAX_PROMPT_CHARS, description="continued by the model; may be empty"
    )
    max_chars: int = Field(200, ge=1, le=2000, description="characters to generate")
    temperature: float = Field(
        0.8,
        le=10,
        allow_inf_nan=False,
        json_schema_extra={"exclusiveMinimum": 0},
        description="> 0; lower is more conservative (for greedy decoding, send top_k: 1)",
    )
    top_k: int | None = Field(
        None,
        ge=1,
        description="sample only from the k likeliest characters; 1 is greedy decoding",
    )
    seed: int | None = Field(None, ge=0, le=2**63 - 1, description="same seed, same text")
    model: GenerateModel = "char-rnn-shakespeare"
    stream: bool = Field(False, description="answer as text/event-stream, chunk by chunk")

    @field_validator("temperature")
    @classmethod
    def _positive(cls, value: float) -> float:
        """Greater than 0, with the way to the greedy choice that temperature 0 would mean."""
        if value <= 0:
            raise PydanticCustomError(
                "greater_than",
                "Input should be greater than 0; for greedy decoding (the likeliest character "
                "every time) send top_k: 1",
                {"gt": 0},
            )
        return value


class GenerateResponse(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "text": "\nWhat say you to my love?",
                    "model": "char-rnn-shakespeare",
                }
            ]
        }
    )
    text: str = Field(description="the generated characters (the prompt is not repeated)")
    model: GenerateModel


class ModelInfo(BaseModel):
    """A model card as written by training, plus the device it runs on."""

    model_config = ConfigDict(extra="allow")
    name: str
    task: str
    architecture: str
    device: str
    version: str = Field(description="the version served (weights/<model>/<version>/)")
    num_parameters: int
    metrics: dict[str, Any] = Field(default_factory=dict)
    calibration: dict[str, Any] | None = Field(
        None,
        description="how the net's logits become the probabilities served: method "
        "(temperature, or top-label isotonic) and parameters, the held-out examples it was "
        "fitted on, and the calibration error before and after; null: the plain softmax",
    )
    folded: bool = Field(
        False,
        description="whether this server computes the net as the matrix products its affine "
        "stretches fold into (the Inception net: same function, 2.5x faster), not layer by layer",
    )
    nnpack_layers: list[str] = Field(
        default_factory=list,
        description="convolutions this server runs through NNPACK, chosen at startup as "
        "faster than oneDNN on this CPU",
    )


class ModelList(BaseModel):
    models: list[ModelInfo]


class Liveness(BaseModel):
    status: Literal["ok"]


class Readiness(BaseModel):
    status: Literal["ready"]
    models: list[str] = Field(description="the models loaded, warmed and served")
