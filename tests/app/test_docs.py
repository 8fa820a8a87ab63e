"""The API documentation pages: everything they load comes from the service itself."""

import re

import httpx
import pytest

from app.api.routes.docs import ASSETS

pytestmark = pytest.mark.anyio
PAGES = ["/docs", "/redoc"]


@pytest.mark.parametrize("path", PAGES)
async def test_docs_pages_load_only_what_the_service_serves(
    client: httpx.AsyncClient, path: str
) -> None:
    page = await client.get(path)
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert not re.search(r"https?://", page.text), "the page names a URL off this host"
    loaded = re.findall(r'(?:src|href|spec-url)="([^"]+)"|url: *\'([^\']+)', page.text)
    urls = {a or b for a, b in loaded}
    assert "/openapi.json" in urls
    for url in urls:
        assert url.startswith("/")
        assert (await client.get(url)).status_code == 200, url


async def test_swagger_ui_asks_no_online_validator(client: httpx.AsyncClient) -> None:
    assert '"validatorUrl": null' in (await client.get("/docs")).text


async def test_docs_assets_are_served_with_their_types_and_nothing_else(
    client: httpx.AsyncClient,
) -> None:
    for name, media_type in ASSETS.items():
        asset = await client.get(f"/docs/assets/{name}")
        assert asset.status_code == 200
        assert asset.headers["content-type"] == media_type
        assert len(asset.content) > 1000
    missing = await client.get("/docs/assets/..%2Fsettings.py")
    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/problem+json"


async def test_metrics_name_the_docs_routes(client: httpx.AsyncClient) -> None:
    for path in [*PAGES, "/openapi.json", "/docs/assets/swagger-ui.css"]:
        await client.get(path)
    text = (await client.get("/metrics")).text
    for route in [*PAGES, "/openapi.json", "/docs/assets/{name}"]:
        assert f'route="{route}",status="200"' in text, route
    assert 'route="unmatched",status="200"' not in text
