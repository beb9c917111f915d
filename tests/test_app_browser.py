"""The app in a real Chromium (Debian's /usr/bin/chromium driven by Playwright, never downloaded).

Upload → Explain → both galleries → move β → switch the target → Compare with a fast subset,
with screenshots saved under the test's tmp_path.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from .conftest import ASSETS, free_port

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--no-first-run",
]
FAST_METHODS = ("Cluster-CAM", "Grad-CAM", "XGrad-CAM")

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium"),
]


@pytest.fixture(scope="module")
def server_url() -> Iterator[str]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # a small, busy CPU: see test_app_handlers
    import app

    port = free_port()
    # build_demo already configured the (bounded) queue; calling queue() again would reset it
    _, url, _ = app.demo.launch(
        server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True, **app.launch_options()
    )
    try:
        yield url
    finally:
        app.demo.close()
        torch.set_num_threads(before)


@pytest.fixture(scope="module")
def page(server_url):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        page = browser.new_page(viewport={"width": 1600, "height": 1000})
        page.set_default_timeout(120_000)
        page.goto(server_url)
        page.wait_for_selector("#explain-btn")
        yield page
        browser.close()


def wait_for_images(page) -> None:
    """Every <img> loaded (a gallery swaps its captions before the new pictures arrive)."""
    page.wait_for_function("[...document.images].every(image => image.complete && image.naturalWidth > 0)")


def base_cluster(page) -> int:
    """The base cluster named by the summary ("Cognition base (eq. 20): cluster 4 · …")."""
    text = page.locator("#summary-md").inner_text()
    return int(text.split("Cognition base (eq. 20): cluster ")[1].split(" ")[0])


def wait_for_base_bar(page, cluster: int) -> None:
    """The browser-drawn bar plot shows ``cluster`` as the base (its bars' ARIA labels)."""
    page.wait_for_function(
        """cluster => [...document.querySelectorAll('#scores-plot [aria-label]')]
            .some(bar => bar.getAttribute('aria-label').startsWith('cluster q: ' + cluster + ';')
                         && bar.getAttribute('aria-label').includes('role: base'))""",
        arg=cluster,
    )


def captions(page, selector: str) -> list[str]:
    return page.locator(f"{selector} img").evaluate_all("images => images.map(image => image.alt)")


def test_explain_move_beta_switch_target_and_compare(page, tmp_path):
    from clustercam.methods import DEFAULT_BETA, DEFAULT_Q

    page.locator("#input-image input[type=file]").set_input_files(str(ASSETS / "chelsea.jpg"))
    page.wait_for_selector("#input-image img")
    page.click("#explain-btn")
    page.wait_for_function(
        f"['#clusters', '#masked'].every(id => document.querySelectorAll(id + ' img').length === {DEFAULT_Q})"
    )
    clusters, masked = captions(page, "#clusters"), captions(page, "#masked")
    assert [caption.split(" · ")[0] for caption in clusters] == [f"cluster {q}" for q in range(DEFAULT_Q)]
    assert sum(caption.endswith(" · BASE") for caption in clusters) == 1
    assert all("p(Egyptian cat) = " in caption for caption in masked)
    assert "Explained class: Egyptian cat" in page.locator("#summary-md").inner_text()
    wait_for_base_bar(page, base_cluster(page))
    wait_for_images(page)
    page.screenshot(path=str(tmp_path / "1_explained.png"), full_page=True)

    # β: a user's keyboard on the slider; the overlay is redrawn from the cache
    overlay = page.locator("#overlay img").get_attribute("src")
    page.locator("#beta input[type=range]").focus()
    started = time.perf_counter()
    for _ in range(40):
        page.keyboard.press("ArrowLeft")
    moved = f"β = {DEFAULT_BETA - 0.40:.2f}"
    page.wait_for_function(f"() => document.querySelector('#summary-md').innerText.includes('{moved}')")
    print(f"\nβ {DEFAULT_BETA:.2f} → {DEFAULT_BETA - 0.40:.2f} by keyboard, redrawn in the browser after {time.perf_counter() - started:.2f} s")
    assert page.locator("#overlay img").get_attribute("src") != overlay
    assert "0 forward passes" in page.locator("#summary-md").inner_text()

    # target: the third of the top-5 predictions
    choices = page.locator("#top5 label").all_inner_texts()
    assert len(choices) == 5 and choices[0].startswith("Egyptian cat")
    other = choices[2].split(" · ")[0]
    page.locator("#top5 label", has_text=other).click()
    page.wait_for_function(
        f"() => document.querySelector('#summary-md').innerText.includes('Explained class: {other}')"
    )
    page.wait_for_function(
        f"() => [...document.querySelectorAll('#masked img')].every(image => image.alt.includes('p({other})'))"
    )
    summary = page.locator("#summary-md").inner_text()
    assert moved in summary and "0 forward passes" in summary
    wait_for_base_bar(page, base_cluster(page))
    assert other.lower().replace(" ", "-") in page.locator("#overlay img").get_attribute("src")
    wait_for_images(page)
    page.screenshot(path=str(tmp_path / "2_retargeted.png"), full_page=True)

    # Compare with a fast subset of the methods
    page.click("#tab-compare-button")
    boxes = page.locator("#compare-methods label")
    for index in range(boxes.count()):
        box = boxes.nth(index)
        wanted = box.inner_text().strip() in FAST_METHODS
        if box.locator("input").is_checked() != wanted:
            box.click()
    page.click("#compare-btn")
    page.wait_for_function(
        f"document.querySelectorAll('#compare-gallery img').length === {1 + len(FAST_METHODS)}"
    )
    tiles = captions(page, "#compare-gallery")
    assert tiles[0].startswith(f"Input · target: {other}")
    assert [tile.split(" · ")[0] for tile in tiles[1:]] == list(FAST_METHODS)
    assert all(" fwd / " in tile and "avg drop" in tile for tile in tiles[1:])
    page.wait_for_selector("#compare-table table")
    wait_for_images(page)
    page.screenshot(path=str(tmp_path / "3_compare.png"), full_page=True)
    for name in ("1_explained.png", "2_retargeted.png", "3_compare.png"):
        assert (tmp_path / name).stat().st_size > 50_000
