"""The app in a real Chromium (Debian's /usr/bin/chromium driven by Playwright, never downloaded).

- at a projector's 1280×720 and a phone's 390×844: right after Explain, the heatmap, β and the
  class choice are in the viewport together;
- keyboard: Explain is a few Tab presses from the top; the example buttons have names;
- β by keyboard and another class redraw with no forward pass; the two-class view;
- a model that cannot be downloaded: the message keeps its ``<urlopen …>`` part, stays, and the
  model is put back;
- axe-core (the npm package, loaded from ``tests/axe/node_modules``): no serious or critical
  violation;
- Compare with a fast subset;
- the page in Spanish and in Chinese (the browser's language): translated texts, the app's own
  messages in the same language, no untranslated key, and no text the translation makes overflow
  (compared with the English page) at both viewports. Screenshots go to the test's tmp_path.

Under ``CI=true`` a missing Chromium or axe-core fails instead of skipping.
"""

from __future__ import annotations

import itertools
import os
import time
import urllib.error
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from clustercam.methods import DEFAULT_BETA, DEFAULT_Q
from clustercamapp.controls import BETA_STEP
from clustercamapp.engine import TRADEOFF_BETAS
from clustercamapp.i18n import COOKIE, best_language, say

from .conftest import ASSETS, ROOT, free_port

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

CHROMIUM = Path("/usr/bin/chromium")
AXE = ROOT / "tests" / "axe" / "node_modules" / "axe-core" / "axe.min.js"  # the pinned release
AXE_CURRENT = ROOT / "tests" / "axe" / "node_modules" / "axe-core-current" / "axe.min.js"  # the newest 4.x
ARGS = [
    "--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--no-first-run",
]
FAST_METHODS = ("Cluster-CAM", "Grad-CAM", "XGrad-CAM")
PROJECTOR, PHONE = {"width": 1280, "height": 720}, {"width": 390, "height": 844}
IN_CI = os.environ.get("CI", "").lower() == "true"

pytestmark = pytest.mark.browser


def require(path: Path, what: str) -> None:
    """Skip without ``path`` on a developer's machine; fail in CI, where nothing may be skipped."""
    if path.exists():
        return
    if IN_CI:
        pytest.fail(f"{what} is missing at {path}; .ci/run installs it.")
    pytest.skip(f"needs {what} at {path}")


@pytest.fixture(scope="module")
def server_url() -> Iterator[str]:
    require(CHROMIUM, "Debian's chromium")
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # a small, busy CPU: see test_app_handlers
    import app

    # build_demo already configured the (bounded) queue; calling queue() again would reset it
    _, url, _ = app.demo.launch(
        server_name="127.0.0.1", server_port=free_port(), prevent_thread_lock=True, quiet=True, **app.launch_options()
    )
    try:
        yield url
    finally:
        app.demo.close()
        torch.set_num_threads(before)


@pytest.fixture(scope="module")
def browser(server_url):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield chromium
        chromium.close()


def open_page(browser, url: str, viewport: dict):
    page = browser.new_page(viewport=viewport)
    page.set_default_timeout(120_000)
    page.goto(url)
    page.wait_for_selector("#explain-btn")
    return page


def wait_for_images(page, within: str = "#result-panel") -> None:
    """Every <img> under ``within`` loaded (galleries load theirs lazily when scrolled to)."""
    page.wait_for_function(
        "within => [...document.querySelectorAll(within + ' img')].every(image => image.complete && image.naturalWidth > 0)",
        arg=within,
    )


def summary(page) -> str:
    return page.locator("#summary-md").inner_text()


def base_cluster(page) -> int:
    """The base cluster named by the summary ("Base: cluster 4 (…")."""
    return int(summary(page).split("Base: cluster ")[1].split(" ")[0])


def captions(page, selector: str) -> list[str]:
    return page.locator(f"{selector} img").evaluate_all("images => images.map(image => image.alt)")


def explain_upload(page, name: str, q: int) -> None:
    page.locator("#input-image input[type=file]").set_input_files(str(ASSETS / name))
    page.wait_for_selector("#input-image img")
    page.click("#explain-btn")
    page.wait_for_function(
        f"['#clusters', '#masked'].every(id => document.querySelectorAll(id + ' img').length === {q})"
    )
    wait_for_images(page)
    time.sleep(0.5)  # the scroll to the result runs after the outputs arrive


def in_viewport(page, selector: str) -> bool:
    box = page.locator(selector).first.bounding_box()
    view = page.viewport_size
    return box is not None and box["y"] >= 0 and box["x"] >= 0 and box["y"] + box["height"] <= view["height"] \
        and box["x"] + box["width"] <= view["width"]


@pytest.mark.parametrize("viewport", [PROJECTOR, PHONE], ids=["projector-1280x720", "phone-390x844"])
def test_after_explain_the_heatmap_beta_and_class_are_in_view_together(browser, server_url, viewport, tmp_path):

    page = open_page(browser, server_url, viewport)
    explain_upload(page, "cat_and_coffee.jpg", DEFAULT_Q)
    for selector in ("#overlay img", "#beta input[type=range]", "#top5"):
        assert in_viewport(page, selector), (selector, page.locator(selector).first.bounding_box())
    page.screenshot(path=str(tmp_path / f"explained_{viewport['width']}.png"))
    # galleries: at most two columns on the phone, captions under (not over) the tiles
    columns = page.locator("#clusters .thumbnail-item").evaluate_all(
        "items => new Set(items.map(item => Math.round(item.getBoundingClientRect().x))).size"
    )
    assert columns <= (2 if viewport is PHONE else 4)
    tile = page.locator("#clusters .thumbnail-item").first
    image_box, caption_box = tile.locator("img").bounding_box(), tile.locator(".caption-label").bounding_box()
    assert caption_box["y"] >= image_box["y"] + image_box["height"] - 1  # under the picture
    page.close()


def test_the_heading_follows_and_the_zip_is_written_when_the_details_are_opened(browser, server_url):
    """The heatmap's heading names eq. 22 once step 1 is painted. Opening the details writes the zip (Explain sends none: tested on the handlers); while
    they stay open, the next explanation comes with its own."""
    page = open_page(browser, server_url, PROJECTOR)
    explain_upload(page, "coffee.jpg", DEFAULT_Q)
    # the heading step (after the heatmap is painted) names the formula the explanation computed
    page.wait_for_function("() => (document.querySelector('#heatmap [data-testid=block-label]')?.textContent ?? '')"
                           ".includes('(eq. 22)')", timeout=20_000)
    downloads = "() => [...document.querySelectorAll('#downloads td.filename')].map(cell => cell.getAttribute('aria-label'))"
    page.locator("#details button").first.click()
    page.wait_for_function(f"() => ({downloads})().some(name => name.endsWith('.zip'))", timeout=20_000)
    first_zip = [name for name in page.evaluate(downloads) if name.endswith(".zip")]
    explain_upload(page, "astronaut.jpg", DEFAULT_Q)
    page.wait_for_function(f"before => ({downloads})().some(name => name.endsWith('.zip') && !before.includes(name))",
                           arg=first_zip, timeout=20_000)
    page.close()


@pytest.mark.parametrize("viewport", [PROJECTOR, PHONE], ids=["1280x720", "390x844"])
def test_every_tab_is_one_tap_away_and_nothing_comes_from_outside(browser, server_url, viewport, tmp_path):
    """A classroom without internet: the page and everything it fetches come from the server; on a
    phone no tab hides behind an overflow menu."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

    page = browser.new_page(viewport=viewport)
    page.set_default_timeout(120_000)
    fetched: list[str] = []
    page.on("request", lambda request: fetched.append(request.url))
    page.goto(server_url)
    page.wait_for_selector("#explain-btn")
    for tab in ("explain", "walk", "compare", "sweeps", "teach"):
        button = page.locator(f"#tab-{tab}-button")
        try:  # the tab row is laid out (and its overflow measured) just after the page appears
            button.wait_for(state="visible", timeout=10_000)
        except PlaywrightTimeoutError:
            pytest.fail(f"{tab} is hidden (behind the overflow menu?)")
        box = button.bounding_box()  # shown in the tab row itself (on a phone, below the settings)
        assert box["x"] >= 0 and box["x"] + box["width"] <= viewport["width"], (tab, box)
    page.locator("#tab-teach-button").click()
    page.locator("#tab-explain-button").click()
    page.locator("#example-buttons button", has_text="Cat and espresso").click()
    page.wait_for_function("document.querySelectorAll('#clusters img').length > 0")
    wait_for_images(page)
    page.screenshot(path=str(tmp_path / f"tabs_{viewport['width']}.png"))
    origin = server_url.rstrip("/")
    outside = [url for url in fetched if not url.startswith((origin, "data:", "blob:"))]
    assert fetched and outside == [], outside
    page.close()


@pytest.mark.parametrize("viewport", [PROJECTOR, PHONE], ids=["1280x720", "390x844"])
def test_step_by_step_walks_the_users_image_through_five_screens(browser, server_url, viewport, tmp_path):
    page = open_page(browser, server_url, viewport)
    page.locator("#input-image input[type=file]").set_input_files(str(ASSETS / "cat_and_coffee.jpg"))
    page.wait_for_selector("#input-image img")
    page.click("#tab-walk-button")
    page.click("#walk-start")
    page.wait_for_function(f"document.querySelectorAll('#walk-features img').length === {12}")
    for step in range(1, 6):
        sentence = page.locator(f"#walk-text-{step}")
        sentence.wait_for(state="visible")
        assert "Press" not in sentence.inner_text()[:6], sentence.inner_text()  # the screen was filled in
        box = sentence.bounding_box()
        assert box["x"] >= 0 and box["x"] + box["width"] <= viewport["width"] + 1, (step, box)  # no overflow
        if step == 5:
            page.wait_for_function("document.querySelectorAll('#walk-slider img').length >= 2")
            wait_for_images(page, "#walk-slider")
            assert "Confidence kept at β = 0.80" in page.locator("#walk-kept").inner_text()
        page.screenshot(path=str(tmp_path / f"walk_{viewport['width']}_step{step}.png"))
        if step < 5:
            page.click(f"#walk-next-{step}")
    page.locator("#walk-beta input[type=range]").focus()
    for _ in range(5):
        page.keyboard.press("ArrowLeft")
    page.wait_for_function("() => document.querySelector('#walk-kept').innerText.includes('β = 0.30')")
    page.click("#walk-back-5")
    page.locator("#walk-text-4").wait_for(state="visible")
    page.close()


def test_keyboard_examples_and_alt_text(browser, server_url):
    page = open_page(browser, server_url, PROJECTOR)
    presses = 0
    while not page.evaluate("document.activeElement && document.activeElement.id === 'explain-btn'"):
        presses += 1
        assert presses <= 15, "Explain is not reachable within 15 Tab presses from the top"
        page.keyboard.press("Tab")
    print(f"\nExplain reached after {presses} Tab presses")
    names = page.locator("#example-buttons button").all_inner_texts()
    assert [name.strip() for name in names] == ["Cat", "Espresso", "Cat and espresso", "Astronaut", "Rocket", "Grace Hopper"]
    page.locator("#example-buttons button", has_text="Cat and espresso").click()  # a finished explanation
    page.wait_for_function("document.querySelectorAll('#clusters img').length > 0")
    assert "Explained class:" in summary(page)
    for selector in ("#overlay", "#base-map", "#scissors-map", "#heatmap", "#scores-chart"):
        alt = page.locator(f"{selector} img").first.get_attribute("alt")
        assert alt and len(alt) > 20, (selector, alt)
    page.close()


def test_beta_and_class_redraw_and_two_classes_side_by_side(browser, server_url, tmp_path):
    page = open_page(browser, server_url, {"width": 1600, "height": 1000})
    explain_upload(page, "chelsea.jpg", DEFAULT_Q)
    clusters = captions(page, "#clusters")
    assert sum(" · BASE · " in caption for caption in clusters) == 1 and clusters[0].startswith("cluster 0 · ")
    assert "Explained class: Egyptian cat" in summary(page)

    overlay = page.locator("#overlay img").get_attribute("src")
    page.locator("#beta input[type=range]").focus()
    for _ in range(round(0.40 / BETA_STEP)):
        page.keyboard.press("ArrowLeft")
    moved = f"β = {DEFAULT_BETA - 0.40:.2f}"
    page.wait_for_function(f"() => document.querySelector('#summary-md').innerText.includes('{moved}')")
    assert page.locator("#overlay img").get_attribute("src") != overlay
    assert "This request: 0 forward passes" in summary(page)

    choices = page.locator("#top5 label").all_inner_texts()
    assert len(choices) == 5 and choices[0].startswith("Egyptian cat")
    other = choices[2].split(" · ")[0]
    page.locator("#top5 label", has_text=other).click()
    page.wait_for_function(f"() => document.querySelector('#summary-md').innerText.includes('Explained class: {other}')")
    # another class: no pass for its clusters and scores, one batched pass for its β curve
    assert moved in summary(page) and f"This request: {len(TRADEOFF_BETAS)} forward passes" in summary(page)
    base = base_cluster(page)
    page.wait_for_function(
        f"() => [...document.querySelectorAll('#clusters img')].some(image => image.alt.startsWith('cluster {base} · BASE'))"
    )

    page.locator("#two-classes").get_by_text("Two classes side by side").click()
    page.click("#show-both")
    page.wait_for_function("['#overlay-a', '#overlay-b'].every(id => document.querySelector(id + ' img'))")
    assert "Class A:" in page.locator("#overlay-a").inner_text() and "Class B:" in page.locator("#overlay-b").inner_text()
    wait_for_images(page)
    page.screenshot(path=str(tmp_path / "two_classes.png"), full_page=True)
    page.close()


def test_a_shared_link_reopens_the_explanation_and_a_new_image_clears_it(browser, server_url):
    first = open_page(browser, server_url, PROJECTOR)
    first.locator("#example-buttons button", has_text="Rocket").click()
    first.wait_for_function("document.querySelectorAll('#clusters img').length > 0")
    shown = summary(first)
    link = first.evaluate(
        """async () => (await (await fetch('gradio_api/deep_link?session_hash=' + window.__gradio_session_hash__))
            .text()).replace(/"/g, '')"""
    )
    assert link, "no deep link for this session"
    # a new image clears every output of the old one
    first.locator("#input-image input[type=file]").set_input_files(str(ASSETS / "coffee.jpg"))
    first.wait_for_function("document.querySelectorAll('#clusters img').length === 0")
    assert first.locator("#overlay img").count() == 0 and summary(first).strip() == ""
    first.close()

    second = open_page(browser, f"{server_url}?deep_link={link}", PROJECTOR)
    second.wait_for_function("document.querySelectorAll('#clusters img').length > 0")
    second.wait_for_function(
        "text => document.querySelector('#summary-md').innerText.includes(text)", arg=shown.split("\n")[0]
    )
    # the page explained again on open (from the cache), so β responds in this new session
    second.wait_for_function("() => document.querySelector('#summary-md').innerText.includes('served from the cache')")
    second.locator("#beta input[type=range]").focus()
    second.keyboard.press("ArrowLeft")
    second.wait_for_function(f"() => document.querySelector('#summary-md').innerText.includes('β = {DEFAULT_BETA - BETA_STEP:.2f}')")
    second.close()


def test_a_model_that_needs_the_network_shows_the_whole_message_and_is_put_back(browser, server_url, monkeypatch):
    import torchvision.models._api

    def offline(*_args, **_kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    monkeypatch.setattr(torchvision.models._api, "load_state_dict_from_url", offline)
    page = open_page(browser, server_url, PROJECTOR)
    page.locator("#model input").click()
    option = page.locator("li.item", has_text="VGG-16")
    assert "needs the internet" in option.inner_text()
    option.click()
    toast = page.locator(".toast-body", has_text="could not be downloaded")
    toast.wait_for()
    text = toast.inner_text()
    assert "<urlopen error [Errno -3] Temporary failure in name resolution>" in text  # brackets survive
    assert "use an embedded model" in text  # the advice after them too
    page.wait_for_function("() => document.querySelector('#model input').value.startsWith('EfficientNet-Lite0')")
    time.sleep(12)  # longer than a default toast lives
    assert page.locator(".toast-body", has_text="could not be downloaded").count() == 1  # stays until closed
    assert page.locator(".error").count() == 0  # no red "Error" pill on any component
    page.close()


@pytest.mark.parametrize("axe_script", [AXE, AXE_CURRENT], ids=["axe-pinned", "axe-current"])
def test_no_serious_accessibility_violations(browser, server_url, axe_script):
    require(axe_script, "axe-core (npm install --prefix tests/axe)")
    page = open_page(browser, server_url, PROJECTOR)
    page.locator("#example-buttons button", has_text="Cat and espresso").click()
    page.wait_for_function("document.querySelectorAll('#clusters img').length > 0")
    wait_for_images(page)
    # each thumbnail is named by its caption (role and score), not only "Thumbnail 3 of 12"
    names = page.locator("#clusters button.thumbnail-item").evaluate_all("buttons => buttons.map(b => b.ariaLabel)")
    shown = captions(page, "#clusters")
    assert names and all(name.startswith(caption) for name, caption in zip(names, shown, strict=True)), names
    page.add_script_tag(path=str(axe_script))
    version = page.evaluate("() => axe.version")
    violations = page.evaluate(
        """async () => (await axe.run(document, {resultTypes: ['violations']})).violations
            .filter(v => ['serious', 'critical'].includes(v.impact))
            .map(v => v.id + ': ' + v.nodes.map(n => n.target.join(' ')).slice(0, 3).join(' | '))"""
    )
    assert violations == [], (version, violations)
    page.close()


def test_compare_with_a_fast_subset(browser, server_url, tmp_path):
    page = open_page(browser, server_url, {"width": 1600, "height": 1000})
    page.locator("#input-image input[type=file]").set_input_files(str(ASSETS / "chelsea.jpg"))
    page.wait_for_selector("#input-image img")
    page.click("#tab-compare-button")
    boxes = page.locator("#compare-methods label")
    for index in range(boxes.count()):
        box = boxes.nth(index)
        wanted = box.inner_text().strip() in FAST_METHODS
        if box.locator("input").is_checked() != wanted:
            box.click()
    page.click("#compare-btn")
    page.wait_for_function(f"document.querySelectorAll('#compare-gallery img').length === {1 + len(FAST_METHODS)}")
    tiles = captions(page, "#compare-gallery")
    assert tiles[0] == "Input · Egyptian cat"
    assert [tile.split(" · ")[0] for tile in tiles[1:]] == list(FAST_METHODS)
    assert all(" · drop " in tile for tile in tiles[1:])
    page.wait_for_selector("#compare-table table")
    headers = page.locator("#compare-table th").all_inner_texts()
    assert all("\n" not in header.strip() for header in headers if header.strip())  # no header broken mid-word
    wait_for_images(page, "#compare-gallery")
    page.screenshot(path=str(tmp_path / "compare.png"), full_page=True)
    page.close()


#: What each page script measures: the texts (buttons, labels, tabs) a translation could make too
#: wide for their box, by position in the page (the same in every language), and the walkthrough's
#: step titles, drawn wider than their 32-px step buttons by design, which must not overlap.
MEASURE_TEXTS = """() => {
  const shown = e => e.offsetParent !== null && e.clientWidth > 0 && !e.closest('footer');  // Gradio's footer is Gradio's
  const texts = [...document.querySelectorAll(
    'button:not(.icon-button):not([id^=walk-step-]), [data-testid="block-info"], [role=tab], label > span, input[type=text]')];
  const cut = texts.map((e, i) => [i, e]).filter(([, e]) => shown(e) && e.scrollWidth > e.clientWidth + 2)
    .map(([i, e]) => [i, e.innerText.slice(0, 50)]);
  const steps = [...document.querySelectorAll('button[id^=walk-step-]')].filter(shown).map(e => {
    const range = document.createRange(); range.selectNodeContents(e);
    const box = range.getBoundingClientRect(); return [box.left, box.right];
  });
  return {width: document.documentElement.scrollWidth, cut, steps,
          markers: document.body.innerText.includes('__i18n__') ||
                   [...document.querySelectorAll('*')].some(e => [...e.attributes].some(a => a.value.includes('__i18n__')))};
}"""
LOCALES = {"es-ES": "es", "zh-CN": "zh"}


def measure_tabs(page, viewport: dict, shots: Path | None = None, name: str = "") -> dict[str, dict]:
    """Every tab opened in turn and measured (:data:`MEASURE_TEXTS`), screenshots into ``shots``."""
    measured = {}
    for tab in ("explain", "walk", "compare", "sweeps", "teach"):
        page.locator(f"#tab-{tab}-button").click()
        page.evaluate("document.fonts.ready.then(() => null)")  # text measured in its final font
        page.wait_for_timeout(1000)  # the tab laid out (a busy machine takes longer)
        measured[tab] = page.evaluate(MEASURE_TEXTS)
        if shots is not None:
            page.screenshot(path=str(shots / f"{name}_{viewport['width']}_{tab}.png"), full_page=True)
    page.locator("#tab-explain-button").click()
    return measured


def explain_example(page, number: int = 2) -> None:
    """The example button ``number`` (in the page's order: 2 is the cat and the espresso), explained."""
    page.locator("#example-buttons button").nth(number).click()
    page.wait_for_function("document.querySelectorAll('#clusters img').length > 0")
    wait_for_images(page)


@pytest.mark.parametrize("viewport", [PROJECTOR, PHONE], ids=["1280x720", "390x844"])
@pytest.mark.parametrize("locale", list(LOCALES))
def test_the_page_speaks_the_browsers_language_and_nothing_overflows(browser, server_url, locale, viewport, tmp_path):
    """A class whose browsers ask for Spanish or Chinese: the page's texts, the explanation's words and
    the app's error messages come in that language; no translation key shows; no text is cut or
    pushed wider by the translation than the English page's (same viewport, same explanation)."""
    language = LOCALES[locale]
    pages = {}
    for asked in ("en-US", locale):
        context = browser.new_context(locale=asked, viewport=viewport)
        page = context.new_page()
        page.set_default_timeout(120_000)
        page.goto(server_url)
        page.wait_for_selector("#explain-btn")
        pages[asked] = (context, page)
    english, translated = pages["en-US"][1], pages[locale][1]
    page = translated
    # the page as built: translated in the browser
    assert page.locator("#explain-btn").inner_text().strip() == say("controls.explain", language)
    assert page.locator("#tab-walk-button").inner_text().strip() == say("page.tab.walk", language)
    assert say("explain.example.cat_and_espresso", language) in page.locator("#example-buttons").inner_text()
    # the server learns the page's language from the page itself (the cookie) and writes in it
    cookies = dict(part.strip().split("=", 1) for part in page.evaluate("document.cookie").split(";") if "=" in part)
    assert best_language(cookies.get(COOKIE)) == language, cookies
    page.click("#explain-btn")  # no image yet: the app's message, in the page's language
    page.get_by_text(say("errors.no_image", language)).first.wait_for()
    for each in (english, translated):
        explain_example(each)
    words = say("drawing.summary", language).split("{")[0].replace("*", "").strip()
    assert words and words in summary(page)
    assert all(caption.startswith(say("drawing.tile", language).split(" ")[0]) for caption in captions(page, "#clusters"))
    assert page.locator("#overlay img").first.get_attribute("alt") == say("explain.overlay_alt", language)
    # nothing untranslated, nothing the translation makes overflow
    baseline = measure_tabs(english, viewport)
    measured = measure_tabs(page, viewport, tmp_path, language)
    for tab, numbers in measured.items():
        assert not numbers["markers"], (tab, "a translation key is shown")
        assert numbers["width"] <= viewport["width"], (tab, numbers["width"])
        new_cuts = [cut for cut in numbers["cut"] if cut[0] not in {index for index, _ in baseline[tab]["cut"]}]
        assert new_cuts == [], (tab, new_cuts)
        steps = numbers["steps"]
        assert all(left >= 0 and right <= viewport["width"] for left, right in steps), (tab, steps)
        assert all(a[1] <= b[0] for a, b in itertools.pairwise(steps)), (tab, "step titles overlap", steps)
    print(f"\n{locale} {viewport['width']}x{viewport['height']}: screenshots in {tmp_path}")
    for context, _ in pages.values():
        context.close()
