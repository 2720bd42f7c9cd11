"""The search page in a real browser: Debian's Chromium, headless, driven by Playwright for Python.

Playwright's own browser downloads are never used (no `playwright install`): `make setup` installs
Debian's chromium and this test points Playwright at /usr/bin/chromium. Set IMGSEARCH_SCREENSHOT=PATH
to save the page with its results (docs/screenshot.png in the README is made this way).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from .conftest import Stack, sample_images, synthetic_image

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
        shown = page.eval_on_selector_all(".hit img", "els => els.map(i => [i.currentSrc, i.naturalWidth, i.naturalHeight])")
        assert all("/thumbs/" in src and max(w, h) <= 160 for src, w, h in shown), shown  # thumbnails, not originals
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


# --- search by words, tags ------------------------------------------------------------------------------

SEARCH_SECONDS = 60


def open_page(stack: Stack, browser: Any) -> Any:
    """A fresh page that has the API key and has read /health."""
    page = browser.new_page(viewport={"width": 1200, "height": 820})
    page.goto(f"{stack.api}/#key={stack.key}")
    page.wait_for_function("document.querySelector('#status').textContent.includes('indexed')")
    return page


@dataclass(frozen=True)
class Searched:
    """A search request the page sent, and the API's answer to it."""

    url: str
    method: str
    headers: dict[str, str]
    sent: bytes | None  # the request body
    status: int
    body: Any

    def words(self) -> Any:
        return json.loads(self.sent or b"null")


def searched(page: Any, action: Callable[[], Any]) -> Searched:
    """Do `action` (Enter, a click, a picked file), wait for the search request it sends and for the page to
    have shown the answer. The answer is read at once: Chromium evicts bodies from its cache as images load."""
    with page.expect_response(
        lambda r: "/search" in r.url or "/similar/" in r.url, timeout=SEARCH_SECONDS * 1000
    ) as info:
        action()
    response = info.value
    request = response.request
    done = Searched(
        response.url, request.method, request.headers, request.post_data_buffer, response.status, response.json()
    )
    page.wait_for_function(
        "document.querySelector('#results').getAttribute('aria-busy') === 'false'",
        timeout=SEARCH_SECONDS * 1000,
    )
    return done


def shown_tags(card: Any) -> list[tuple[str, str]]:
    return [(t.get_attribute("data-tag"), t.query_selector(".p").inner_text()) for t in card.query_selector_all(".tag")]


def percent(probability: float) -> str:
    return f"{math.floor(probability * 100 + 0.5)}%"  # JavaScript's Math.round, not Python's round-half-even


def test_words_alone_show_results_what_they_matched_and_each_hits_tags(
    stack: Stack, browser: Any, page_images: dict[str, bytes]
) -> None:
    page = open_page(stack, browser)
    try:
        page.fill("input[name=q]", "beach")
        response = searched(page, lambda: page.press("input[name=q]", "Enter"))
        assert response.status == 200
        assert response.method == "GET" and "/search?" in response.url and "q=beach" in response.url
        body = response.body
        matched = [name for name, _ in body["text"]["matched"]]
        assert matched, body["text"]
        assert page.inner_text("#query") == f"Results for: 'beach' — matched: {', '.join(matched)}"
        assert "results" in page.inner_text("#message") and "error" not in page.get_attribute("#message", "class")
        cards = page.query_selector_all(".hit")
        assert cards and [c.get_attribute("data-key") for c in cards] == [h["key"] for h in body["results"]]
        for card, hit in zip(cards, body["results"], strict=True):  # every tag, in the API's order
            assert shown_tags(card) == [(name, percent(p)) for name, p in hit.get("tags") or []]
    finally:
        page.close()


def test_clicking_a_tag_filters_every_query_until_the_filter_is_cleared(
    stack: Stack, browser: Any, page_images: dict[str, bytes]
) -> None:
    page = open_page(stack, browser)
    try:
        page.fill("input[name=k]", str(len(page_images)))
        page.fill("input[name=q]", "beach")
        unfiltered = searched(page, lambda: page.press("input[name=q]", "Enter")).body["results"]
        assert page.is_hidden("#tagfilter")
        tag = page.query_selector(".hit .tag")
        assert tag is not None, f"no result has tags: {unfiltered}"
        name = tag.get_attribute("data-tag")

        def only_tagged() -> list[Any]:
            cards = page.query_selector_all(".hit")
            assert cards  # the tag came from a result, so at least that image has it
            for card in cards:
                assert name in [t for t, _ in shown_tags(card)], card.get_attribute("data-key")
                assert card.query_selector(f".tag.active[data-tag={json.dumps(name)}]") is not None
            assert page.is_visible("#tagfilter") and page.inner_text("#tagname") == name
            assert page.inner_text("#query").endswith(f" · only images tagged '{name}'")
            return cards

        response = searched(page, tag.click)  # the current query (the words), now with tag=
        assert f"tag={quote(name)}" in response.url and response.method == "GET"
        assert "q=beach" in response.url
        cards = only_tagged()

        # The filter stays on for the next query: "more like this" (with the words still in the box).
        key = cards[-1].get_attribute("data-key")
        response = searched(page, cards[-1].click)
        assert "/similar/" in response.url and f"tag={quote(name)}" in response.url and "q=beach" in response.url
        only_tagged()
        assert page.inner_text("#query").startswith(f"Results for: more like '{key}', but 'beach'")

        response = searched(page, lambda: page.click("#cleartag"))  # the same query without the filter
        assert "/similar/" in response.url and "tag=" not in response.url
        assert page.is_hidden("#tagfilter") and page.query_selector(".tag.active") is None
        assert "only images tagged" not in page.inner_text("#query")
        assert len(page.query_selector_all(".hit")) == len(response.body["results"]) > 0
    finally:
        page.close()


def test_words_go_with_the_image_or_the_key_being_searched(
    stack: Stack, browser: Any, page_images: dict[str, bytes], tmp_path: Path
) -> None:
    data = next(iter(page_images.values()))
    query = tmp_path / "query.jpg"
    query.write_bytes(data)
    page = open_page(stack, browser)
    try:
        page.fill("input[name=q]", "beach")
        response = searched(page, lambda: page.set_input_files("#file", str(query)))  # image + words
        assert response.status == 200 and response.method == "POST" and "q=beach" in response.url
        assert response.headers["content-type"] == "image/jpeg" and response.sent == data
        matched = ", ".join(name for name, _ in response.body["text"]["matched"])
        assert page.inner_text("#query") == f"Results for: image 'query.jpg', but 'beach' — matched: {matched}"
        assert page.is_visible("#clearimage")

        # Enter searches the same image with the words as they are now.
        page.fill("input[name=q]", "snow")
        response = searched(page, lambda: page.press("input[name=q]", "Enter"))
        assert "q=snow" in response.url and response.sent == data
        assert page.inner_text("#query").startswith("Results for: image 'query.jpg', but 'snow'")

        # "More like this" keeps the words: /similar/{key}?q=...
        card = page.query_selector_all(".hit")[1]
        key = card.get_attribute("data-key")
        response = searched(page, card.click)
        assert "/similar/" in response.url and "q=snow" in response.url
        assert page.inner_text("#query").startswith(f"Results for: more like '{key}', but 'snow'")
        assert page.input_value("input[name=key]") == key

        # With the image and the key cleared, the words alone.
        page.click("#clearimage")
        assert page.is_hidden("#clearimage") and page.query_selector("#drop img") is None
        page.fill("input[name=key]", "")
        response = searched(page, lambda: page.press("input[name=q]", "Enter"))
        assert response.method == "GET" and "q=snow" in response.url
        assert page.inner_text("#query").startswith("Results for: 'snow' — matched: ")
    finally:
        page.close()


def test_words_that_match_nothing_say_so_as_an_error(
    stack: Stack, browser: Any, page_images: dict[str, bytes]
) -> None:
    page = open_page(stack, browser)
    try:
        page.fill("input[name=q]", "beach")
        searched(page, lambda: page.press("input[name=q]", "Enter"))
        assert page.query_selector_all(".hit")
        page.fill("input[name=q]", "xyzzy")
        response = searched(page, lambda: page.press("input[name=q]", "Enter"))
        assert response.status == 400 and response.body["error"]["code"] == "no_concept_match"
        assert "no concept matches 'xyzzy'" in page.inner_text("#message")
        assert page.get_attribute("#message", "class") == "error"
        assert page.query_selector_all(".hit") == [] and page.inner_text("#query") == ""  # the old answer is gone
    finally:
        page.close()


def test_keys_and_words_are_shown_as_text_never_as_markup(
    stack: Stack, browser: Any, page_images: dict[str, bytes], tmp_path: Path
) -> None:
    key = "page/<b>bold</b> & <img src=x onerror=window.pwned=1>.jpg"
    data = synthetic_image(4242)
    before = stack.health()["count"]
    stack.s3().put_object(Bucket=stack.bucket, Key=key, Body=data, ContentType="image/jpeg")
    stack.wait_for(lambda: stack.health()["count"] >= before + 1, "the odd key to be indexed")
    query = tmp_path / "odd.jpg"
    query.write_bytes(data)
    page = open_page(stack, browser)
    try:
        searched(page, lambda: page.set_input_files("#file", str(query)))
        first = page.query_selector(".hit")
        assert first.get_attribute("data-key") == key and first.query_selector(".key").inner_text() == key
        assert page.inner_text("#query") == "Results for: image 'odd.jpg'"
        page.fill("input[name=q]", "beach <i>sand</i>")
        searched(page, lambda: page.press("input[name=q]", "Enter"))
        assert "but 'beach <i>sand</i>'" in page.inner_text("#query")
        assert page.query_selector_all("#results b, #results .meta img, #query i") == []
        assert page.evaluate("window.pwned") is None
    finally:
        page.close()


def test_more_results_appends_the_next_page_of_the_same_query(
    stack: Stack, browser: Any, page_images: dict[str, bytes]
) -> None:
    page = open_page(stack, browser)
    try:
        page.select_option("select[name=metric]", "cosine")
        page.fill("input[name=k]", "2")
        page.fill("input[name=q]", "beach")
        first = searched(page, lambda: page.press("input[name=q]", "Enter"))
        assert first.status == 200 and first.body["has_more"] is True, first.body
        assert page.is_visible("#more") and len(page.query_selector_all("#results .hit")) == 2
        second = searched(page, lambda: page.click("#more"))
        assert f"offset={first.body['next_offset']}" in second.url and "q=beach" in second.url
        keys = [c.get_attribute("data-key") for c in page.query_selector_all("#results .hit")]
        assert keys == [h["key"] for h in first.body["results"] + second.body["results"]]
        assert len(set(keys)) == len(keys) == 2 + len(second.body["results"])
        assert page.is_visible("#more") == bool(second.body["has_more"])
    finally:
        page.close()
