"""The bad-input catalogue: each case gets its exact status and a useful problem+json detail,
and the service answers normally afterwards."""

import io
import struct
import zlib
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image

from tests.app.test_api import assert_problem, digit_png

pytestmark = pytest.mark.anyio
JSON = {"content-type": "application/json"}


async def still_serving(client: httpx.AsyncClient) -> None:
    ok = await client.post("/classify-name", json={"name": "Smith"})
    assert ok.status_code == 200
    digit = await client.post("/digit", files={"file": ("d.png", digit_png(), "image/png")})
    assert digit.status_code == 200


@pytest.mark.parametrize(
    ("label", "request_kw", "status", "detail"),
    [
        ("empty body", {"content": b"", "headers": JSON}, 422, "Field required"),
        ("malformed JSON", {"content": b'{"name": ', "headers": JSON}, 422, "JSON"),
        (
            "text/plain",
            {"content": b'{"name": "x"}', "headers": {"content-type": "text/plain"}},
            415,
            "application/json",
        ),
        ("no content type", {"content": b'{"name": "x"}'}, 415, "no Content-Type"),
        ("form instead of JSON", {"data": {"name": "x"}}, 415, "application/x-www-form"),
        ("missing field", {"json": {"top_k": 2}}, 422, "name: Field required"),
        ("wrong type", {"json": {"name": 5}}, 422, "valid string"),
        ("null name", {"json": {"name": None}}, 422, "valid string"),
        ("array body", {"json": ["Smith"]}, 422, "valid dictionary"),
        ("unknown field", {"json": {"name": "Smith", "nmae": 1}}, 422, "Extra inputs"),
        ("top_k over classes", {"json": {"name": "Smith", "top_k": 19}}, 422, "less than or equal"),
        (
            "huge JSON",
            {"content": b'{"name": "' + b"a" * (6 << 20) + b'"}', "headers": JSON},
            413,
            "over the limit",
        ),
        (
            "deeply nested JSON",
            {"content": b"[" * 100_000 + b"]" * 100_000, "headers": JSON},
            400,
            "nested too deeply",
        ),
        ("invalid UTF-8", {"content": b'{"name": "\xff\xfe"}', "headers": JSON}, 400, "not UTF-8"),
        ("empty name", {"json": {"name": ""}}, 422, "at least 1 character"),
        ("whitespace name", {"json": {"name": " \t\n "}}, 422, "no letters left"),
        ("emoji name", {"json": {"name": "🙂🙃"}}, 422, "no letters left"),
        ("control characters", {"json": {"name": "\x01\x02\x07"}}, 422, "no letters left"),
        ("only NUL bytes", {"json": {"name": "\x00\x00"}}, 422, "no letters left"),
        ("100,000 characters", {"json": {"name": "a" * 100_000}}, 422, "at most 1000"),
        ("long after folding", {"json": {"name": "Ab " * 40}}, 422, "the limit is 64"),
    ],
)
async def test_bad_name_requests(
    client: httpx.AsyncClient, label: str, request_kw: dict[str, Any], status: int, detail: str
) -> None:
    body = assert_problem(await client.post("/classify-name", **request_kw), status)
    assert detail in body["detail"], (label, body["detail"])
    await still_serving(client)


@pytest.mark.parametrize(
    ("name", "normalized"),
    [
        ("Sm\x00ith", "Smith"),
        ("\u202eSmith\u202c", "Smith"),
        ("Ἀθῆναι", "Athinai"),
        ("محمد", "Mhmd"),
        ("  de   la  Cruz ", "De La Cruz"),
        ("José-María", "Jose Maria"),
    ],
)
async def test_odd_but_usable_names_are_folded(
    client: httpx.AsyncClient, name: str, normalized: str
) -> None:
    response = await client.post("/classify-name", json={"name": name})
    assert response.status_code == 200
    assert response.json()["normalized"] == normalized


@pytest.mark.parametrize(
    ("change", "detail"),
    [
        ({"temperature": 0}, "greater than 0"),
        ({"temperature": -1}, "greater than 0"),
        ({"temperature": 1e300}, "less than or equal to 10"),
        ({"max_chars": 2001}, "2000"),
        ({"model": "char-rnn-hello"}, "char-rnn-shakespeare"),
        ({"prompt": "naïve"}, "'ï'"),
        ({"top_k": 0}, "greater than or equal to 1"),
        ({"seed": -1}, "greater than or equal"),
    ],
)
async def test_bad_generation_requests(
    client: httpx.AsyncClient, change: dict[str, Any], detail: str
) -> None:
    response = await client.post("/char-rnn/generate", json={"prompt": "A", **change})
    assert detail in assert_problem(response, 422)["detail"]


def _png_header_only(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims width x height; the pixel data is a short stub."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data))
            + kind
            + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 1000))
        + chunk(b"IEND", b"")
    )


def _encoded(image: Image.Image, fmt: str, **kw: Any) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format=fmt, **kw)
    return buf.getvalue()


async def test_bad_uploads(client: httpx.AsyncClient) -> None:
    async def post(blob: bytes, name: str = "x.png", mime: str = "image/png") -> httpx.Response:
        return await client.post("/digit", files={"file": (name, blob, mime)})

    assert "empty" in assert_problem(await post(b""), 400)["detail"]
    assert_problem(await post(digit_png()[:60]), 400)
    assert "text" in assert_problem(await post(b"hello, I am not an image" * 10), 415)["detail"]
    assert_problem(await post(b'<svg xmlns="http://www.w3.org/2000/svg"/>', "x.svg"), 415)
    bomb = assert_problem(await post(_png_header_only(30000, 30000)), 413)
    assert "over the limit of 50,000,000 pixels" in bomb["detail"]
    assert_problem(await post(_encoded(Image.new("L", (1, 1), 255), "PNG")), 422)
    assert_problem(await post(_encoded(Image.new("L", (10000, 1), 0), "PNG")), 422)
    await still_serving(client)


def _form(*parts: tuple[str, bytes], boundary: str = "b0undary", close: bool = True) -> bytes:
    """A multipart/form-data body of (Content-Disposition parameters, data) parts."""
    body = b"".join(
        f"--{boundary}\r\nContent-Disposition: form-data; {params}\r\n"
        f"Content-Type: application/octet-stream\r\n\r\n".encode()
        + data
        + b"\r\n"
        for params, data in parts
    )
    return body + (f"--{boundary}--\r\n".encode() if close else b"")


# Starlette leaves the temporary file of a part cut off before its end to the garbage collector.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
async def test_malformed_multipart_bodies(client: httpx.AsyncClient) -> None:
    png = digit_png()
    form = {"content-type": "multipart/form-data; boundary=b0undary"}

    async def post(body: bytes, headers: dict[str, str] = form) -> httpx.Response:
        return await client.post("/digit", content=body, headers=headers)

    file = ('name="file"; filename="d.png"', png)
    ok = await post(_form(('name="note"', b"from the scanner"), file))
    assert ok.status_code == 200, ok.text  # other fields are ignored
    unnamed = assert_problem(await post(_form(('filename="d.png"', png))), 400)
    assert "name" in unnamed["detail"]
    no_boundary = {"content-type": "multipart/form-data"}
    assert "boundary" in assert_problem(await post(_form(file), no_boundary), 400)["detail"]
    assert_problem(await post(b"not a multipart body at all"), 400)
    long_boundary = {"content-type": "multipart/form-data; boundary=" + "b" * 300}
    assert_problem(await post(_form(file, boundary="b" * 300), long_boundary), 400)
    many = assert_problem(await post(_form(*[('name="x"', b"1")] * 40, file)), 400)
    assert "fields" in many["detail"]
    twice = assert_problem(await post(_form(file, file)), 400)
    assert "files" in twice["detail"]
    for missing in (_form(('name="image"', png)), _form(file, close=False)[:-40]):
        problem = assert_problem(await post(missing), 422)  # a cut-off part is not there
        assert "file" in problem["detail"] and problem["errors"][0]["loc"] == ["body", "file"]
    await still_serving(client)


async def test_unusual_but_valid_images_are_read(client: httpx.AsyncClient) -> None:
    one = Image.open(io.BytesIO(digit_png(112, dark_on_light=True)))
    sixteen = Image.fromarray(np.asarray(one, dtype=np.uint16) * 257)
    frames = [one.convert("P"), Image.new("P", one.size, 0)]
    gif = io.BytesIO()
    frames[0].save(gif, format="GIF", save_all=True, append_images=frames[1:])
    alpha = Image.new("LA", one.size, (0, 0))
    alpha.putalpha(Image.eval(one, lambda v: 255 - v))
    cases = {
        "lying extension": (digit_png(), "photo.jpg", "image/jpeg"),
        "16-bit PNG": (_encoded(sixteen, "PNG"), "a.png", "image/png"),
        "CMYK JPEG": (_encoded(one.convert("CMYK"), "JPEG"), "a.jpg", "image/jpeg"),
        "palette PNG": (_encoded(one.convert("P"), "PNG"), "a.png", "image/png"),
        "alpha PNG": (_encoded(alpha, "PNG"), "a.png", "image/png"),
        "animated GIF": (gif.getvalue(), "a.gif", "image/gif"),
        "BMP": (_encoded(one, "BMP"), "a.bmp", "image/bmp"),
        "WebP": (_encoded(one, "WEBP"), "a.webp", "image/webp"),
        "TIFF": (_encoded(one, "TIFF"), "a.tif", "image/tiff"),
    }
    for label, (blob, name, mime) in cases.items():
        response = await client.post("/digit", files={"file": (name, blob, mime)})
        assert response.status_code == 200, (label, response.text)


@pytest.mark.parametrize(
    ("method", "path", "kw"),
    [
        ("get", "/models/..%2F..%2Fetc%2Fpasswd", {}),
        ("get", "/models/../../etc/passwd", {}),
        ("post", "/digit?model=../../weights/x", {"files": {"file": ("x.png", b"x", "image/png")}}),
        ("post", "/char-rnn/transduce", {"json": {"text": "hello", "model": "../hello"}}),
    ],
)
async def test_traversal_attempts_in_names_are_refused(
    client: httpx.AsyncClient, method: str, path: str, kw: dict[str, Any]
) -> None:
    response = await getattr(client, method)(path, **kw)
    assert response.status_code in (404, 422)
    assert_problem(response, response.status_code)


@pytest.mark.parametrize(
    ("path", "raw"),
    [
        ("/classify-name", b'{"name": "\\ud800"}'),
        ("/classify-name", b'{"name": "Sm\\udfffith"}'),
        ("/classify-name", b'{"name": "Smith", "top_k": "\\ud800"}'),
        ("/classify-name", b'{"\\ud800": 1, "name": "Smith"}'),
        ("/classify-name/batch", b'{"names": ["Smith", "Sm\\udfffith"]}'),
        ("/classify-name/batch", b'{"names": ["\\ud800"], "\\udc00": 2}'),
        ("/char-rnn/transduce", b'{"text": "hel\\ud800lo"}'),
        ("/char-rnn/transduce", b'{"text": "hello", "model": "\\ud800"}'),
        ("/char-rnn/generate", b'{"prompt": "\\ud800"}'),
        ("/char-rnn/generate", b'{"prompt": "A", "model": "\\ud800"}'),
    ],
)
async def test_lone_surrogates_are_refused_before_the_model(
    client: httpx.AsyncClient, path: str, raw: bytes
) -> None:
    """``"\\ud800"`` is valid JSON but no character: a 422 that shows it escaped, never a 500."""
    response = await client.post(path, content=raw, headers=JSON)
    body = assert_problem(response, 422)
    assert "\ud800" not in response.text and "\udfff" not in str(body)
    await still_serving(client)


async def test_nan_and_infinite_pixels_are_a_422(client: httpx.AsyncClient) -> None:
    for bad in (np.nan, np.inf, -np.inf):
        pixels = np.zeros((28, 28), dtype=np.float32)
        pixels[6:22, 12:16] = 1.0
        pixels[0, 0] = bad
        tiff = _encoded(Image.fromarray(pixels, mode="F"), "TIFF")
        response = await client.post("/digit", files={"file": ("x.tif", tiff, "image/tiff")})
        assert "NaN or infinite" in assert_problem(response, 422)["detail"]
    await still_serving(client)
