"""OpenAPI descriptions of the problem+json error responses each route can give, from the one
error table (``app.errors.ERRORS``)."""

from typing import Any

from pydantic import BaseModel, Field

from app.errors import error_for
from app.problems import PROBLEM_MEDIA_TYPE, PROBLEM_TYPE_BASE


class Problem(BaseModel):
    """RFC 9457 problem details."""

    type: str
    title: str
    status: int
    detail: str
    instance: str | None = Field(None, description="the request id (X-Request-ID)")
    errors: list[dict[str, Any]] | None = Field(None, description="validation failures")


def problems(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for a route: each status documented with an example body."""
    out: dict[int | str, dict[str, Any]] = {}
    for status in statuses:
        kind = error_for(status)
        out[status] = {
            "model": Problem,
            "description": kind.title,
            "content": {
                PROBLEM_MEDIA_TYPE: {
                    "example": {
                        "type": PROBLEM_TYPE_BASE + kind.slug,
                        "title": kind.title,
                        "status": status,
                        "detail": kind.example,
                        "instance": "3f2c1e0b9a8d4c7e",
                    }
                }
            },
        }
    return out
