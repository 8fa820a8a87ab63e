"""``POST /digit`` with the image itself as the body (its ``image/*`` Content-Type), as many
clients send it: the same answers, limits and errors as the multipart upload."""

from typing import Any

import httpx
import pytest

from app.settings import Settings
from tests.app.test_api import assert_problem, digit_png

pytestmark = pytest.mark.anyio


def raw(blob: bytes, media_type: str = "image/png") -> dict[str, Any]:
    return {"content": blob, "headers": {"Content-Type": media_type}}


async def test_a_raw_image_is_answered_as_the_same_image_in_a_form(
    client: httpx.AsyncClient,
) -> None:
    for blob in (digit_png(), digit_png(200, dark_on_light=True)):
        form = await client.post("/digit?top_k=10", files={"file": ("d.png", blob, "image/png")})
        body = await client.post("/digit?top_k=10", **raw(blob))
        assert form.status_code == body.status_code == 200
        assert body.json() == form.json()
    # the format is told from the bytes, whatever image/* type is sent
    assert (await client.post("/digit", **raw(digit_png(), "image/jpeg"))).status_code == 200
    explained = await client.post("/digit/explain?format=png", **raw(digit_png()))
    assert explained.status_code == 200
    assert explained.headers["content-type"] == "image/png"


async def test_raw_bodies_meet_the_same_errors(client: httpx.AsyncClient) -> None:
    assert "empty" in assert_problem(await client.post("/digit", **raw(b"")), 400)["detail"]
    assert_problem(await client.post("/digit", **raw(b"not an image at all" * 5)), 415)
    assert_problem(await client.post("/digit", **raw(digit_png(), "text/plain")), 415)
    assert_problem(await client.post("/digit", content=digit_png()), 415)  # no Content-Type
    form = await client.post("/digit", files={"picture": ("d.png", digit_png(), "image/png")})
    assert "'file'" in assert_problem(form, 422)["detail"]


async def test_a_raw_body_over_the_limit_is_a_413(settings: Settings, make_client: Any) -> None:
    small = settings.model_copy(update={"max_body_bytes": 2048})
    async with make_client(small) as client:
        too_big = digit_png() + b"\0" * 4096
        assert_problem(await client.post("/digit", **raw(too_big)), 413)


async def test_openapi_documents_the_raw_body(client: httpx.AsyncClient) -> None:
    spec = (await client.get("/openapi.json")).json()
    content = spec["paths"]["/digit"]["post"]["requestBody"]["content"]
    assert {"multipart/form-data", "image/png", "image/jpeg"} <= set(content)
