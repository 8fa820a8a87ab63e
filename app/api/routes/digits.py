"""Digit image routes: the answer, and the answer explained."""

import base64
from typing import Annotated, Any, Final, Literal

from fastapi import APIRouter, Depends, File, Query, Request, Response, UploadFile

from app.api.deps import GoneDep, ServicesDep, require_upload, upload_bytes
from app.api.responses import problems
from app.schemas import DigitModel, DigitResponse
from app.schemas_explain import DigitExplanation

router = APIRouter(tags=["digits"], form_limits={"max_files": 1, "max_fields": 16})
"""An upload is one file; a few other fields (a filename, a note) are tolerated."""
IMAGE_TYPES: Final = ("png", "jpeg", "gif", "bmp", "webp", "tiff")
RAW_IMAGE: Final[dict[str, Any]] = {
    "requestBody": {
        "content": {
            f"image/{kind}": {"schema": {"type": "string", "format": "binary"}}
            for kind in IMAGE_TYPES
        },
        "description": "the image as a multipart form's field `file`, or the image itself as "
        "the body with its image/* Content-Type (`curl --data-binary @seven.png -H "
        "'Content-Type: image/png'`); the format is told from the bytes either way",
    }
}
UploadFileDep = Annotated[
    UploadFile | None, File(description="PNG, JPEG, GIF, BMP, WebP or TIFF image")
]


@router.post(
    "/digit",
    response_model=DigitResponse,
    response_model_exclude_none=True,
    responses=problems(400, 413, 415, 422, 429, 503, 504),
    dependencies=[Depends(require_upload)],
    openapi_extra=RAW_IMAGE,
)
async def classify_digit(
    request: Request,
    services: ServicesDep,
    gone: GoneDep,
    file: UploadFileDep = None,
    model: Annotated[DigitModel, Query(description="which digit network")] = "digit-resnet",
    top_k: Annotated[int, Query(ge=1, le=10)] = 3,
    debug: Annotated[bool, Query(description="include the 28x28 input the model saw")] = False,
    answer_anyway: Annotated[
        bool,
        Query(
            description="answer even an upload that does not look like a digit, flagged "
            "with abstained=true, instead of a 422"
        ),
    ] = False,
) -> DigitResponse:
    """Read a handwritten digit from a photo, scan or drawing."""
    data = await upload_bytes(request, file)
    return await services.digits.classify(
        model, data, top_k=top_k, debug=debug, answer_anyway=answer_anyway, gone=gone
    )


@router.post(
    "/digit/explain",
    response_model=DigitExplanation,
    responses={
        **problems(400, 413, 415, 422, 429, 503, 504),
        200: {
            "content": {"image/png": {"schema": {"type": "string", "format": "binary"}}},
            "description": "JSON, or with format=png the overlay picture alone",
        },
    },
    dependencies=[Depends(require_upload)],
    openapi_extra=RAW_IMAGE,
)
async def explain_digit(
    request: Request,
    services: ServicesDep,
    gone: GoneDep,
    file: UploadFileDep = None,
    model: Annotated[DigitModel, Query(description="which digit network")] = "digit-resnet",
    top_k: Annotated[int, Query(ge=1, le=10)] = 3,
    format: Annotated[
        Literal["json", "png"], Query(description="png: answer with the overlay picture only")
    ] = "json",
) -> DigitExplanation | Response:
    """Read a digit and show which pixels made the model choose it (integrated gradients)."""
    data = await upload_bytes(request, file)
    explanation = await services.digits.explain(model, data, top_k=top_k, gone=gone)
    if format == "png":
        png = base64.b64decode(explanation.overlay.partition(",")[2])
        return Response(png, media_type="image/png")
    return explanation
