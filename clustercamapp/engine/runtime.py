"""The explain lane at run time: its requests in flight, the heap trim once it falls quiet, the
torch threads its network work gets, and the priority of background threads.

One small object, :data:`RUNTIME`, holds the lane's state behind one lock (no module-level
counters): :meth:`Runtime.explaining` marks a request in flight; background work (the examples'
warm-up) waits while :meth:`Runtime.requests_in_flight` is non-zero; an explanation's network work
uses every core (:meth:`Runtime.network_threads`, measured in docs/benchmarks.md); once the lane has been
quiet for ``CLUSTERCAM_APP_TRIM_AFTER`` seconds, malloc's free pages go back to the system
(:func:`clustercamapp.memory.release_free_memory`), not as each request leaves (a request's two
messages, or one visitor's Explain and β move, would each take their pages again zeroed).

Re-rendering (eq. 22 on a few ``H×W`` maps) runs with one torch thread (:func:`torch_threads`):
split over several threads, such small operations spend their time synchronising, and on a busy
CPU a 20 ms redraw became 150 ms.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch

from clustercam import environment
from clustercam.network import forward_images as network_images

from .. import memory


class Runtime:
    """The explain lane's requests in flight and what follows from them (see the module docstring).

    Args:
        concurrency: explanations served at once (``CLUSTERCAM_APP_CONCURRENCY``).
        threads: torch threads of an explanation's network work (None: automatic).
        trim_after: seconds of quiet before the heap is trimmed.
        trim: what trims the heap (replaced in tests).
        background_nice: CPU priority of background threads (0: unchanged).
    """

    def __init__(self, concurrency: int, threads: int | None, trim_after: float,
                 trim: Callable[[], bool] = memory.release_free_memory, background_nice: int = 19):
        self.concurrency, self.threads, self.trim_after = concurrency, threads, trim_after
        self.trim, self.background_nice = trim, background_nice
        self._lock = threading.Lock()
        self._in_flight = 0
        self._last_left = time.monotonic()
        self._trim_pending = False

    @contextmanager
    def explaining(self) -> Iterator[None]:
        """Mark the block as an explain-lane request in flight; the heap is trimmed once the lane
        has been quiet for :attr:`trim_after` seconds."""
        with self._lock:
            self._in_flight += 1
        try:
            yield
        finally:
            with self._lock:
                self._in_flight -= 1
                self._last_left = time.monotonic()
                schedule = self._in_flight == 0 and not self._trim_pending
                self._trim_pending = self._trim_pending or schedule
            if schedule:
                self._trim_later(self.trim_after)

    def requests_in_flight(self) -> int:
        """Explain-lane requests being served now (background work waits while there are any)."""
        with self._lock:
            return self._in_flight

    def idle_seconds(self) -> float:
        """Seconds since the last explain-lane request finished (0 while one is in flight)."""
        with self._lock:
            return 0.0 if self._in_flight else time.monotonic() - self._last_left

    @property
    def trim_pending(self) -> bool:
        """Whether a timer will trim the heap once the lane is quiet."""
        with self._lock:
            return self._trim_pending

    def network_threads(self) -> int | None:
        """Torch threads for an explanation's network work: the configured number, else every core
        (None), also while other requests are in flight. A compiled graph holds the interpreter's
        lock for its whole run, so no other request's Python work runs beside it: a graph given
        half the cores left the other half idle (30 new photographs at once, 2 cores: heatmap p95
        9.1-10.2 s with a share of the cores, 7.3-8.0 s with every core; docs/benchmarks.md)."""
        return self.threads

    def lower_priority(self) -> None:
        """Lower the calling thread's CPU priority (Linux: a thread has its own nice value), so that
        background work (compiling) yields the cores to requests; children it starts inherit it. A
        no-op where it is not permitted. Never for a thread that holds a lock requests wait for."""
        if self.background_nice and hasattr(os, "setpriority"):
            with contextlib.suppress(OSError):
                os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), self.background_nice)

    def _trim_later(self, delay: float) -> None:
        timer = threading.Timer(delay, self._trim_when_quiet)
        timer.daemon = True
        timer.start()

    def _trim_when_quiet(self) -> None:
        """Trim the heap when no request has been in flight for :attr:`trim_after` seconds;
        otherwise wait for the rest of that time, or (a request in flight) for the next quiet moment."""
        with self._lock:
            busy = self._in_flight > 0
            wait = self.trim_after - (time.monotonic() - self._last_left)
            self._trim_pending = not busy and wait > 0
        if busy:
            return  # the request in flight schedules the next trim when it leaves
        if wait > 0:
            self._trim_later(wait)
            return
        self.trim()


#: The explain lane of this server.
RUNTIME = Runtime(
    concurrency=environment.read("CLUSTERCAM_APP_CONCURRENCY"),
    threads=environment.read("CLUSTERCAM_APP_TORCH_THREADS"),
    trim_after=memory.QUIET_TRIM_SECONDS,
    background_nice=environment.read("CLUSTERCAM_APP_BACKGROUND_NICE"),
)


def forward_images() -> int:
    """Images pushed through any loaded model by the current thread so far (compiled or eager:
    counted by the models' :class:`~clustercam.network.Network`); a handler reads it before and
    after to report its own request's passes (Gradio runs a request's handler in one thread)."""
    return network_images()


@contextmanager
def torch_threads(count: int | None) -> Iterator[None]:
    """Run the block with ``count`` torch intra-op threads in this thread (None: unchanged)."""
    before = torch.get_num_threads()
    if count is None or count == before:
        yield
        return
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)
