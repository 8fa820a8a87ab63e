"""The demo page at ``/`` and its three static files, shipped inside the package."""

from importlib.resources import files
from typing import Final

from fastapi import APIRouter, Response

from app.errors import NotFound

router = APIRouter(include_in_schema=False)
STATIC: Final = files("app") / "static"
ASSETS: Final = {
    "app.css": "text/css; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
}
HEADERS: Final = {
    "Cache-Control": "no-cache",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data: blob:; object-src 'none'; "
        "base-uri 'none'; frame-ancestors 'none'"
    ),
}


def _file(name: str, media_type: str) -> Response:
    return Response((STATIC / name).read_bytes(), media_type=media_type, headers=HEADERS)


@router.api_route("/", methods=["GET", "HEAD"])
def index() -> Response:
    """The page that tries every model from a browser."""
    return _file("index.html", "text/html; charset=utf-8")


@router.api_route("/static/{name}", methods=["GET", "HEAD"])
def static(name: str) -> Response:
    """``app.css`` or ``app.js``; 404 for anything else."""
    if name not in ASSETS:
        raise NotFound(f"no static file {name!r}; there are {' and '.join(ASSETS)}")
    return _file(name, ASSETS[name])
