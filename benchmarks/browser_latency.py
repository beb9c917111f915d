"""How fast a user sees the heatmap: the app's page in a real Chromium, photograph after photograph.

Starts the app as users run it (``python app.py`` on a free loopback port, or uses ``--url``),
optionally lets it compile its model in the background (``--compile-wait``: up to that many
seconds, polling the ``/status`` endpoint until every loaded model says ``compiled`` and the
examples are ready; what ``/status`` said when measuring starts is printed), then opens the page in
Debian's Chromium driven by Playwright (``/usr/bin/chromium``, never a downloaded browser) at
1280×720 (``--viewport 390x844`` for a phone). For each of ``--count`` photographs the server has
never seen (from ``--images DIR``, default the repository's ``assets/*.jpg``; those are the
example buttons' images, which the server explains in the background at start, so they are
replaced by crops/rotations written to a temporary folder, new for every run (``--seed``); a
folder with fewer than ``--count`` files is topped up with such variants) it uploads the photograph
into the Image input, waits until the upload shows, waits ``--settle`` seconds
more (default 1: a person looks at the photograph before pressing the button), clicks Explain and
measures, on the page's own clock (``performance.now()``):

- ``heatmap``: click → the heatmap (``#overlay img``) has a new ``src`` and is fully loaded;
- ``everything``: click → the galleries ``#clusters`` and ``#masked`` show their tiles (each with a
  new ``src``; a tile in the viewport must have loaded, one below it is loaded lazily by the
  browser when scrolled to and is not waited for);
- ``server``: the server's own time for that request and its split into the explanation (network
  work and clustering) and the drawing (pictures, files, zip), read from the summary the page
  shows (``#summary-json``, inside the closed ``#details`` accordion): the explanation, when the
  first message (the heatmap in view) was ready, the β curve's pass and the drawing; ``rest`` =
  heatmap − first message ready
  (queue, serialisation, transfer and the browser's rendering); "n/a" when not found;
- the pictures the page fetched (``/gradio_api/file=`` responses) between the click and
  everything shown, and their bytes.

Prints one line per photograph, then the median and min–max over photographs of each figure, and
the median ``heatmap`` against ``--target`` seconds (default 0.60). Exits 0 even when the target
is missed (it reports); 1 only when no photograph could be measured. Only loopback addresses are
used: the page's requests to anywhere else are blocked (and counted). The server is stopped at the
end (terminated, killed after a timeout), also on Ctrl-C.

    python benchmarks/browser_latency.py --count 8 --compile-wait 120
    python benchmarks/browser_latency.py --count 8 --viewport 390x844 --images ../shared/eval/ilsvrc-val-650
    python benchmarks/browser_latency.py --url http://127.0.0.1:7860 --count 5
    python benchmarks/browser_latency.py --env CLUSTERCAM_APP_SESSIONS=50 --count 8
"""

from __future__ import annotations

import argparse
import contextlib
import random
import re
import statistics
import sys
import tempfile
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # the serving harness, from this checkout
    sys.path.insert(0, str(ROOT))

from benchmarks.serving import (  # noqa: E402 (after the path above)
    Server,
    StartError,
    parse_summary,
    photographs,
    server_status,
    start_app,
    stop_app,
    terminate_as_interrupt,
    wait_until_up,
)

CHROMIUM = Path("/usr/bin/chromium")
#: As the browser tests launch it (tests/test_app_browser.py).
CHROMIUM_ARGS = [
    "--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--no-first-run",
]
LOOPBACK = ("127.0.0.1", "localhost", "::1", "[::1]")
#: Every URL but loopback's (a pattern, not a Python function, so that Playwright's driver matches
#: it and loopback requests are not held up by a round trip through this process).
BEYOND_LOOPBACK = re.compile(r"^(?!(https?|wss?)://(127\.0\.0\.1|localhost|\[::1\])(:[0-9]+)?(/|$))")

#: Seconds between the upload shown and the click (``--settle``'s default): no one clicks Explain
#: within a frame of seeing the photograph.
SETTLE_SECONDS = 1.0
#: An init script: the page's clock at the click on Explain (a capture listener, before Gradio's
#: own handler).
RECORD_CLICKS = """(() => {
  window.__bench = {click: null};
  document.addEventListener('click', event => {
    if (event.target.closest && event.target.closest('#explain-btn')) window.__bench.click = performance.now();
  }, true);
})();"""
#: The ``src`` of every picture the result shows now (what a new result must differ from).
SHOWN_SOURCES = """() => [...document.querySelectorAll('#overlay img, #clusters img, #masked img')]
  .map(image => image.src).filter(Boolean)"""
#: The uploaded picture shows (a ``src`` other than ``previous``) and has loaded.
UPLOAD_SHOWN = """previous => {
  const image = document.querySelector('#input-image img');
  return !!image && !!image.src && image.src !== previous && image.complete && image.naturalWidth > 0;
}"""
#: Started just before the click: every frame (``requestAnimationFrame``), notes the page's clock
#: when the heatmap (``#overlay img``) first has a ``src`` not in ``previous`` and has loaded, and
#: when, that done, both galleries show tiles with new ``src``s of which those in the viewport
#: have loaded (one below it is lazy: the browser loads it when scrolled to).
WATCH = """previous => {
  const bench = window.__bench;
  const fresh = image => !!image && !!image.src && !previous.includes(image.src);
  const loaded = image => image.complete && image.naturalWidth > 0;
  const inView = image => {
    const box = image.getBoundingClientRect();
    return box.bottom > 0 && box.top < window.innerHeight && box.right > 0 && box.left < window.innerWidth;
  };
  const step = () => {
    if (bench.stop) return;
    if (bench.heatmap == null) {
      const overlay = document.querySelector('#overlay img');
      if (fresh(overlay) && loaded(overlay)) bench.heatmap = performance.now();
    }
    if (bench.heatmap != null && bench.everything == null) {
      const clusters = [...document.querySelectorAll('#clusters img')], masked = [...document.querySelectorAll('#masked img')];
      const tiles = [...clusters, ...masked];
      if (clusters.length > 0 && masked.length > 0 && tiles.every(image => fresh(image) && (loaded(image) || !inView(image)))) {
        bench.everything = performance.now();
        bench.tiles = tiles.length;
        bench.loaded = tiles.filter(loaded).length;
      }
    }
    if (bench.everything == null) requestAnimationFrame(step);
  };
  requestAnimationFrame(step);
}"""
#: An init script: what the page copies to the clipboard is kept in ``window.__copied`` instead
#: (the summary's Copy button writes the JSON itself, ``JSON.stringify`` of the shown value).
CAPTURE_COPIES = """(() => {
  window.__copied = null;
  if (navigator.clipboard) navigator.clipboard.writeText = async text => { window.__copied = String(text); };
})();"""
#: The summary's text as shown (a ``gr.JSON`` in the closed ``#details`` accordion), or null: to
#: see that a new summary has arrived.
SUMMARY_TEXT = "() => document.querySelector('#summary-json')?.textContent ?? null"
#: Presses the summary's Copy button (a script's click: it works in the closed accordion); false
#: when there is no such button.
COPY_SUMMARY = """() => {
  window.__copied = null;
  const button = document.querySelector('#summary-json button[aria-label="Copy"], #summary-json button[title="Copy"]');
  if (!button) return false;
  button.click();
  return true;
}"""
#: The error Gradio shows for a failed event (a toast), or null.
ERROR_TEXT = """() => {
  const toast = document.querySelector('.toast-body.error, [data-testid="toast-body"].error');
  return toast ? toast.textContent : null;
}"""


@dataclass
class Figures:
    """What one photograph measured (seconds; None: not measured)."""

    photo: str
    size: str = ""
    heatmap: float | None = None
    everything: float | None = None
    server: float | None = None
    explanation: float | None = None
    first_paint: float | None = None
    curve: float | None = None
    drawing: float | None = None
    cached: bool | None = None
    requests: int = 0
    bytes: int = 0
    tiles: int = 0
    tiles_loaded: int = 0
    error: str = ""

    @property
    def rest(self) -> float | None:
        """Heatmap shown minus the server's time to the heatmap's message (its first): queue,
        serialisation, transfer, rendering."""
        ready = self.first_paint if self.first_paint is not None else self.server
        return None if self.heatmap is None or ready is None else self.heatmap - ready

    def line(self, index: int, count: int) -> str:
        head = f"photo {index}/{count} {self.photo} ({self.size})"
        if self.error:
            return f"{head}: ERROR {self.error}"
        split = "n/a" if self.explanation is None else (
            f"explanation {seconds(self.explanation)}, first message ready {seconds(self.first_paint)}, "
            f"β curve {seconds(self.curve)}, drawing {seconds(self.drawing)}"
        )
        return (
            f"{head}: click → heatmap {seconds(self.heatmap)}, → everything {seconds(self.everything)}; "
            f"server {seconds(self.server)} ({split}{', CACHED' if self.cached else ''}), rest {seconds(self.rest)}; "
            f"{self.requests} pictures fetched, {self.bytes / 1024:.0f} kB; "
            f"tiles {self.tiles_loaded}/{self.tiles} loaded"
        )


@dataclass
class Run:
    """Everything measured over the photographs, and what the page tried to reach elsewhere."""

    figures: list[Figures] = field(default_factory=list)
    blocked: list[str] = field(default_factory=list)

    def measured(self) -> list[Figures]:
        return [figure for figure in self.figures if not figure.error]


def seconds(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f} s"


def summary_lines(run: Run, target: float) -> list[str]:
    """Median [min–max] of every figure over the photographs, and the target line."""
    measured = run.measured()
    lines = [f"over {len(measured)} of {len(run.figures)} photographs: median [min–max]"]
    rows = [
        ("click → heatmap shown", "heatmap", "s"), ("click → everything shown", "everything", "s"),
        ("server (request)", "server", "s"), ("  explanation", "explanation", "s"),
        ("  first message ready", "first_paint", "s"), ("  β curve's pass", "curve", "s"), ("  drawing", "drawing", "s"),
        ("rest (heatmap − first message)", "rest", "s"), ("pictures fetched", "requests", "n"), ("kB fetched", "bytes", "kB"),
    ]
    for label, name, unit in rows:
        values = [getattr(figure, name) for figure in measured if getattr(figure, name) is not None]
        if not values:
            lines.append(f"  {label:<26} n/a")
            continue
        if unit == "kB":
            values = [value / 1024 for value in values]
        show = (lambda v: f"{v:.2f} s") if unit == "s" else (lambda v: f"{v:.0f}")
        lines.append(f"  {label:<26} {show(statistics.median(values))} [{show(min(values))}–{show(max(values))}]")
    heatmaps = [figure.heatmap for figure in measured if figure.heatmap is not None]
    if heatmaps:
        median = statistics.median(heatmaps)
        verdict = "met" if median <= target else f"MISSED by {median - target:.2f} s (×{median / target:.2f})"
        lines.append(f"target: median click → heatmap shown {median:.2f} s vs {target:.2f} s: {verdict}")
    else:
        lines.append(f"target: no heatmap measured (target {target:.2f} s)")
    if run.blocked:
        lines.append(f"blocked {len(run.blocked)} requests beyond loopback, e.g. {run.blocked[0]}")
    return lines


# ---- photographs -------------------------------------------------------------------------------


def variant(source: Path, into: Path, number: int, rng: random.Random) -> Path:
    """A crop (70–95 % of each side, anywhere) of ``source``, turned by 0/90/180/270° and maybe
    mirrored: a photograph the server has not seen (its cache is keyed by the file's bytes)."""
    from PIL import Image, ImageOps

    with Image.open(source) as opened:
        image = ImageOps.exif_transpose(opened).convert("RGB")
    width, height = image.size
    w, h = round(width * rng.uniform(0.70, 0.95)), round(height * rng.uniform(0.70, 0.95))
    left, top = rng.randint(0, width - w), rng.randint(0, height - h)
    image = image.crop((left, top, left + w, top + h)).rotate(rng.choice((0, 90, 180, 270)), expand=True)
    if rng.random() < 0.5:
        image = ImageOps.mirror(image)
    path = into / f"{source.stem}_v{number}.jpg"
    image.save(path, quality=rng.randint(88, 94))
    return path


def choose(files: list[Path], seen: bool, count: int, into: Path, seed: int) -> list[Path]:
    """``count`` photographs new to the server: ``files`` as they are when there are enough and
    the server has not seen them, otherwise those plus (or, for the examples, only) variants."""
    if not seen and len(files) >= count:
        return files[:count]
    rng = random.Random(seed)
    chosen = [] if seen else list(files)
    number = 0
    while len(chosen) < count:
        chosen.append(variant(files[number % len(files)], into, number, rng))
        number += 1
    return chosen


def pixel_size(path: Path) -> str:
    from PIL import Image

    with Image.open(path) as image:
        return f"{image.width}×{image.height}"


# ---- the server's readiness ---------------------------------------------------------------


def ready(status: dict | None) -> bool:
    models = (status or {}).get("models") or {}
    return bool(models) and all(model.get("compiled") and not model.get("compiling") for model in models.values()) \
        and bool((status or {}).get("examples_ready"))


def compile_wait(url: str, limit: float, every: float = 5.0) -> dict | None:
    """Up to ``limit`` seconds, polling ``/status`` until every model has built all its graphs (the
    square and the common photograph shapes) and the examples are ready; returns the last status."""
    began = time.monotonic()
    status = server_status(url)
    while not ready(status) and time.monotonic() - began < limit:
        time.sleep(min(every, max(0.0, limit - (time.monotonic() - began))))
        status = server_status(url)
    waited = time.monotonic() - began
    print(f"compile-wait: {waited:.0f} s of {limit:.0f} s, {'ready' if ready(status) else 'not ready'}", flush=True)
    return status


def describe_status(status: dict | None) -> str:
    if not status:
        return "/status: n/a"
    if "error" in status:
        return f"/status: n/a ({status['error'][:200]})"
    models = "; ".join(
        f"{name}: compiled={model.get('compiled')} {','.join(model.get('compiled_shapes') or [])}"
        + (f" on {model['device']}" if "device" in model else "")
        for name, model in (status.get("models") or {}).items()
    ) or "no model loaded"
    return f"/status: {models}; examples_ready={status.get('examples_ready')}; uptime {status.get('uptime_s')} s"


# ---- the browser -------------------------------------------------------------------------------


def loopback_only(run: Run):
    """A route handler: requests to loopback go on, anything else is aborted and noted."""

    def handle(route) -> None:
        url = route.request.url
        host = urllib.parse.urlsplit(url).hostname or ""
        if url.startswith(("data:", "blob:")) or host in LOOPBACK or host == "::1":
            route.continue_()
        else:
            run.blocked.append(url)
            route.abort()

    return handle


def response_bytes(response) -> int:
    length = response.headers.get("content-length")
    if length and length.isdigit():
        return int(length)
    with contextlib.suppress(Exception):  # a response whose body is gone: counted, size unknown
        return len(response.body())
    return 0


def copied_summary(page) -> dict | None:
    """The summary the page shows, as the JSON its Copy button copies (parsed with ``json.loads``);
    None when there is no button or nothing was copied."""
    if not page.evaluate(COPY_SUMMARY):
        return None
    with contextlib.suppress(Exception):
        page.wait_for_function("() => window.__copied != null", timeout=5_000)
    return parse_summary(page.evaluate("() => window.__copied"))


def read_request(page, before: str | None) -> dict[str, float | bool] | None:
    """The summary's ``request`` record, read once ``#summary-json`` shows a summary other than
    ``before`` (its text at the click; the accordion may be closed); if the summary cannot be read
    so, the accordion is opened, the summary read and the accordion closed again."""
    with contextlib.suppress(Exception):  # the summary came with the heatmap: a short wait at most
        page.wait_for_function(f"before => {{ const text = ({SUMMARY_TEXT})(); return !!text && text !== before "
                               "&& text.includes('server_seconds'); }", arg=before, timeout=10_000)
    summary = copied_summary(page)
    if summary is None and page.locator("#details").count():
        label = page.locator("#details button").first  # the accordion's label
        with contextlib.suppress(Exception):
            label.click(timeout=5_000)
            page.wait_for_function("() => (document.querySelector('#summary-json')?.textContent ?? '').includes('server_seconds')",
                                   timeout=10_000)
            summary = copied_summary(page)
            label.click(timeout=5_000)
    request = (summary or {}).get("request")
    return request if isinstance(request, dict) else None


def explain_one(page, photo: Path, timeout_ms: float, settle: float = SETTLE_SECONDS) -> Figures:
    """Upload ``photo``, wait ``settle`` seconds, click Explain, and measure (see the module
    docstring)."""
    figures = Figures(photo.name, pixel_size(photo))
    upload_before = page.evaluate("() => document.querySelector('#input-image img')?.src ?? ''")
    page.locator("#input-image input[type=file]").set_input_files(str(photo))
    page.wait_for_function(UPLOAD_SHOWN, arg=upload_before, timeout=timeout_ms)
    # a person looks at the photograph before pressing Explain: what the upload set off on the page
    # (the cleared outputs redrawn, the preview decoded) is not the click's
    time.sleep(settle)
    previous = page.evaluate(SHOWN_SOURCES)
    summary_before = page.evaluate(SUMMARY_TEXT)
    page.evaluate("() => { window.__bench = {click: null}; }")
    pictures: list = []
    collecting = [True]

    def on_response(response) -> None:
        if collecting[0] and "/gradio_api/file=" in response.url:
            pictures.append(response)

    page.on("response", on_response)
    try:
        page.evaluate(WATCH, previous)
        page.click("#explain-btn")
        began = time.perf_counter()
        try:
            page.wait_for_function("() => window.__bench.heatmap != null", timeout=timeout_ms, polling=50)
            heatmap_python = time.perf_counter() - began
            page.wait_for_function("() => window.__bench.everything != null", timeout=timeout_ms, polling=50)
            everything_python = time.perf_counter() - began
        except Exception as exc:  # a timeout or an error the page shows: this photograph's finding
            page.evaluate("() => { window.__bench.stop = true; }")
            shown = page.evaluate(ERROR_TEXT)
            figures.error = (shown or f"{type(exc).__name__}: {str(exc).splitlines()[0]}").strip()[:300]
            return figures
    finally:
        collecting[0] = False
        page.remove_listener("response", on_response)
    clock = page.evaluate("() => window.__bench")
    if clock.get("click") is not None:  # the page's own clock, from the click event itself
        figures.heatmap = (clock["heatmap"] - clock["click"]) / 1000
        figures.everything = (clock["everything"] - clock["click"]) / 1000
    else:  # the click listener missed it: Python's clock around Playwright's waits
        figures.heatmap, figures.everything = heatmap_python, everything_python
    figures.tiles, figures.tiles_loaded = int(clock.get("tiles") or 0), int(clock.get("loaded") or 0)
    figures.requests = len(pictures)
    figures.bytes = sum(response_bytes(response) for response in pictures)
    request = read_request(page, summary_before)
    if request:
        figures.server = request.get("server_seconds")
        figures.explanation = request.get("explanation_seconds")
        figures.first_paint = request.get("first_paint_seconds")
        figures.curve = request.get("curve_seconds")
        figures.drawing = request.get("drawing_seconds")
        figures.cached = request.get("cached")
    return figures


def measure(url: str, photos: list[Path], viewport: dict[str, int], timeout: float,
            settle: float = SETTLE_SECONDS) -> Run:
    """Open the page and explain every photograph in turn (``settle``: see :func:`explain_one`)."""
    from playwright.sync_api import sync_playwright

    run = Run()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport=viewport)
            context.route(BEYOND_LOOPBACK, loopback_only(run))  # matched in the driver: loopback is not intercepted
            page = context.new_page()
            page.set_default_timeout(timeout * 1000)
            page.add_init_script(RECORD_CLICKS)
            page.add_init_script(CAPTURE_COPIES)
            began = time.perf_counter()
            page.goto(url)
            page.wait_for_selector("#explain-btn")
            print(f"page open in {time.perf_counter() - began:.2f} s at {viewport['width']}×{viewport['height']}", flush=True)
            for index, photo in enumerate(photos, 1):
                figures = explain_one(page, photo, timeout * 1000, settle)
                run.figures.append(figures)
                print(figures.line(index, len(photos)), flush=True)
        finally:
            browser.close()
    return run


# ---- main --------------------------------------------------------------------------------------


def viewport_size(text: str) -> dict[str, int]:
    try:
        width, height = (int(part) for part in text.lower().replace("×", "x").split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"a viewport is WIDTHxHEIGHT, like 390x844, not {text!r}") from None
    return {"width": width, "height": height}


def environment_pair(text: str) -> tuple[str, str]:
    name, equals, value = text.partition("=")
    if not equals or not name:
        raise argparse.ArgumentTypeError(f"--env takes NAME=VALUE, not {text!r}")
    return name, value


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=8, help="photographs to explain, one after another")
    parser.add_argument("--images", default=None, help="a folder of photographs (default: the repository's assets/*.jpg)")
    parser.add_argument("--url", default=None, help="an app already running on this machine (loopback)")
    parser.add_argument("--compile-wait", type=float, default=0.0,
                        help="after the page answers, up to this many seconds for the server's background "
                             "compilation and examples (polling /status)")
    parser.add_argument("--viewport", type=viewport_size, default=viewport_size("1280x720"), help="WIDTHxHEIGHT")
    parser.add_argument("--settle", type=float, default=SETTLE_SECONDS,
                        help="seconds between the upload shown and the click (a person looking at it)")
    parser.add_argument("--target", type=float, default=0.60, help="seconds for the median click → heatmap shown")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds one photograph may take")
    parser.add_argument("--start-timeout", type=float, default=600.0, help="seconds the server may take to answer")
    parser.add_argument("--seed", type=int, default=None, help="of the variants' crops (default: a new one each run)")
    parser.add_argument("--env", type=environment_pair, action="append", default=[], metavar="NAME=VALUE",
                        help="an environment variable for the server (repeatable)")
    args = parser.parse_args()
    if args.count < 1:
        parser.error("--count must be at least 1")
    if not CHROMIUM.exists():
        raise SystemExit(f"needs Debian's chromium at {CHROMIUM}")
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**31)

    server: Server | None = None
    with tempfile.TemporaryDirectory(prefix="browser_latency_") as scratch, terminate_as_interrupt():
        try:
            files = photographs(args.images or ROOT / "assets")
            photos = choose(files, not args.images, args.count, Path(scratch), seed)
            # an app already running is only waited for; a new one runs until the end
            server = Server(args.url.rstrip("/")) if args.url else start_app(dict(args.env), Path(scratch) / "server.log")
            print(f"app at {server.url}{f' (pid {server.pid}, python app.py)' if server.process else ''}; "
                  f"{len(photos)} photograph{'s' if len(photos) != 1 else ''} ({'variants, seed ' + str(seed) if any(p.parent == Path(scratch) for p in photos) else 'as they are'})",
                  flush=True)
            up = wait_until_up(server, args.start_timeout)
            print(f"page answered after {up:.1f} s", flush=True)
            status = compile_wait(server.url, args.compile_wait) if args.compile_wait > 0 else server_status(server.url)
            print(f"when measuring starts, {describe_status(status)}", flush=True)
            run = measure(server.url, photos, args.viewport, args.timeout, args.settle)
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            return 130
        except (FileNotFoundError, StartError) as exc:  # no photographs; a server that did not answer
            raise SystemExit(str(exc)) from None
        finally:
            if server is not None and server.process is not None:
                stop_app(server, timeout=20.0)
                if server.ended_badly():
                    print(f"the server ended with {server.returncode}:\n{server.log_tail()}", file=sys.stderr)
    print("\n".join(summary_lines(run, args.target)))
    return 0 if run.measured() else 1


if __name__ == "__main__":
    sys.exit(main())
