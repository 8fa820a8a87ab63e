"""DirectRoute answers every query exactly as FastAPI's own handling of the same endpoint does."""

from typing import Annotated, Any, Literal

import httpx
import pytest
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import JSONResponse, Response

from app.api.direct import DirectRoute, query_model
from app.settings import Settings

pytestmark = pytest.mark.anyio


async def echo(
    request: Request,
    model: Annotated[Literal["small", "large"], Query()] = "small",
    top_k: Annotated[int, Query(ge=1, le=10)] = 3,
    debug: bool = False,
    temperature: Annotated[float | None, Query(gt=0, alias="temp")] = None,
) -> Response:
    values = {"model": model, "top_k": top_k, "debug": debug, "temperature": temperature}
    return JSONResponse({**values, "path": request.url.path})


async def refuse() -> None:
    raise HTTPException(401, "no key")


def two_apps(**router_kwargs: object) -> tuple[FastAPI, FastAPI]:
    apps = []
    for route_class in (DirectRoute, None):
        router = APIRouter(**({"route_class": route_class} if route_class else {}))
        router.post("/echo")(echo)
        app = FastAPI()
        app.include_router(router, **router_kwargs)  # type: ignore[arg-type]
        apps.append(app)
    return apps[0], apps[1]


QUERIES = [
    "",
    "model=large&top_k=10&debug=true",
    "debug=1",
    "debug=yes",
    "debug=off",
    "debug=maybe",
    "top_k=0",
    "top_k=11",
    "top_k=2.5",
    "top_k=",
    "top_k=%203",
    "top_k=1&top_k=5",
    "model=medium",
    "model=LARGE",
    "temp=0.5",
    "temp=0",
    "temperature=0.5",
    "unknown=1&model=large",
    "top_k=x&model=medium",
]


@pytest.mark.parametrize("query", QUERIES)
async def test_direct_route_answers_like_fastapi(query: str) -> None:
    direct, standard = two_apps()
    answers = []
    for app in (direct, standard):
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://t"
        ) as client:
            r = await client.post(f"/echo?{query}")
            answers.append((r.status_code, r.json()))
    assert answers[0] == answers[1]


async def test_routes_with_dependencies_keep_them() -> None:
    direct, _ = two_apps(dependencies=[Depends(refuse)])
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=direct), base_url="http://t"
    ) as client:
        r = await client.post("/echo?top_k=2")
    assert r.status_code == 401


def test_only_plain_query_endpoints_are_served_directly() -> None:
    async def with_list(request: Request, tag: Annotated[list[str], Query()]) -> None: ...

    async def without_request(top_k: int = 3) -> None: ...

    router = APIRouter(route_class=DirectRoute)
    for path, endpoint in (("/a", echo), ("/b", with_list), ("/c", without_request)):
        router.post(path)(endpoint)
    served = [query_model(route.dependant) is not None for route in router.routes]  # type: ignore[attr-defined]
    assert served == [True, False, False]


async def test_digit_route_is_guarded_by_the_api_key_when_one_is_set(
    settings: Settings, make_client: Any
) -> None:
    async with make_client(settings.model_copy(update={"api_key": "s3cret"})) as c:
        upload = {"file": ("d.png", b"\x89PNG\r\n\x1a\n")}
        r = await c.post("/digit?top_k=2", files=upload)
        assert r.status_code == 401
        assert r.headers["content-type"].startswith("application/problem+json")
        r = await c.post("/digit?top_k=2", files=upload, headers={"Authorization": "Bearer s3cret"})
        assert r.status_code == 400  # past the key check: the bytes are no image


def test_routes_added_directly_document_what_included_routers_would(settings: Settings) -> None:
    """Without an API key the routers' routes are added to the app as they are (no per-request
    include resolution): the OpenAPI document is the one ``include_router`` gives."""
    from app.api.routes import char_rnn, demo, digits, health, models, names
    from app.main import create_app

    served = create_app(settings)
    assert "/digit" in [getattr(route, "path", None) for route in served.router.routes]
    included = FastAPI(title=served.title, version=served.version, description=served.description)
    for router in (names.router, digits.router, char_rnn.router, models.router):
        included.include_router(router)
    included.include_router(health.router)
    included.include_router(demo.router)
    assert served.openapi() == included.openapi()
