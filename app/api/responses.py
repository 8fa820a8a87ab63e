"""OpenAPI descriptions of the problem+json error responses each route can give."""

from typing import Any

from pydantic import BaseModel, Field

from app.problems import PROBLEM_MEDIA_TYPE, PROBLEM_TYPE_BASE


class Problem(BaseModel):
    """RFC 9457 problem details."""

    type: str
    title: str
    status: int
    detail: str
    instance: str | None = Field(None, description="the request id (X-Request-ID)")
    errors: list[dict[str, Any]] | None = Field(None, description="validation failures")


_EXAMPLES = {
    400: ("bad-request", "Bad request", "the request body could not be parsed"),
    401: ("unauthorized", "Missing or invalid API key", "this server needs an API key"),
    403: ("forbidden", "Forbidden", "the model repository routes are off: no admin key is set"),
    404: ("not-found", "Not found", "no model named 'x'"),
    409: ("conflict", "Conflict", "this server runs 2 worker processes"),
    413: (
        "payload-too-large",
        "Request body too large",
        "request body over the limit of 5242880 bytes",
    ),
    415: ("unsupported-media-type", "Unsupported media type", "expected multipart/form-data"),
    422: ("validation-error", "Invalid request", "name: String should have at least 1 character"),
    429: ("queue-full", "Too many requests queued", "digit-resnet: 1024 requests already queued"),
    503: ("not-ready", "Service not ready", "models are still loading; retry shortly"),
    504: ("timeout", "Request timed out", "digit-resnet: no answer within 30 s"),
}


def problems(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for a route: each status documented with an example body."""
    out: dict[int | str, dict[str, Any]] = {}
    for status in statuses:
        slug, title, detail = _EXAMPLES[status]
        out[status] = {
            "model": Problem,
            "description": title,
            "content": {
                PROBLEM_MEDIA_TYPE: {
                    "example": {
                        "type": PROBLEM_TYPE_BASE + slug,
                        "title": title,
                        "status": status,
                        "detail": detail,
                        "instance": "3f2c1e0b9a8d4c7e",
                    }
                }
            },
        }
    return out
