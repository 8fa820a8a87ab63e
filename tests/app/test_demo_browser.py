"""The demo page at ``/`` and the API docs in headless Chromium, against the real service on the
committed weights.

The service runs with uvicorn in a subprocess on a free port; Playwright drives the browser.
A full-page screenshot of every test's final state is kept under ``artifacts/demo/``.
"""

import base64
import contextlib
import io
import json
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image, ImageDraw

CHROMIUM = Path("/usr/bin/chromium")
if not CHROMIUM.exists():
    pytest.skip(
        f"{CHROMIUM} is absent: `make browser` installs it (Debian's chromium, through apt-get)",
        allow_module_level=True,
    )

from playwright.sync_api import (  # noqa: E402
    Browser,
    FilePayload,
    Page,
    Playwright,
    expect,
    sync_playwright,
)

PROJECT = Path(__file__).resolve().parents[2]
ARTIFACTS = PROJECT / "artifacts" / "demo"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SURNAME, COUNTRY = "Nguyen", "Vietnamese"
STARTUP_S = 60


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextlib.contextmanager
def _serve(log_dir: Path, **settings: str) -> Iterator[str]:
    """The real service (``app.main:app``) on the committed weights; yields its base URL."""
    port = _free_port()
    kept = ("TINYZOO_DEVICE", "TINYZOO_THREADS")
    env = {k: v for k, v in os.environ.items() if not k.startswith("TINYZOO_") or k in kept}
    env |= {"TINYZOO_WEIGHTS_DIR": str(PROJECT / "weights"), "TINYZOO_LOG_LEVEL": "WARNING"}
    env |= {f"TINYZOO_{k.upper()}": v for k, v in settings.items()}
    log_path = log_dir / "uvicorn.log"
    base = f"http://127.0.0.1:{port}"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "app.main:app", "--port", str(port)],
            cwd=PROJECT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            _wait_ready(base, proc, log_path)
            yield base
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with _serve(tmp_path_factory.mktemp("server")) as base:
        yield base


def _wait_ready(base: str, proc: "subprocess.Popen[bytes]", log_path: Path) -> None:
    deadline = time.monotonic() + STARTUP_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"the service exited with {proc.returncode}:\n{log_path.read_text()}")
        try:
            if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    pytest.fail(f"the service was not ready within {STARTUP_S} s:\n{log_path.read_text()}")


@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="module")
def browser(playwright: Playwright) -> Iterator[Browser]:
    browser = playwright.chromium.launch(
        executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
    )
    yield browser
    browser.close()


@pytest.fixture
def page(browser: Browser, server: str, request: pytest.FixtureRequest) -> Iterator[Page]:
    """The demo page, loaded; fails the test on any uncaught script error."""
    context = browser.new_context(viewport={"width": 1280, "height": 900}, base_url=server)
    page = context.new_page()
    page.set_default_timeout(10_000)
    script_errors: list[str] = []
    page.on("pageerror", lambda exc: script_errors.append(str(exc)))
    page.goto("/")
    expect(page.locator("#model-rows tr")).to_have_count(5)
    yield page
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=ARTIFACTS / f"{request.node.name}.png", full_page=True)
    context.close()
    assert not script_errors, script_errors


def _draw(page: Page, *strokes: list[tuple[float, float]]) -> None:
    """Mouse strokes on the drawing pad, in coordinates of a 280 x 280 pad."""
    box = page.locator("#pad").bounding_box()
    assert box is not None
    scale = box["width"] / 280
    for stroke in strokes:
        points = [(box["x"] + x * scale, box["y"] + y * scale) for x, y in stroke]
        page.mouse.move(*points[0])
        page.mouse.down()
        for point in points[1:]:
            page.mouse.move(*point, steps=12)
        page.mouse.up()


def _png(draw: Any, size: tuple[int, int] = (200, 240)) -> bytes:
    image = Image.new("RGB", size, "white")
    draw(ImageDraw.Draw(image))
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def _upload(page: Page, name: str, data: bytes) -> None:
    page.locator("#photo").set_input_files(
        files=[FilePayload(name=name, mimeType="image/png", buffer=data)]
    )


def _problem_detail(server: str, method: str, path: str, **kwargs: Any) -> str:
    response = httpx.request(method, server + path, timeout=30, **kwargs)
    assert response.status_code >= 400
    assert response.headers["content-type"] == "application/problem+json"
    detail: str = response.json()["detail"]
    assert detail
    return detail


def _the_page_sends_a_reduced_grey_drawing(page: Page, response: Any) -> None:
    """What the page sent for its drawing: an 8-bit grey image at a third of the pad's size,
    read as the canvas itself (its 280 x 280 RGBA PNG) is: the same digit, probability within
    0.01."""
    body = response.request.post_data_buffer
    assert response.request.headers["content-type"] == "image/bmp"
    assert body is not None and len(body) < 12_000
    sent = Image.open(io.BytesIO(body))
    assert (sent.format, sent.mode, sent.size) == ("BMP", "L", (93, 93))
    canvas = page.locator("#pad").evaluate("pad => pad.toDataURL('image/png')")
    png = base64.b64decode(canvas.partition(",")[2])
    full = httpx.post(
        response.url, files={"file": ("pad.png", png, "image/png")}, timeout=30
    ).json()
    answer = response.json()
    assert answer["digit"] == full["digit"]
    assert abs(answer["probability"] - full["probability"]) <= 0.01


def test_drawn_digits_are_read(page: Page) -> None:
    result = page.locator("#digit-result")
    _draw(page, [(140, 45), (138, 235)])
    expect(result).to_have_text("1")
    expect(page.locator("#digit-bars li")).to_have_count(10)
    expect(page.locator("#digit-bars li.best .bar-label")).to_have_text("1")
    seen = page.locator("#digit-seen")
    expect(seen).to_be_visible()
    assert seen.evaluate("img => [img.naturalWidth, img.naturalHeight]") == [28, 28]
    assert seen.evaluate("img => getComputedStyle(img).imageRendering") == "pixelated"

    page.get_by_role("button", name="Clear").click()
    expect(result).to_have_text("–")
    expect(page.locator("#digit-bars li")).to_have_count(0)
    _draw(page, [(70, 60), (210, 60), (120, 240)])
    expect(result).to_have_text("7")

    with page.expect_response(lambda r: "/digit?" in r.url) as sent:
        page.get_by_label("Model", exact=True).select_option("digit-inception")
    expect(page.locator("#digit-confidence")).to_contain_text("digit-inception")
    expect(result).to_have_text("7")
    _the_page_sends_a_reduced_grey_drawing(page, sent.value)


def test_uploaded_and_dropped_photos_are_read(page: Page) -> None:
    zero = _png(lambda d: d.ellipse((40, 30, 160, 210), outline="black", width=18))
    _upload(page, "zero.png", zero)
    expect(page.locator("#photo-name")).to_have_text("zero.png")
    expect(page.locator("#digit-result")).to_have_text("0")
    expect(page.locator("#digit-bars li")).to_have_count(10)

    one = _png(lambda d: d.line((100, 30, 100, 210), fill="black", width=18))
    transfer = page.evaluate_handle(
        """(data) => {
            const bytes = Uint8Array.from(atob(data), (c) => c.charCodeAt(0));
            const transfer = new DataTransfer();
            transfer.items.add(new File([bytes], "one.png", { type: "image/png" }));
            return transfer;
        }""",
        base64.b64encode(one).decode(),
    )
    page.dispatch_event("#drop", "drop", {"dataTransfer": transfer})
    expect(page.locator("#photo-name")).to_have_text("one.png")
    expect(page.locator("#digit-result")).to_have_text("1")


def test_surname_is_classified_as_you_type(page: Page) -> None:
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url) if "/classify-name" in r.url else None)
    page.get_by_label("Surname (any script)").press_sequentially(SURNAME, delay=30)
    expect(page.locator("#name-bars li").first.locator(".bar-label")).to_have_text(COUNTRY)
    expect(page.locator("#name-bars li")).to_have_count(5)
    expect(page.locator("#name-normalized")).to_contain_text(SURNAME)
    assert len(requests) <= 2, "typing should be debounced"


def test_generated_text_streams_into_the_page(page: Page, server: str) -> None:
    page.get_by_label("Prompt").fill("ROMEO:")
    page.get_by_label("Characters").fill("100")
    page.get_by_label("Seed (optional)").fill("7")
    page.evaluate(
        """() => {
            window.storyUpdates = 0;
            new MutationObserver(() => window.storyUpdates++)
                .observe(document.getElementById("story-text"), { childList: true });
        }"""
    )
    page.get_by_role("button", name="Generate").click()
    expect(page.locator("#generate-status")).to_have_text("100 characters generated.")
    text = page.locator("#story-text").text_content()
    assert text is not None
    assert len(text) == 100
    assert page.evaluate("window.storyUpdates") > 1, "the text should arrive in several chunks"
    expected = httpx.post(
        f"{server}/char-rnn/generate",
        json={"prompt": "ROMEO:", "max_chars": 100, "temperature": 0.8, "seed": 7},
        timeout=30,
    ).json()["text"]
    assert text == expected

    page.get_by_label("Characters").fill("2000")
    page.get_by_label("Seed (optional)").fill("")
    page.get_by_role("button", name="Generate").click()
    expect(page.locator("#generate-status")).to_contain_text("characters…")
    page.get_by_role("button", name="Stop").click()
    expect(page.locator("#generate-status")).to_have_text(
        re.compile(r"^Stopped after \d+ characters\.$")
    )
    expect(page.get_by_role("button", name="Stop")).to_be_disabled()

    page.get_by_label("Text (letters h, e, l, o)").fill("hello")
    page.get_by_role("button", name="Transduce").click()
    expect(page.locator("#transduce-result")).to_contain_text("ohlol")


def test_a_digit_is_explained_with_a_heatmap(page: Page) -> None:
    why = page.get_by_role("button", name="Why this digit?")
    expect(why).to_have_attribute("aria-pressed", "false")
    _draw(page, [(70, 60), (210, 60), (120, 240)])
    expect(page.locator("#digit-result")).to_have_text("7")
    expect(page.locator("#digit-why")).to_be_hidden()
    with page.expect_response(lambda r: "/digit/explain?model=digit-resnet" in r.url) as sent:
        why.click()
    assert sent.value.status == 200
    expect(why).to_have_attribute("aria-pressed", "true")
    heatmap = page.get_by_role("img", name=re.compile(r"ink coloured: red where .* sure of 7"))
    expect(heatmap).to_be_visible()
    assert heatmap.evaluate("img => [img.naturalWidth, img.naturalHeight]") == [280, 280]
    red, blue = heatmap.evaluate(
        """img => {
            const canvas = document.createElement("canvas");
            [canvas.width, canvas.height] = [280, 280];
            const context = canvas.getContext("2d");
            context.drawImage(img, 0, 0);
            const data = context.getImageData(0, 0, 280, 280).data;
            let red = 0, blue = 0;
            for (let i = 0; i < data.length; i += 4) {
                if (data[i] > data[i + 2] + 60) red++;
                if (data[i + 2] > data[i] + 60) blue++;
            }
            return [red, blue];
        }"""
    )
    assert red > 500, (red, blue)  # at least 5 of the 28 x 28 pixels clearly red
    expect(page.locator("#digit-why-caption")).to_contain_text("Red ink made it a 7")

    with page.expect_response(lambda r: "/digit/explain?model=digit-inception" in r.url) as sent:
        page.get_by_label("Model", exact=True).select_option("digit-inception")
    assert sent.value.status == 200
    expect(heatmap).to_be_visible()
    why.click()
    expect(why).to_have_attribute("aria-pressed", "false")
    expect(page.locator("#digit-why")).to_be_hidden()
    why.click()
    expect(heatmap).to_be_visible()
    page.get_by_role("button", name="Clear").click()
    expect(page.locator("#digit-why")).to_be_hidden()


def test_a_name_is_explained_letter_by_letter(page: Page) -> None:
    page.get_by_label("Surname (any script)").press_sequentially("O'Brien", delay=30)
    expect(page.locator("#name-bars li").first.locator(".bar-label")).to_have_text("Irish")
    page.get_by_role("button", name="Why this country?").click()
    letters = page.locator("#name-chars .char")
    expect(letters).to_have_count(7)
    assert letters.all_text_contents() == list("O'Brien")
    shades = letters.evaluate_all("spans => spans.map(s => getComputedStyle(s).backgroundColor)")
    red = [shade.startswith("rgba(214, 40, 40") for shade in shades]
    assert red[1] and sum(red) >= 5, shades  # mostly evidence for Irish, the apostrophe above all
    strongest = letters.evaluate_all(
        "spans => spans.map(s => parseFloat(getComputedStyle(s).backgroundColor.split(',')[3]))"
    )
    assert max(strongest) == strongest[1], strongest  # the apostrophe
    caption = page.locator("#name-why-caption")
    expect(caption).to_contain_text("counted for Irish (most: ' +")
    expect(page.locator("#name-why .legend")).to_contain_text("for")

    surname = page.get_by_label("Surname (any script)")
    surname.fill("")
    surname.press_sequentially("Nguyen", delay=30)
    expect(letters).to_have_count(6)
    expect(caption).to_contain_text("counted for Vietnamese")


def test_api_errors_show_their_detail(page: Page, server: str) -> None:
    page.get_by_label("Prompt").fill("café")
    page.get_by_role("button", name="Generate").click()
    detail = _problem_detail(server, "POST", "/char-rnn/generate", json={"prompt": "café"})
    assert "'é'" in detail
    expect(page.locator("#generate-error")).to_have_text(detail)

    page.get_by_label("Surname (any script)").fill("1234")
    detail = _problem_detail(server, "POST", "/classify-name", json={"name": "1234"})
    expect(page.locator("#name-error")).to_have_text(detail)
    expect(page.locator("#name-bars li")).to_have_count(0)

    blank = _png(lambda d: None)
    _upload(page, "blank.png", blank)
    detail = _problem_detail(server, "POST", "/digit", files={"file": ("b.png", blank)})
    expect(page.locator("#digit-error")).to_have_text(detail)
    expect(page.locator("#digit-result")).to_have_text("–")


def test_model_cards_and_phone_width(page: Page) -> None:
    rows = page.locator("#model-rows tr")
    resnet = rows.filter(has=page.get_by_role("link", name="digit-resnet", exact=True))
    card = json.loads((PROJECT / "weights" / "digit-resnet" / "card.json").read_text())
    expect(resnet).to_contain_text(f"{100 * card['metrics']['test_accuracy']:.2f} %")
    expect(resnet).to_contain_text(f"{card['num_parameters']:,}")
    expect(resnet).to_contain_text("mnist: 4 files")
    expect(page.get_by_role("link", name="API documentation")).to_have_attribute("href", "/docs")
    expect(page.locator("#models-device")).to_contain_text("Running on")

    page.set_viewport_size({"width": 375, "height": 800})
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 375, f"the page is {width} px wide at phone width"


def test_page_and_assets_are_served(server: str) -> None:
    page = httpx.get(f"{server}/")
    assert page.status_code == 200
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    assert 'src="/static/app.js"' in page.text
    for name, media_type in [("app.js", "text/javascript"), ("app.css", "text/css")]:
        asset = httpx.get(f"{server}/static/{name}")
        assert asset.status_code == 200
        assert asset.headers["content-type"].startswith(media_type)
    missing = httpx.get(f"{server}/static/index.py")
    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/problem+json"
    assert "app.css" in missing.json()["detail"]


def test_api_key_is_asked_for_and_sent(browser: Browser, tmp_path: Path) -> None:
    with _serve(tmp_path, api_key="s3cret-key") as base:
        context = browser.new_context(base_url=base)
        page = context.new_page()
        page.set_default_timeout(10_000)
        page.goto("/")
        expect(page.locator("#models-error")).to_contain_text("API key")
        key_form = page.locator("#key-form")
        expect(key_form).to_be_visible()
        page.fill("#api-key", "s3cret-key")
        key_form.get_by_role("button", name="Use key").click()
        expect(key_form).to_be_hidden()
        expect(page.locator("#model-rows tr")).to_have_count(5)
        page.get_by_label("Surname (any script)").press_sequentially(SURNAME, delay=30)
        expect(page.locator("#name-bars li").first.locator(".bar-label")).to_have_text(COUNTRY)
        context.close()


@pytest.mark.parametrize(
    ("path", "operation"),
    [("/docs", ".swagger-ui .opblock"), ("/redoc", "[data-section-id^='operation/']")],
    ids=["swagger-ui", "redoc"],
)
def test_api_docs_render_with_every_request_off_the_host_blocked(
    browser: Browser, server: str, path: str, operation: str, request: pytest.FixtureRequest
) -> None:
    context = browser.new_context(viewport={"width": 1280, "height": 900}, base_url=server)
    off_host: list[str] = []

    def only_the_service(route: Any) -> None:
        if route.request.url.startswith(f"{server}/"):
            route.continue_()
        else:
            off_host.append(route.request.url)
            route.abort()

    context.route("**/*", only_the_service)
    page = context.new_page()
    page.set_default_timeout(20_000)
    script_errors: list[str] = []
    page.on("pageerror", lambda exc: script_errors.append(str(exc)))
    page.goto(path)
    spec = httpx.get(f"{server}/openapi.json").json()
    operations = sum(len(methods) for methods in spec["paths"].values())
    expect(page.locator(operation)).to_have_count(operations)
    expect(page.get_by_text("tinyzoo", exact=False).first).to_be_visible()
    if path == "/docs":
        page.locator(".opblock-summary", has_text="/classify-name").first.click()
        expect(page.locator(".opblock.is-open")).to_have_count(1)
        expect(page.get_by_role("button", name="Try it out")).to_be_visible()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=ARTIFACTS / f"{request.node.name}.png")
    context.close()
    assert off_host == [], f"{path} asked for {off_host}"
    assert not script_errors, script_errors
