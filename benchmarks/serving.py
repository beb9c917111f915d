"""The app as a server process, for the benchmarks and the tests: one way to start, wait for, read
and stop ``python app.py``.

:func:`serve_app` starts ``python app.py`` on a free loopback port (:func:`free_port`) with the
environment of :func:`app_environment`, its stdout and stderr going to a log file (never an unread
pipe, which a chatty server could fill and stall on), waits until its page answers (raising
:class:`StartError` with the log's tail if the process ends first or a timeout passes), and
stops it at the end (terminated, killed after a timeout)::

    with serve_app(env={"CLUSTERCAM_COMPILE": "0"}, log=folder / "server.log") as server:
        server.url, server.pid, server.started_s, server.log_tail()

With ``url=`` it uses an app already running (nothing started or stopped). Beside it, what the
scripts share: the photographs of a folder, the app's ``/status``, its summary (parsed as JSON)
and the server process's CPU time and resident memory.

Tests import it as ``benchmarks.serving`` (the repository root is on their path); the scripts in
``benchmarks/`` put the repository root on ``sys.path`` and import it the same way.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import math
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
#: The only address the app is served on and reached at.
HOST = "127.0.0.1"
PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")
#: Return codes of a server that was stopped (or stopped itself) as intended.
STOPPED = (0, -signal.SIGTERM, -signal.SIGKILL)
#: Loopback only: no proxy from the environment between this process and the app.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class StartError(RuntimeError):
    """The app ended before its page answered, or did not answer in time; the message ends with
    the tail of its log."""


def free_port() -> int:
    """A free TCP port on the loopback interface."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def app_environment(port: int, env: Mapping[str, str] | None = None) -> dict[str, str]:
    """This process's environment, then the app on ``HOST:port`` offline and without analytics,
    then ``env`` (which may override any of them)."""
    return {
        **os.environ,
        "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1",
        "GRADIO_SERVER_NAME": HOST, "GRADIO_SERVER_PORT": str(port),
        **(env or {}),
    }


@dataclass
class Server:
    """A served app: where it answers, its process (None for an app this harness did not start)
    and its log."""

    url: str
    process: subprocess.Popen | None = None
    log: Path | None = None
    #: the process id given for an app already running (``serve_app(url=..., pid=...)``)
    given_pid: int | None = None
    #: ``time.monotonic()`` at the start (or, for an app already running, when waiting began) and
    #: when the page first answered
    launched_at: float = field(default_factory=time.monotonic)
    answered_at: float = math.nan
    #: whether ``log`` is a temporary file, removed (its text kept) when the server is stopped
    temporary_log: bool = False
    _kept: str | None = field(default=None, repr=False)

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else self.given_pid

    @property
    def started_s(self) -> float:
        """Seconds from the start to the page answering (NaN until it has)."""
        return self.answered_at - self.launched_at

    @property
    def returncode(self) -> int | None:
        return None if self.process is None else self.process.poll()

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def ended_badly(self) -> bool:
        """Whether the process has ended other than by a stop (or its own clean exit)."""
        return self.returncode is not None and self.returncode not in STOPPED

    def read_log(self) -> str:
        """Everything the server has written so far ("" without a log)."""
        if self._kept is not None:
            return self._kept
        if self.log is None or not self.log.exists():
            return ""
        return self.log.read_text(errors="replace")

    def log_tail(self, characters: int = 2000) -> str:
        return self.read_log()[-characters:]


def start_app(env: Mapping[str, str] | None = None, log: Path | None = None, port: int | None = None,
              args: list[str] | tuple[str, ...] = ()) -> Server:
    """``python app.py [args]`` on ``HOST:port`` (default a free port) with :func:`app_environment`,
    its stdout and stderr in ``log`` (a temporary file when None, removed by :func:`stop_app`).
    It runs in its own session: a Ctrl-C in the terminal reaches this process, which stops it."""
    port = free_port() if port is None else port
    if log is None:
        descriptor, name = tempfile.mkstemp(prefix="clustercam-app-", suffix=".log")
        os.close(descriptor)
        log, temporary = Path(name), True
    else:
        temporary = False
    launched = time.monotonic()
    with log.open("wb") as output:
        process = subprocess.Popen([sys.executable, str(ROOT / "app.py"), *args], cwd=ROOT, env=app_environment(port, env),
                                   stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    return Server(f"http://{HOST}:{port}", process, log, launched_at=launched, temporary_log=temporary)


def answers(url: str, timeout: float = 2.0) -> bool:
    """Whether ``url`` answers 200 now."""
    try:
        with _OPENER.open(url, timeout=timeout) as answer:
            return answer.status == 200
    except (OSError, http.client.HTTPException):
        return False


def wait_until_up(server: Server, timeout: float = 300.0, every: float = 0.05) -> float:
    """Until the page answers 200; sets ``server.answered_at`` and returns ``server.started_s``.
    Raises :class:`StartError` if the process ends first or ``timeout`` seconds pass."""
    def failed(what: str) -> StartError:
        tail = server.log_tail()
        return StartError(f"{what}:\n{tail}" if tail else what)

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process is not None and server.process.poll() is not None:
            raise failed(f"the server exited with status {server.process.returncode}")
        if answers(server.url):
            server.answered_at = time.monotonic()
            return server.started_s
        time.sleep(every)
    raise failed(f"{server.url} did not answer within {timeout:.0f} s")


def stop_app(server: Server, timeout: float = 30.0) -> int | None:
    """Terminate the process, kill it after ``timeout`` seconds; its return code (None for an app
    this harness did not start). A temporary log is read into ``server`` and removed."""
    process = server.process
    if process is not None and process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=timeout)
    if server.temporary_log and server.log is not None:
        server._kept = server.read_log()
        server.log.unlink(missing_ok=True)
        server.temporary_log = False
    return None if process is None else process.returncode


@contextlib.contextmanager
def serve_app(env: Mapping[str, str] | None = None, log: Path | None = None, *, url: str | None = None,
              pid: int | None = None, timeout: float = 300.0, stop_timeout: float = 30.0,
              args: list[str] | tuple[str, ...] = ()) -> Iterator[Server]:
    """``python app.py`` started (see :func:`start_app`), waited for (:func:`wait_until_up`) and
    stopped at the end (:func:`stop_app`), also when waiting fails; with ``url``, the app already
    running there (``pid``: its process, if known), only waited for."""
    server = Server(url.rstrip("/"), given_pid=pid) if url else start_app(env, log, args=args)
    try:
        wait_until_up(server, timeout)
        yield server
    finally:
        stop_app(server, stop_timeout)


@contextlib.contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """SIGTERM handled like Ctrl-C (a ``KeyboardInterrupt``), so that ``finally`` blocks (stopping
    the server) run. Only in the main thread."""

    def interrupt(signum, frame) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


# ---- what the scripts read from the app and its process ---------------------------------------


def photographs(folder: str | Path) -> list[Path]:
    """The photographs (``PHOTO_SUFFIXES``) of ``folder``, sorted, as absolute paths; raises
    ``FileNotFoundError`` when there are none (or no such folder)."""
    found = sorted(path.resolve() for path in Path(folder).iterdir() if path.suffix.lower() in PHOTO_SUFFIXES)
    if not found:
        raise FileNotFoundError(f"no photographs in {folder}")
    return found


def server_status(url: str) -> dict[str, Any]:
    """What the app's ``/status`` says now; ``{"error": ...}`` when it cannot be asked (an older
    app without it, a busy one)."""
    from gradio_client import Client

    try:
        return Client(url, verbose=False, analytics_enabled=False, download_files=False).predict(api_name="/status")
    except Exception as exc:  # reported, not fatal
        return {"error": f"{type(exc).__name__}: {exc}"}


def parse_summary(text: str | None) -> dict[str, Any] | None:
    """The app's summary (``summary.json``, the JSON the page shows) from its text; None when the
    text is not a JSON object."""
    try:
        summary = json.loads(text or "")
    except json.JSONDecodeError:
        return None
    return summary if isinstance(summary, dict) else None


def summary_request(outputs: tuple | list) -> dict[str, Any]:
    """The summary's ``request`` record (this request's passes, cache hit and server time) among
    an answer's outputs."""
    return next(value["request"] for value in outputs if isinstance(value, dict) and "request" in value)


def cpu_seconds(pid: int | None = None) -> float:
    """User + system CPU seconds of a process (None: this one), its threads together."""
    import psutil

    times = psutil.Process(pid).cpu_times()
    return times.user + times.system


def rss_mb(pid: int) -> float:
    """A server's resident size, read at rest: once it has been quiet long enough to give its free
    memory back (``QUIET_TRIM_SECONDS`` after its last request, ``CLUSTERCAM_APP_TRIM_AFTER``)."""
    import psutil

    from clustercamapp.memory import QUIET_TRIM_SECONDS

    time.sleep(QUIET_TRIM_SECONDS + 0.5)
    return psutil.Process(pid).memory_info().rss / 2**20


def queue_size(url: str) -> int | None:
    """How many events wait in the app's queue now (None when it cannot be read)."""
    try:
        with _OPENER.open(f"{url}/gradio_api/queue/status", timeout=2) as answer:
            return int(json.loads(answer.read()).get("queue_size", 0))
    except (OSError, http.client.HTTPException, ValueError, AttributeError):
        return None
