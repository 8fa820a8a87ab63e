"""Screenshots of the demo page for the docs: ``python -m bench.screenshots [--url URL]``.

Starts the service on the committed weights (unless ``--url`` names a running one), then, in
headless Chromium at 1280 and 390 CSS px, draws a digit and types a surname and asks why of
each (the explanations), generates text, and saves full-page screenshots to
``docs/screenshots/{desktop,phone}.png``.
"""

import argparse
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
from playwright.sync_api import Browser, expect, sync_playwright

PROJECT = Path(__file__).resolve().parent.parent
OUT = PROJECT / "docs" / "screenshots"
CHROMIUM = "/usr/bin/chromium"
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
THREE = [(85, 70), (120, 48), (170, 50), (195, 85), (175, 125), (135, 140)]
THREE_LOW = [(135, 140), (185, 150), (200, 195), (170, 232), (120, 238), (80, 215)]


@contextmanager
def serve() -> Iterator[str]:
    """The service on a free port with the committed weights; yields its URL."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    kept = ("TINYZOO_DEVICE", "TINYZOO_THREADS")
    env = {k: v for k, v in os.environ.items() if not k.startswith("TINYZOO_") or k in kept}
    env |= {"TINYZOO_WEIGHTS_DIR": str(PROJECT / "weights"), "TINYZOO_LOG_LEVEL": "WARNING"}
    command = [sys.executable, "-m", "uvicorn", "app.main:app", "--port", str(port)]
    proc = subprocess.Popen(command, cwd=PROJECT, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("the service did not become ready")
            try:
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=15)


def shoot(browser: Browser, url: str, width: int, path: Path) -> None:
    context = browser.new_context(viewport={"width": width, "height": 900}, base_url=url)
    page = context.new_page()
    page.goto("/")
    expect(page.locator("#model-rows tr")).to_have_count(5)
    box = page.locator("#pad").bounding_box()
    assert box is not None
    scale = box["width"] / 280
    for stroke in (THREE, THREE_LOW):
        page.mouse.move(box["x"] + stroke[0][0] * scale, box["y"] + stroke[0][1] * scale)
        page.mouse.down()
        for x, y in stroke[1:]:
            page.mouse.move(box["x"] + x * scale, box["y"] + y * scale, steps=8)
        page.mouse.up()
    expect(page.locator("#digit-seen-figure")).to_be_visible()
    page.get_by_role("button", name="Why this digit?").click()
    expect(page.locator("#digit-why-image")).to_be_visible()
    page.get_by_label("Surname (any script)").press_sequentially("Kowalski", delay=20)
    expect(page.locator("#name-bars li")).to_have_count(5)
    page.get_by_role("button", name="Why this country?").click()
    expect(page.locator("#name-chars .char")).to_have_count(8)
    page.get_by_label("Seed (optional)").fill("3")
    page.get_by_role("button", name="Generate").click()
    expect(page.locator("#generate-status")).to_contain_text("generated", timeout=60_000)
    page.get_by_role("button", name="Transduce").click()
    expect(page.locator("#transduce-result")).to_contain_text("ohlol")
    page.evaluate("document.activeElement.blur()")
    page.screenshot(path=path, full_page=True)
    print(f"{path.relative_to(PROJECT)}: digit {page.locator('#digit-result').text_content()}")
    context.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="a running service (default: start one)")
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    with serve() if args.url is None else _given(args.url) as url, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        shoot(browser, url, 1280, OUT / "desktop.png")
        shoot(browser, url, 390, OUT / "phone.png")
        browser.close()


@contextmanager
def _given(url: str) -> Iterator[str]:
    yield url.rstrip("/")


if __name__ == "__main__":
    main()
