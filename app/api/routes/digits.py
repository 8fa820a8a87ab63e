"""Digit image route."""

from typing import Annotated

import anyio.to_thread
from fastapi import APIRouter, Query, Request, Response

from app.api.deps import client_gone, get_runtime
from app.api.direct import DirectRoute
from app.api.responses import json_response, problems
from app.api.uploads import read_form_file
from app.errors import ClientClosedRequest, UndecodableImage
from app.imaging import open_image
from app.schemas import DigitModel, DigitResponse
from app.services.common import top_predictions
from app.services.digits import png_data_url, prepare_image, prepare_inline

router = APIRouter(tags=["digits"], route_class=DirectRoute)

_UPLOAD = {
    "required": True,
    "content": {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "required": ["file"],
                "properties": {
                    "file": {
                        "type": "string",
                        "contentMediaType": "application/octet-stream",
                        "description": "PNG, JPEG, GIF, BMP, WebP or TIFF image",
                    }
                },
            }
        }
    },
}
"""The body, documented by hand: it is read by ``read_form_file``, not by FastAPI's forms."""


@router.post(
    "/digit",
    response_model=DigitResponse,
    response_model_exclude_none=True,
    responses=problems(400, 413, 415, 422, 429, 503, 504),
    openapi_extra={"requestBody": _UPLOAD},
)
async def classify_digit(
    request: Request,
    model: Annotated[DigitModel, Query(description="which digit network")] = "digit-resnet",
    top_k: Annotated[int, Query(ge=1, le=10)] = 3,
    debug: Annotated[bool, Query(description="include the 28x28 input the model saw")] = False,
) -> Response:
    """Read a handwritten digit from a photo, scan or drawing."""
    data = await read_form_file(request, "file", what="image")
    runtime = get_runtime(request)  # not a dependency: see app.api.deps
    batcher = runtime.batcher(model)
    gone = client_gone(request)
    if gone is not None and gone():  # left while the upload waited: spare the decoding
        raise ClientClosedRequest("the client went away before its image was read")
    if not data:
        raise UndecodableImage("the uploaded file is empty")
    image = open_image(data, max_pixels=runtime.settings.max_image_pixels)  # the header only
    if prepare_inline(image):
        array = prepare_image(image)
    else:
        array = await anyio.to_thread.run_sync(prepare_image, image, limiter=runtime.cpu_limiter)
    probs = await batcher.submit(array, gone)
    predictions = top_predictions(probs, runtime.digits[model].labels, top_k)
    best = predictions[0]
    response = DigitResponse(
        digit=int(best.label),
        probability=best.probability,
        model=model,
        predictions=predictions,
        image=png_data_url(array) if debug else None,
    )
    return json_response(response)
