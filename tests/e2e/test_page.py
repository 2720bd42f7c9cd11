"""The search page in a real browser: Debian's Chromium, headless, driven by Playwright for Python.

Playwright's own browser downloads are never used (no `playwright install`): `make setup` installs
Debian's chromium and this test points Playwright at /usr/bin/chromium. Set IMGSEARCH_SCREENSHOT=PATH
to save the page with its results (docs/screenshot.png in the README is made this way).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .conftest import Stack, sample_images

pytestmark = pytest.mark.slow

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing: install Debian's chromium (`make setup` does, as root)")
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="playwright is not installed (the dev extra)"
    )
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture(scope="module")
def page_images(stack: Stack) -> dict[str, bytes]:
    images = sample_images(30, prefix="page", per_class=3, skip=2)
    before = stack.health()["count"]
    s3 = stack.s3()
    for key, data in images.items():
        s3.put_object(Bucket=stack.bucket, Key=key, Body=data, ContentType="image/jpeg")
    stack.wait_for(lambda: stack.health()["count"] >= before + len(images), "the page's images to be indexed")
    return images


def test_a_query_uploaded_through_the_page_shows_thumbnails(
    stack: Stack, browser: Any, page_images: dict[str, bytes], tmp_path: Path
) -> None:
    key, data = next(iter(page_images.items()))
    query = tmp_path / "query.jpg"
    query.write_bytes(data)
    page = browser.new_page(viewport={"width": 1200, "height": 820})
    try:
        page.goto(f"{stack.api}/#key={stack.key}")
        page.wait_for_function("document.querySelector('#status').textContent.includes('indexed')")
        assert "#key=" not in page.url  # the key went to localStorage, out of the address bar
        page.fill("input[name=k]", "8")
        page.set_input_files("#file", str(query))
        page.wait_for_selector(".hit img")
        page.wait_for_function(
            "[...document.querySelectorAll('.hit img')].every(i => i.complete && i.naturalWidth > 0)"
        )
        cards = page.query_selector_all(".hit")
        assert len(cards) == 8
        assert cards[0].get_attribute("data-key") == key
        assert float(cards[0].query_selector(".score").inner_text()) > 0.99
        assert "results" in page.inner_text("#message") and "ms" in page.inner_text("#status")
        if target := os.environ.get("IMGSEARCH_SCREENSHOT"):
            from PIL import Image

            page.screenshot(path=str(tmp_path / "shot.png"))
            with Image.open(tmp_path / "shot.png") as shot:  # 256 colours: a README-sized PNG
                shot.convert("RGB").quantize(256).save(target, optimize=True)

        # "More like this": clicking a result searches by its key.
        second = cards[1].get_attribute("data-key")
        cards[1].click()
        page.wait_for_function(
            f"document.querySelector('.hit') && document.querySelector('.hit').dataset.key === {second!r}"
        )
        assert page.input_value("input[name=key]") == second
    finally:
        page.close()


def test_the_page_says_clearly_what_is_wrong(stack: Stack, browser: Any, tmp_path: Path) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("not an image")
    page = browser.new_page()
    try:
        page.goto(f"{stack.api}/")
        page.evaluate("localStorage.clear()")
        page.reload()
        page.click("button[type=submit]")
        assert "Drop an image or type a key" in page.inner_text("#message")
        page.set_input_files("#file", str(text))
        assert "is not an image" in page.inner_text("#message")
        page.fill("input[name=key]", "page/nothing-here.jpg")
        page.click("button[type=submit]")
        assert "No API key" in page.inner_text("#message")
        page.fill("#apikey", "wrong")
        page.dispatch_event("#apikey", "change")
        page.click("button[type=submit]")
        page.wait_for_function("document.querySelector('#message').textContent.includes('refused')")
        page.fill("#apikey", stack.key)
        page.dispatch_event("#apikey", "change")
        page.click("button[type=submit]")
        page.wait_for_function(
            "document.querySelector('#message').classList.contains('error') && "
            "document.querySelector('#message').textContent.includes('nothing-here')"
        )
    finally:
        page.close()
