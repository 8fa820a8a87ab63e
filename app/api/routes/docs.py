"""The API documentation: Swagger UI at ``/docs``, ReDoc at ``/redoc`` and ``/openapi.json``.

FastAPI's own pages load their scripts and styles from a public CDN; these are FastAPI's pages
(``get_swagger_ui_html``, ``get_redoc_html``) with the assets served from here, out of the pinned
``fastapi-offline`` package (Swagger UI 5, ReDoc 2), so the docs work on a host with no way out.
Swagger UI's online validator badge and ReDoc's web fonts are turned off, and the pages'
Content-Security-Policy keeps every request on this host: ReDoc's sidebar would fetch Redocly's
logo from a CDN (it hides the image when it cannot).
"""

from functools import cache
from importlib.resources import files
from typing import Final

from fastapi import APIRouter, Request, Response
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse

from app.errors import NotFound

router = APIRouter(include_in_schema=False)
OPENAPI_URL: Final = "/openapi.json"
ASSETS_URL: Final = "/docs/assets"
ASSETS: Final = {
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "swagger-ui.css": "text/css; charset=utf-8",
    "redoc.standalone.js": "text/javascript; charset=utf-8",
    "favicon.png": "image/png",
}
# The assets change only with the package's pinned version: a day in the browser's cache.
ASSET_HEADERS: Final = {
    "Cache-Control": "public, max-age=86400",
    "X-Content-Type-Options": "nosniff",
}
# FastAPI's pages start Swagger UI with an inline script; both UIs inject styles, ReDoc runs its
# search in a worker from a blob. Nothing is fetched from anywhere but this host.
PAGE_HEADERS: Final = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self' 'unsafe-inline'; "
        "style-src 'self' 'unsafe-inline'; img-src 'self' data:; worker-src 'self' blob:; "
        "object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
}


@cache
def _asset(name: str) -> bytes:
    return (files("fastapi_offline") / "static" / name).read_bytes()


def _urls(request: Request) -> tuple[str, str]:
    """The OpenAPI document's and the assets' URLs, behind a proxy's root path too."""
    root = request.scope.get("root_path", "")
    return root + OPENAPI_URL, root + ASSETS_URL


@router.get(OPENAPI_URL)
def openapi(request: Request) -> JSONResponse:
    """The OpenAPI document of every route."""
    return JSONResponse(request.app.openapi())


@router.get("/docs")
def swagger_ui(request: Request) -> HTMLResponse:
    """Swagger UI: every route, schema and example, with "Try it out"."""
    openapi_url, assets = _urls(request)
    page = get_swagger_ui_html(
        openapi_url=openapi_url,
        title=f"{request.app.title} - Swagger UI",
        swagger_js_url=f"{assets}/swagger-ui-bundle.js",
        swagger_css_url=f"{assets}/swagger-ui.css",
        swagger_favicon_url=f"{assets}/favicon.png",
        oauth2_redirect_url=None,
        swagger_ui_parameters={"validatorUrl": None},
    )
    page.headers.update(PAGE_HEADERS)
    return page


@router.get("/redoc")
def redoc(request: Request) -> HTMLResponse:
    """ReDoc: the same document as one long page."""
    openapi_url, assets = _urls(request)
    page = get_redoc_html(
        openapi_url=openapi_url,
        title=f"{request.app.title} - ReDoc",
        redoc_js_url=f"{assets}/redoc.standalone.js",
        redoc_favicon_url=f"{assets}/favicon.png",
        with_google_fonts=False,
    )
    page.headers.update(PAGE_HEADERS)
    return page


@router.get(ASSETS_URL + "/{name}")
def asset(name: str) -> Response:
    """One of the documentation pages' scripts, styles or icon; 404 for anything else."""
    if name not in ASSETS:
        raise NotFound(f"no documentation asset {name!r}; there are {', '.join(ASSETS)}")
    return Response(_asset(name), media_type=ASSETS[name], headers=ASSET_HEADERS)
