"""Response schemas of the explanation routes: the plain answer plus where its evidence lies."""

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from app.schemas import ClassifyNameResponse, DigitAnswer

_BLANK: Any = [[0.0] * 28] * 28
_EXPLAINED = (
    "integrated gradients of the top label's raw logit; they add up to logit - baseline_logit, "
    "give or take delta"
)


Logit = Annotated[float, Field(description="the explained label's raw logit (before softmax)")]
BaselineLogit = Annotated[float, Field(description="the same logit for the baseline")]
Delta = Annotated[
    float,
    Field(
        description="sum(attributions) - (logit - baseline_logit): the error of the numerical "
        "integral (more steps, TINYZOO_EXPLAIN_*_STEPS, make it smaller)"
    ),
]


class DigitExplanation(DigitAnswer):
    """The plain answer, and which pixels made the best digit (the one explained)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "digit": 7,
                    "probability": 0.998,
                    "model": "digit-resnet",
                    "version": "1",
                    "predictions": [{"label": "7", "probability": 0.998}],
                    "input": _BLANK,
                    "attributions": _BLANK,
                    "logit": 11.2,
                    "baseline_logit": -1.3,
                    "delta": 0.04,
                    "overlay": "data:image/png;base64,iVBORw0KGgo...",
                }
            ]
        }
    )
    input: list[list[float]] = Field(
        description="the 28x28 image the model saw, rows of pixels in [0, 1], ink 1"
    )
    attributions: list[list[float]] = Field(
        description=f"28x28, one per pixel: {_EXPLAINED}; the baseline is blank paper, so a "
        "pixel without ink has 0"
    )
    logit: Logit
    baseline_logit: BaselineLogit
    delta: Delta
    overlay: str = Field(
        description="a PNG data URL, 280x280: the input in grey, pixels that raised the logit in "
        "red, those that lowered it in blue, stronger colour for more"
    )


class CharacterAttribution(BaseModel):
    char: str = Field(description="one character of the normalised name")
    attribution: float


class NameExplanation(ClassifyNameResponse):
    """The plain answer, and which letters made the best country (the one explained)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "name": "Nguyễn",
                    "normalized": "Nguyen",
                    "model": "name-gru",
                    "version": "1",
                    "predictions": [{"label": "Vietnamese", "probability": 0.97}],
                    "label": "Vietnamese",
                    "characters": [
                        {"char": "N", "attribution": 1.62},
                        {"char": "g", "attribution": 0.95},
                    ],
                    "logit": 5.11,
                    "baseline_logit": -0.48,
                    "delta": 0.003,
                }
            ]
        }
    )
    label: str = Field(description="the country explained: the best one")
    characters: list[CharacterAttribution] = Field(
        description=f"one per character of `normalized`, in order: {_EXPLAINED}; the baseline "
        "is a name of as many spaces"
    )
    logit: Logit
    baseline_logit: BaselineLogit
    delta: Delta
