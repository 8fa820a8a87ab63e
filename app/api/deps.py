"""Dependencies shared by the routes, as ``Annotated`` aliases."""

from typing import Annotated

from fastapi import Depends, Request

from app.errors import NotReady, UnsupportedMediaType
from app.runtime import Runtime


def get_runtime(request: Request) -> Runtime:
    """The loaded runtime; 503 until every model is loaded and warmed."""
    runtime: Runtime | None = getattr(request.app.state, "runtime", None)
    if runtime is None or not runtime.ready:
        raise NotReady("models are still loading; retry shortly", headers={"Retry-After": "1"})
    return runtime


def require_multipart(request: Request) -> None:
    """415 unless the body is ``multipart/form-data``."""
    content_type = request.headers.get("content-type", "")
    if not content_type.lower().startswith("multipart/form-data"):
        raise UnsupportedMediaType(
            f"expected multipart/form-data with the image in a field named 'file', "
            f"got {content_type or 'no Content-Type'!r}"
        )


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
