"""Load test of the running app: many gradio_client clients calling /explain at once.

Starts ``python app.py`` on a free loopback port (or uses ``--url``), warms it up (and waits for
its background compilation, ``--compile-wait``), then:

1. with ``--sequential N``: one client explains N different photographs one after another (what
   one student does); prints the median latency as the client sees it and the server's time split
   into the explanation (network work and clustering), drawing (pictures, files, zip) and the rest
   (Gradio's serialisation and the transfer: latency − server time);
2. ``--clients`` threads, each with its own ``gradio_client.Client`` (its own session), making
   ``--calls`` /explain calls at once. Photographs come from ``--images DIR`` (every call a
   different one: a class with their own pictures) or from the examples, where a third of the
   clients send the *same* example at the same moment (a classroom clicking one example).
   With ``--as-page`` each client explains as the page does: step 1 (/explain_first: the heatmap
   in view), then step 2 (/explain_rest), the second queued behind every step 1 already waiting.

3. with ``--mixed``: fair sharing. ``--heavy`` clients (default 2) send the most expensive study
   the server accepts (:func:`most_expensive_study`: the comparison, over every subset of methods
   and every block-level layer, whose stated cost is largest within the server's budget, read from
   ``/lanes``) again and again, while ``--clients`` explainers each explain ``--calls`` different
   photographs one after another (``--think`` seconds apart). Prints the explainers' median and
   largest latency, what became of the studies (finished, refused with a message, errors) and the
   server's RSS growth; exits non-zero if an explanation failed, a refusal came without a message,
   a study failed otherwise, or RSS grew by ``--max-growth-mb``.

Meanwhile the server's queue length is polled. Prints successes, p50/p95 latency (the whole answer,
and the first message: the heatmap in view, as a browser shows it before the rest), the split, the
largest queue seen, the CPU seconds the server and the clients (this process, on the same cores)
spent while the calls ran with the arithmetic beside the measurement (the server's CPU per call ×
calls / cores: the least wall time those calls can take here), and the server's RSS before and
after (read at rest, once it has trimmed its heap); exits non-zero if a call failed or RSS
grew by ``--max-growth-mb`` or more after warm-up. Only loopback addresses are used.

    python benchmarks/load_test.py --clients 30 --calls 1 --sequential 8 --images ../shared/eval/ilsvrc-val-650
    python benchmarks/load_test.py --as-page --clients 30 --calls 1 --rounds 2 --images ../shared/eval/ilsvrc-val-650
    python benchmarks/load_test.py --mixed --heavy 2 --clients 10 --calls 3 --images ../shared/eval/ilsvrc-val-650
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import os
import statistics
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # the serving harness, the library and the app, from this checkout
    sys.path.insert(0, str(ROOT))

from benchmarks.serving import (  # noqa: E402 (after the path above)
    StartError,
    cpu_seconds,
    photographs,
    queue_size,
    rss_mb,
    serve_app,
    summary_request,
    terminate_as_interrupt,
)

EXAMPLES = ["chelsea.jpg", "coffee.jpg", "cat_and_coffee.jpg", "astronaut.jpg", "rocket.jpg", "grace_hopper.jpg"]


@dataclass(frozen=True)
class ClientStyle:
    """How each client calls the app."""

    #: download every file of every answer (``--download``); a browser fetches only the pictures
    #: it shows, lazily, and gradio_client by default fetches all ~25 files at once
    download: bool = False
    #: explain as the page does (``--as-page``: two chained steps) rather than as an API caller
    #: (one /explain call)
    as_page: bool = False

    def client(self, url: str):
        from gradio_client import Client

        return Client(url, verbose=False, analytics_enabled=False, download_files=self.download)


@dataclass
class LoadReport:
    """What a load run measured."""

    calls: int = 0
    successes: int = 0
    latencies: list[float] = field(default_factory=list)
    #: click → the first message (the heatmap in view) received, per successful call
    first_latencies: list[float] = field(default_factory=list)
    splits: list[dict[str, float]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    max_queue: int = 0
    rss_start_mb: float = 0.0
    rss_warm_mb: float = 0.0
    rss_end_mb: float = 0.0
    seconds: float = 0.0
    #: CPU seconds spent from the moment every client is ready to the last answer: the server's
    #: and this process's (the clients, on the same cores), and the wall time they span
    server_cpu_s: float = 0.0
    client_cpu_s: float = 0.0
    calls_wall_s: float = 0.0

    @property
    def growth_mb(self) -> float:
        return self.rss_end_mb - self.rss_warm_mb

    def percentile(self, fraction: float, first: bool = False) -> float:
        ordered = sorted(self.first_latencies if first else self.latencies)
        if not ordered:
            return float("nan")
        return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]

    def split_line(self) -> str:
        """Medians of the server's explanation / drawing time and of the rest of the latency."""
        if not self.splits:
            return "server split: none measured"
        median = {key: statistics.median(split[key] for split in self.splits) for key in self.splits[0]}
        return (
            f"server split (medians): explanation {1000 * median['explanation']:.0f} ms, first message (the "
            f"heatmap in view) ready at {1000 * median['first paint']:.0f} ms, the β curve's pass "
            f"{1000 * median['curve']:.0f} ms, drawing "
            f"{1000 * median['drawing']:.0f} ms, server total {1000 * median['server']:.0f} ms; serialisation, "
            f"queue and transfer {1000 * median['rest']:.0f} ms"
        )

    def cpu_line(self) -> str:
        """The arithmetic beside the measurement: the server's CPU per call × calls / cores is the
        least wall time these calls can take on this machine, whatever the order of work."""
        cores, per_call = psutil.cpu_count() or 1, self.server_cpu_s / max(1, self.calls)
        return (
            f"CPU while the calls ran ({self.calls_wall_s:.1f} s of wall time on {cores} cores, "
            f"{cores * self.calls_wall_s:.1f} core-s): server {self.server_cpu_s:.1f} s ({per_call:.2f} s per call, "
            f"so {self.calls} calls need at least {self.calls} × {per_call:.2f} / {cores} = "
            f"{self.calls * per_call / cores:.1f} s), the clients (this process) {self.client_cpu_s:.1f} s"
        )

    def lines(self) -> list[str]:
        return [
            f"calls: {self.successes}/{self.calls} succeeded in {self.seconds:.1f} s",
            f"latency p50 {self.percentile(0.5):.2f} s, p95 {self.percentile(0.95):.2f} s, "
            f"mean {statistics.fmean(self.latencies) if self.latencies else float('nan'):.2f} s "
            f"(the first message, the heatmap in view: p50 {self.percentile(0.5, first=True):.2f} s, "
            f"p95 {self.percentile(0.95, first=True):.2f} s)",
            self.split_line(),
            f"largest queue seen: {self.max_queue}",
            *([self.cpu_line()] if self.server_cpu_s else []),
            f"server RSS: {self.rss_start_mb:.0f} MB at start, {self.rss_warm_mb:.0f} MB after warm-up, "
            f"{self.rss_end_mb:.0f} MB after the load (growth {self.growth_mb:+.0f} MB)",
            *(f"error: {error}" for error in self.errors[:5]),
        ]


def explain_call(client, image: str | Path, seed: int = 0, *, as_page: bool = False) -> dict:
    """One explanation with the page's defaults (``seed`` makes a new request of the same image);
    returns the summary's ``request`` record with the latency of the heatmap in view. By default
    one /explain call (its first message is the heatmap in view); ``as_page`` (``--as-page``) the
    page's two steps, /explain_first then /explain_rest in the same session, as a browser sends
    them (without the browser's wait for the paint between them)."""
    from gradio_client import handle_file

    path = image if Path(image).is_absolute() else ROOT / "assets" / image
    began = time.perf_counter()
    if as_page:
        # an undocumented endpoint takes its inputs in order: /explain's, with their defaults
        parameters = explain_parameters(client)
        chosen = {"image": handle_file(str(path)), "model": "efficientnet_lite0", "seed": seed}
        client.predict(*[chosen.get(p["parameter_name"], p.get("parameter_default")) for p in parameters],
                       api_name="/explain_first")
        first = time.perf_counter() - began
        return {**summary_request(client.predict(api_name="/explain_rest")), "first_message_latency": first}
    job = client.submit(handle_file(str(path)), "efficientnet_lite0", api_name="/explain", seed=seed)
    first = None
    while not job.done():  # the first message (the heatmap in view) arrives before the whole answer
        if first is None and job.outputs():
            first = time.perf_counter() - began
        time.sleep(0.002)  # the instrument's own wait: small beside what it measures
    answer = job.result()
    whole = time.perf_counter() - began
    return {**summary_request(answer), "first_message_latency": whole if first is None else first}


@functools.cache
def explain_parameters(client) -> list[dict]:
    """/explain's inputs as the client's API view lists them (asked once per client)."""
    return client.view_api(return_format="dict", print_info=False)["named_endpoints"]["/explain"]["parameters"]


def record(report: LoadReport, began: float, request: dict | None, error: str) -> None:
    latency = time.perf_counter() - began
    report.calls += 1
    report.successes += not error
    report.latencies.append(latency)
    if request and "first_message_latency" in request:
        report.first_latencies.append(request["first_message_latency"])
    if error:
        report.errors.append(error)
    elif request:
        report.splits.append({
            "explanation": request.get("explanation_seconds", 0.0),
            "first paint": request.get("first_paint_seconds", request["server_seconds"]),
            "curve": request.get("curve_seconds", 0.0), "drawing": request.get("drawing_seconds", 0.0),
            "server": request["server_seconds"], "rest": latency - request["server_seconds"],
        })


def timed_explain(client, image: str | Path, seed: int, report: LoadReport, lock: threading.Lock | None = None,
                  *, as_page: bool = False) -> None:
    """One explanation (:func:`explain_call`), its latency and server split (or its error)
    recorded in ``report``."""
    began = time.perf_counter()
    try:
        request, error = explain_call(client, image, seed, as_page=as_page), ""
    except Exception as exc:  # a failed call is a finding, reported below
        request, error = None, f"{type(exc).__name__}: {exc}"
    with lock or contextlib.nullcontext():
        record(report, began, request, error)


def run_threads(target, count: int) -> float:
    """``target(0) … target(count - 1)`` in threads at once; seconds until the last finished."""
    began = time.perf_counter()
    threads = [threading.Thread(target=target, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.perf_counter() - began


def run_sequential(url: str, images: list[Path], count: int, style: ClientStyle = ClientStyle()) -> LoadReport:
    """One client, ``count`` different photographs one after another."""
    client = style.client(url)
    report = LoadReport()
    chosen = images[-count:] if len(images) >= count else [EXAMPLES[i % len(EXAMPLES)] for i in range(count)]
    for index, image in enumerate(chosen):
        timed_explain(client, image, 20_000 + index, report, as_page=style.as_page)
    return report


def poll_queue(url: str, report: LoadReport, stop: threading.Event) -> None:
    """The largest queue length seen, every 0.2 s until ``stop``."""
    while not stop.is_set():
        size = queue_size(url)
        if size is not None:
            report.max_queue = max(report.max_queue, size)
        stop.wait(0.2)


def warm_server(url: str, warm_requests: int, style: ClientStyle = ClientStyle()) -> None:
    """Every example once (models, lazy imports, allocator pools), then as many distinct requests
    as the server's explanation cache holds: that cache (an LRU of at most 32 explanations, a few
    MB each) is memory the server keeps by design, so it is filled before growth is measured."""
    warm = style.client(url)
    for index in range(max(len(EXAMPLES), warm_requests)):
        explain_call(warm, EXAMPLES[index % len(EXAMPLES)], seed=10_000 + index, as_page=style.as_page)


def run_load(url: str, pid: int, *, clients: int, calls: int, warm_up: bool = True, warm_requests: int = 32,
             images: list[Path] | None = None, style: ClientStyle = ClientStyle()) -> LoadReport:
    """Warm up, then ``clients`` × ``calls`` concurrent explanations; measures as it goes."""
    report = LoadReport(rss_start_mb=rss_mb(pid))
    if warm_up:
        warm_server(url, warm_requests, style)
    report.rss_warm_mb = rss_mb(pid)

    marks: dict[str, float] = {}

    def all_ready() -> None:  # every client has loaded the page: the calls start now
        marks.update(server=cpu_seconds(pid), client=cpu_seconds(), wall=time.perf_counter())

    lock, start = threading.Lock(), threading.Barrier(clients, action=all_ready)

    def worker(index: int) -> None:
        client = style.client(url)
        start.wait()
        for call in range(calls):
            if images:  # every call its own photograph
                image, seed = images[(index * calls + call) % len(images)], 0
            else:  # a third of the clients send the same example at once; the others new requests
                image, seed = ("cat_and_coffee.jpg", 0) if index % 3 == 0 else (EXAMPLES[(index + call) % len(EXAMPLES)], 100 + index * calls + call)
            timed_explain(client, image, seed, report, lock, as_page=style.as_page)

    stop = threading.Event()
    poller = threading.Thread(target=poll_queue, args=(url, report, stop), daemon=True)
    poller.start()
    report.seconds = run_threads(worker, clients)
    if marks:
        report.server_cpu_s = cpu_seconds(pid) - marks["server"]
        report.client_cpu_s = cpu_seconds() - marks["client"]
        report.calls_wall_s = time.perf_counter() - marks["wall"]
    stop.set()
    poller.join()
    report.rss_end_mb = rss_mb(pid)
    return report


@dataclass
class MixedReport:
    """What the mixed scenario measured: the explainers' calls and the heavy clients' studies."""

    explain: LoadReport
    study: str
    study_cost: int
    finished: int = 0
    cancelled: int = 0
    refused: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    study_seconds: list[float] = field(default_factory=list)
    alone: LoadReport = field(default_factory=LoadReport)  # the same explainers with no study running

    @property
    def ok(self) -> bool:
        return (self.explain.successes == self.explain.calls and self.alone.successes == self.alone.calls
                and not self.failed
                and all(message.strip() for message in self.refused))

    def lines(self) -> list[str]:
        e = self.explain
        return [
            f"study sent again and again: {self.study} (stated cost {self.study_cost:,} passes)",
            f"studies: {self.finished} finished (median {statistics.median(self.study_seconds) if self.study_seconds else float('nan'):.1f} s), "
            f"{len(self.refused)} refused with a message, {self.cancelled} cancelled at the end, {len(self.failed)} failed otherwise",
            f"explanations: {e.successes}/{e.calls} succeeded; median {e.percentile(0.5):.2f} s, "
            f"p95 {e.percentile(0.95):.2f} s, max {max(e.latencies) if e.latencies else float('nan'):.2f} s",
            e.split_line(),
            *([f"the same explainers with no study running: median {self.alone.percentile(0.5):.2f} s, max "
               f"{max(self.alone.latencies):.2f} s; with the studies / alone: median ×"
               f"{e.percentile(0.5) / self.alone.percentile(0.5):.2f}, max ×{max(e.latencies) / max(self.alone.latencies):.2f}"]
              if self.alone.latencies and e.latencies else []),
            f"server RSS: {e.rss_warm_mb:.0f} MB after warm-up, {e.rss_end_mb:.0f} MB after (growth {e.growth_mb:+.0f} MB)",
            *(f"refused: {message[:300]}" for message in self.refused[:1]),
            *(f"failed: {message[:300]}" for message in self.failed[:3]),
            *(f"explain error: {error}" for error in e.errors[:3]),
        ]


def most_expensive_study(budget: int, model: str = "efficientnet_lite0") -> tuple[list[str], str, int]:
    """``(methods, layer, cost)`` of the comparison with the largest stated cost within ``budget``:
    every subset of methods at every block-level layer, costed as the server costs it."""
    import itertools

    from clustercam.methods import METHODS
    from clustercam.zoo import load_model
    from clustercamapp.lanes import compare_cost

    spec = load_model(model)
    best: tuple[list[str], str, int] = ([], "", -1)
    names = list(METHODS)
    for info in spec.layers():
        if info.name.count(".") > 1:
            continue
        for size in range(1, len(names) + 1):
            for methods in itertools.combinations(names, size):
                total = compare_cost(spec, info.name, methods, {}, budget=budget).total
                if best[2] < total <= budget:
                    best = (list(methods), info.name, total)
    return best


def wait_idle(url: str, timeout: float = 120) -> None:
    """Until no study runs or waits on the server (``/lanes``)."""
    from gradio_client import Client

    watcher = Client(url, verbose=False, analytics_enabled=False)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = watcher.predict(api_name="/lanes")
        if not status["running"] and not status["waiting"]:
            return
        time.sleep(0.5)


def run_mixed(url: str, pid: int, *, heavy: int, explainers: int, calls: int, images: list[Path],
              think: float = 0.0, warm_requests: int = 32, warm_study: bool | float = True,
              baseline: bool = True, first: int = 0, style: ClientStyle = ClientStyle()) -> MixedReport:
    """``heavy`` clients repeat the most expensive accepted study while ``explainers`` clients
    explain ``calls`` different photographs each (numbered from ``first``: another round can use
    other photographs or seeds); see the module docstring. The explainers never download the
    answers' files (``style.download`` applies to the warm-up)."""
    from gradio_client import Client, handle_file

    status = Client(url, verbose=False, analytics_enabled=False).predict(api_name="/lanes")
    methods, layer, cost = most_expensive_study(int(status["request_budget"]))
    from gradio_client.exceptions import AppError

    study_image = str(ROOT / "assets" / "cat_and_coffee.jpg")

    def send_study(client: Client, seed: int, stop: threading.Event | None = None) -> None:
        """One study; cancelled (as a browser's Stop would) once ``stop`` is set."""
        job = client.submit(handle_file(study_image), "efficientnet_lite0", layer, seed=seed, methods=methods,
                            api_name="/compare")
        while stop is not None and not job.done():
            if stop.is_set():
                job.cancel()
                return
            time.sleep(0.1)
        job.result()

    rss_start = rss_mb(pid)
    warm_server(url, warm_requests, style)
    if warm_study:  # the study copy of the model and the study's allocations (cut short after warm_study s)
        cut = threading.Event()
        if warm_study is not True:
            threading.Timer(float(warm_study), cut.set).start()
        send_study(Client(url, verbose=False, analytics_enabled=False, download_files=False), 99, stop=cut)
        wait_idle(url)
    explain = LoadReport(rss_start_mb=rss_start, rss_warm_mb=rss_mb(pid))
    report = MixedReport(explain, f"/compare {', '.join(methods)} at {layer}", cost)
    lock, done = threading.Lock(), threading.Event()

    def heavy_client(index: int) -> None:
        client = Client(url, verbose=False, analytics_enabled=False, download_files=False)
        while not done.is_set():
            began = time.perf_counter()
            try:
                send_study(client, index, stop=done)
                if done.is_set():
                    with lock:
                        report.cancelled += 1  # the explainers are through: stopped like a closed page
                    break
                with lock:
                    report.finished += 1
                    report.study_seconds.append(time.perf_counter() - began)
            except AppError as exc:  # the server's own message (a refusal, a stopped study)
                with lock:
                    report.refused.append(str(exc))
            except Exception as exc:  # anything else is opaque: a failure
                with lock:
                    report.failed.append(f"{type(exc).__name__}: {exc}")

    def explainer(index: int, into: LoadReport, offset: int) -> None:
        client = Client(url, verbose=False, analytics_enabled=False, download_files=False)
        for call in range(calls):
            number = first + offset + index * calls + call  # every call of both phases a different photograph
            image = images[number % len(images)] if images else EXAMPLES[number % len(EXAMPLES)]
            timed_explain(client, image, 0 if images else 30_000 + number, into, lock, as_page=style.as_page)
            time.sleep(think)

    def explain_phase(into: LoadReport, offset: int) -> None:
        into.seconds = run_threads(lambda index: explainer(index, into, offset), explainers)

    if baseline:  # the same explainers with no study running, for the side-by-side ratio
        explain_phase(report.alone, explainers * calls)
    heavies = [threading.Thread(target=heavy_client, args=(i,)) for i in range(heavy)]
    for thread in heavies:
        thread.start()
    time.sleep(2.0)  # the studies are running when the explainers arrive
    explain_phase(explain, 0)
    done.set()
    for thread in heavies:
        thread.join()
    wait_idle(url)  # a cancelled study stops at its next batch: measure memory once none runs
    explain.rss_end_mb = rss_mb(pid)
    return report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--calls", type=int, default=3)
    parser.add_argument("--url", default=None, help="an app already running on this machine (loopback)")
    parser.add_argument("--pid", type=int, default=None, help="its process id, for RSS (with --url)")
    parser.add_argument("--max-growth-mb", type=float, default=100.0)
    parser.add_argument("--rounds", type=int, default=1, help="repeat the load; RSS growth is measured over the last round")
    parser.add_argument("--warm-requests", type=int, default=int(os.environ.get("CLUSTERCAM_APP_CACHE_SIZE", 32)),
                        help="distinct warm-up requests (default: the app's cache size)")
    parser.add_argument("--images", default=None, help="a folder of photographs: every concurrent call its own")
    parser.add_argument("--sequential", type=int, default=0, help="first, one client explaining this many photographs in turn")
    parser.add_argument("--download", action="store_true",
                        help="clients download every file of every answer (gradio_client's default; a browser does not)")
    parser.add_argument("--as-page", action="store_true",
                        help="explain as the page does: /explain_first (the heatmap in view), then /explain_rest")
    parser.add_argument("--mixed", action="store_true",
                        help="fair sharing: --heavy clients repeat the costliest accepted study while --clients explain")
    parser.add_argument("--heavy", type=int, default=2, help="study clients of --mixed")
    parser.add_argument("--think", type=float, default=0.0, help="seconds an explainer of --mixed waits between calls")
    parser.add_argument("--compile-wait", type=float, default=150.0,
                        help="seconds to let the server compile its model in the background before measuring")
    args = parser.parse_args()
    style = ClientStyle(download=args.download, as_page=args.as_page)
    try:
        images = photographs(args.images) if args.images else []
    except FileNotFoundError as exc:
        raise SystemExit(str(exc)) from None
    if args.url and args.pid is None:
        parser.error("--url needs --pid (the server's process id) to read its memory")
    try:
        with terminate_as_interrupt(), serve_app(url=args.url, pid=args.pid, timeout=180) as server:
            url, pid = server.url, server.pid
            if server.process is not None and args.compile_wait > 0:
                time.sleep(args.compile_wait)  # the app compiles its model in a background thread
            if args.sequential:
                sequential = run_sequential(url, images, args.sequential, style)
                print(f"one client, {args.sequential} different photographs in turn: {sequential.successes}/"
                      f"{sequential.calls} succeeded, median {sequential.percentile(0.5):.2f} s (the heatmap in view: "
                      f"{sequential.percentile(0.5, first=True):.2f} s); {sequential.split_line()}",
                      *(f"error: {error}" for error in sequential.errors[:3]), sep="\n", flush=True)
            if args.mixed:
                mixed = run_mixed(url, pid, heavy=args.heavy, explainers=args.clients, calls=args.calls,
                                  images=images, think=args.think, warm_requests=args.warm_requests, style=style)
                print(f"{args.heavy} study clients, {args.clients} explainers × {args.calls} photographs against {url}")
                print("\n".join(mixed.lines()))
                return 0 if mixed.ok and mixed.explain.growth_mb < args.max_growth_mb else 1
            for round_number in range(1, args.rounds + 1):
                report = run_load(url, pid, clients=args.clients, calls=args.calls, warm_up=round_number == 1,
                                  warm_requests=args.warm_requests, images=images[: args.clients * args.calls],
                                  style=style)
                print(f"round {round_number}: " + "; ".join(report.lines()[:4]), flush=True)
                if report.server_cpu_s:
                    print(f"round {round_number}: {report.cpu_line()}", flush=True)
    except StartError as exc:
        raise SystemExit(str(exc)) from None
    print(f"{args.clients} clients × {args.calls} /explain calls against {url}")
    print("\n".join(report.lines()))
    failed = report.successes != report.calls or report.growth_mb >= args.max_growth_mb
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
