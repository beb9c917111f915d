"""Fair sharing of one server: studies (Compare, sweeps) cannot starve Explain.

**Two lanes.** Explain and its redraws (the *explain lane*: Explain, two classes, the Learn
tab) and the studies (the *study lane*: Compare and the three sweeps) have their own Gradio
concurrency ids and their own models: a study runs on a private copy of the network
(:func:`study_model`, its own lock), so a 60-second Score-CAM never holds the lock an
explanation waits for. On a CPU a study runs on a worker thread of its own with one torch thread
(:data:`STUDY_THREADS`) at the lowest CPU priority (:data:`STUDY_NICE`): it uses the cores
explanations leave idle and yields them as soon as an explanation wants them.

**A budget per request and per session.** Before a study runs, its cost is stated in network
passes (:class:`StudyCost`, from each method's :meth:`~clustercam.methods.BaseCAM.planned_passes`,
the counts of the paper's Table 2, plus the comparison's own scoring pass). A request above
:data:`STUDY_BUDGET` is refused with a message naming the cheaper choice; a session that spent
:data:`SESSION_BUDGET` passes in the last :data:`SESSION_WINDOW` seconds waits.

**One study per session.** A session's newer study replaces its older one: the older is stopped
between two batches (:func:`clustercam.network.before_each_pass`) and answers with a message.
A study whose client left (the browser tab closed, the connection dropped, the Stop button, a
``gradio_client`` job cancelled) stops the same way, instead of finishing for nobody.

Every number is an environment setting (README, "Serving"): defaults fit a free 2-vCPU Space;
on a GPU they allow more.
"""

from __future__ import annotations

import contextlib
import contextvars
import copy
import dataclasses
import math
import os
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TypeVar

import torch

from clustercam import environment
from clustercam.methods import METHODS
from clustercam.network import before_each_pass
from clustercam.zoo import LayerInfo, ModelSpec

from .common import UserError
from .engine import RUNTIME, get_model, model_lock
from .gpu import ON_ZERO_GPU, passes_within
from .i18n import DEFAULT_LANGUAGE, say
from .memory import release_free_memory

ON_GPU = torch.cuda.is_available()
T = TypeVar("T")


#: Studies running at once (each on the study copy of its model).
STUDY_CONCURRENCY = environment.read("CLUSTERCAM_APP_STUDY_CONCURRENCY", 2 if ON_GPU else 1)
#: Studies that may wait for a running one to finish; more are refused as "busy".
STUDY_WAITING = environment.read("CLUSTERCAM_APP_STUDY_WAITING")
#: torch threads of a study (0: torch's default, every core).
STUDY_THREADS = environment.read("CLUSTERCAM_APP_STUDY_THREADS", 0 if ON_GPU else 1) or None
#: Images per masked/ablated pass of a study: smaller batches keep a study's memory peak low
#: and let it stop sooner (it is checked between batches); a CPU is no faster at 64.
STUDY_BATCH = environment.read("CLUSTERCAM_APP_STUDY_BATCH", 64 if ON_GPU else 16)
#: Nice value of the study worker threads (Linux; 0 leaves their priority alone).
STUDY_NICE = environment.read("CLUSTERCAM_APP_STUDY_NICE", 0 if ON_GPU else 19)
#: Network passes (forward + backward, images) one study request may cost.
STUDY_BUDGET = environment.read("CLUSTERCAM_APP_STUDY_BUDGET", passes_within() if ON_ZERO_GPU else 50_000 if ON_GPU else 400)
#: Network passes one session's studies may cost within :data:`SESSION_WINDOW` seconds.
SESSION_BUDGET = environment.read("CLUSTERCAM_APP_SESSION_BUDGET", 10 * STUDY_BUDGET)
SESSION_WINDOW = 3600.0
#: Seconds between two looks at a waiting study's client.
POLL_SECONDS = 0.25

#: Gradio keyword arguments of the two lanes' events. The study lane lets its waiting studies
#: into their handlers (where :class:`StudyGate` admits, replaces and refuses them).
EXPLAIN_LANE = {"concurrency_id": "explain", "concurrency_limit": RUNTIME.concurrency}
#: Redraws (β, the colormap, the class) served at once: no network work but the β curve's pass.
REDRAW_CONCURRENCY = 8
STUDY_LANE = {"concurrency_id": "study", "concurrency_limit": STUDY_CONCURRENCY + STUDY_WAITING}

#: Why a study stopped, in English (the request's language is said when it stops).
REPLACED = say("lanes.replaced", DEFAULT_LANGUAGE)
ABANDONED = say("lanes.abandoned", DEFAULT_LANGUAGE)


class StudyRefused(UserError):
    """A study the server will not run (over budget, or too many waiting)."""


class StudyStopped(UserError):
    """A study stopped between batches (replaced by a newer one, or its client left)."""


@dataclass(frozen=True)
class StudyCost:
    """What a study will cost, stated before it runs.

    Attributes:
        what: the study, as a sentence's subject ("This comparison").
        parts: ``(label, passes)`` of its pieces (a method, a sweep step).
        advice: the cheaper choice, said when the study is refused.
    """

    what: str
    parts: tuple[tuple[str, int], ...]
    advice: str = ""

    @property
    def total(self) -> int:
        return sum(passes for _, passes in self.parts)

    def breakdown(self, most: int = 4) -> str:
        ordered = sorted(self.parts, key=lambda part: -part[1])
        shown = ", ".join(f"{label} {passes:,}" for label, passes in ordered[:most])
        return shown + (", …" if len(ordered) > most else "")

    def refusal(self, budget: int) -> str:
        return say("lanes.over_request", what=self.what, total=self.total, breakdown=self.breakdown(), budget=budget,
                   advice=self.advice).strip()


def method_passes(method: str, layer: LayerInfo, options: dict, shape: tuple[int, int] | None = None,
                  input_size: int | None = None) -> int:
    """Passes of one method on one image at ``layer`` (forward + backward). ``shape``: the network
    input's ``(height, width)``, of which the layer's grid is taken (its probe grid at the square
    ``input_size`` scaled, rounded up); without it, the probe's own grid."""
    cls = METHODS[method]
    accepted = set(cls.option_names())
    height, width = layer.height, layer.width
    if shape is not None and input_size:
        height, width = math.ceil(layer.height * shape[0] / input_size), math.ceil(layer.width * shape[1] / input_size)
    forward, backward = cls.planned_passes(layer.channels, height=height, width=width,
                                           **{k: v for k, v in options.items() if k in accepted})
    return forward + backward


def compare_cost(spec: ModelSpec, layer: str, methods: Sequence[str], options: dict, budget: int = STUDY_BUDGET,
                 shape: tuple[int, int] | None = None) -> StudyCost:
    """The cost of ``/compare``: each method's passes at ``layer`` plus one scoring pass (the
    image masked by its heatmap), for a network input of ``shape`` (default the square). Its
    advice names what to untick and the deepest layer where the same methods fit."""
    infos = {info.name: info for info in spec.layers()}
    channels = {name: info.channels for name, info in infos.items()}

    def parts_at(name: str) -> tuple[tuple[str, int], ...]:
        return tuple((METHODS[m].title, method_passes(m, infos[name], options, shape, spec.input_size) + 1)
                     for m in methods)

    parts = parts_at(layer)
    total = sum(passes for _, passes in parts)
    advice = ""
    if total > budget:
        untick, rest = [], total
        for title, passes in sorted(parts, key=lambda part: -part[1]):
            if rest <= budget:
                break
            per_map = "lanes.untick_part_per_map" if passes > channels[layer] else "lanes.untick_part"
            untick.append(say(per_map, method=title, passes=passes))
            rest -= passes
        keep = say("lanes.rest_fits", rest=rest) if 0 < rest <= budget else ""
        fitting = [name for name in channels if name.count(".") <= 1 and sum(p for _, p in parts_at(name)) <= budget]
        where = say("lanes.earlier_layer", layer=fitting[-1], maps=channels[fitting[-1]]) if fitting else ""
        cheap = method_passes("clustercam", infos[layer], options) + 1
        advice = say("lanes.advice", parts=say("lanes.and").join(untick), rest=keep, layer=where, passes=cheap)
    return StudyCost(say("lanes.what.compare"), parts, advice)


class Ticket:
    """One admitted study: :meth:`check` raises once it was replaced or its client left."""

    def __init__(self, alive: Callable[[], bool]):
        self.alive = alive
        self.replaced = False

    def check(self, _batch: int = 0) -> None:
        if self.replaced:
            raise StudyStopped(say("lanes.replaced"))
        if not self.alive():
            raise StudyStopped(say("lanes.abandoned"))


class StudyGate:
    """Admits studies: the budgets, one study per session (the newest), a few slots, a short wait.

    Args:
        slots: studies running at once.
        waiting: studies that may wait for a slot; more are refused.
        request_budget / session_budget: passes per request / per session within ``window`` s.
    """

    def __init__(self, slots: int = STUDY_CONCURRENCY, waiting: int = STUDY_WAITING,
                 request_budget: int = STUDY_BUDGET, session_budget: int = SESSION_BUDGET,
                 window: float = SESSION_WINDOW):
        self.slots, self.waiting_limit = int(slots), int(waiting)
        self.request_budget, self.session_budget, self.window = int(request_budget), int(session_budget), float(window)
        self._slots = threading.BoundedSemaphore(self.slots)
        self._lock = threading.Lock()
        self._current: dict[str, Ticket] = {}
        self._spent: dict[str, deque[tuple[float, int]]] = defaultdict(deque)
        self._waiting = 0
        self._running = 0
        self.stopped = 0  # studies stopped between batches, since start

    def spent(self, session: str) -> int:
        """Passes admitted for ``session`` within the window."""
        now = time.monotonic()
        with self._lock:
            history = self._spent.get(session)
            if not history:
                return 0
            while history and now - history[0][0] > self.window:
                history.popleft()
            return sum(passes for _, passes in history)

    def _refuse_over_budget(self, session: str, cost: StudyCost) -> None:
        if cost.total > self.request_budget:
            raise StudyRefused(cost.refusal(self.request_budget))
        spent = self.spent(session)
        if spent + cost.total > self.session_budget:
            with self._lock:
                oldest = self._spent[session][0][0] if self._spent[session] else time.monotonic()
            minutes = max(1, round((self.window - (time.monotonic() - oldest)) / 60))
            raise StudyRefused(say("lanes.over_session", what=cost.what, total=cost.total, spent=spent,
                                   budget=self.session_budget, minutes=minutes))

    @contextmanager
    def admit(self, session: str, cost: StudyCost, alive: Callable[[], bool] = lambda: True) -> Iterator[Ticket]:
        """Run a study: refuse it, or wait for a slot (stopping if replaced or abandoned
        meanwhile), then run the block with every network pass of this thread checked."""
        self._refuse_over_budget(session, cost)
        ticket = Ticket(alive)
        with self._lock:
            previous = self._current.get(session)
            if previous is None and self._waiting >= self.waiting_limit and self._running >= self.slots:
                raise StudyRefused(say("lanes.busy", count=self._running + self._waiting))
            if previous is not None:
                previous.replaced = True  # it stops at its next batch (or while waiting)
            self._current[session] = ticket
            self._spent[session].append((time.monotonic(), cost.total))
            self._waiting += 1
        try:
            try:
                while not self._slots.acquire(timeout=POLL_SECONDS):
                    ticket.check()
            except StudyStopped:
                self._count_stop()
                raise
            finally:
                with self._lock:
                    self._waiting -= 1
            with self._lock:
                self._running += 1
            try:
                ticket.check()
                with before_each_pass(ticket.check):
                    yield ticket
            except StudyStopped:
                self._count_stop()
                raise
            finally:
                with self._lock:
                    self._running -= 1
                    idle = self._running == 0
                self._slots.release()
                if idle:  # a study's batches leave large free blocks behind: hand them back
                    release_free_memory()
        finally:
            with self._lock:
                if self._current.get(session) is ticket:
                    del self._current[session]

    def _count_stop(self) -> None:
        with self._lock:
            self.stopped += 1

    def status(self) -> dict:
        """Running and waiting studies, the limits and the stops so far (the ``/lanes`` endpoint)."""
        with self._lock:
            return {
                "running": self._running, "waiting": self._waiting, "slots": self.slots,
                "waiting_limit": self.waiting_limit, "request_budget": self.request_budget,
                "session_budget": self.session_budget, "session_window_s": self.window,
                "stopped": self.stopped, "study_threads": STUDY_THREADS or torch.get_num_threads(), "study_nice": STUDY_NICE, "study_batch": STUDY_BATCH,
                "explain_concurrency": RUNTIME.concurrency,
            }


GATE = StudyGate()


def _gradio_event() -> tuple[str, Callable[[], bool]]:
    """``(session, alive)`` of the Gradio event this thread serves: the session hash, and whether
    its event is still wanted (Gradio drops it when the client disconnects or cancels it). Outside
    Gradio (a direct call): one local session, always wanted."""
    try:
        from gradio.context import LocalContext
    except ImportError:  # pragma: no cover - Gradio is a dependency of the app
        return "local", lambda: True
    request = LocalContext.request.get(None)
    session = getattr(request, "session_hash", None) or "local"
    blocks, event_id = LocalContext.blocks.get(None), LocalContext.event_id.get(None)
    queue = getattr(blocks, "_queue", None)
    if queue is None or event_id is None:
        return session, lambda: True

    def alive() -> bool:
        event = queue.event_ids_to_events.get(event_id)
        return event is not None and bool(event.alive)

    return session, alive


def _study_thread() -> None:
    """Set up a study worker thread once: its torch threads and its low CPU priority.

    On Linux a thread has its own nice value; at 19 the scheduler gives it ~1/70 of a core's
    time while explanations want the cores and all of it when they do not. With one torch
    thread the study's arithmetic runs in this very thread, so all of it is niced. (A nice value
    cannot be lowered again without privileges: hence threads of their own, never Gradio's.)
    """
    if STUDY_THREADS:
        torch.set_num_threads(STUDY_THREADS)
    if STUDY_NICE and hasattr(os, "setpriority"):
        with contextlib.suppress(OSError):  # not permitted here: the study runs at normal priority
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), STUDY_NICE)


_WORKERS = ThreadPoolExecutor(max_workers=STUDY_CONCURRENCY, thread_name_prefix="study", initializer=_study_thread)


def _checked(ticket: Ticket, work: Callable[[], T]) -> T:
    with before_each_pass(ticket.check):
        return work()


def run_study(cost: StudyCost, work: Callable[[], T]) -> T:
    """Run ``work()`` as this request's study: admitted by :data:`GATE` (refused, or after a
    wait), then on a study worker thread (:data:`STUDY_THREADS` torch threads, nice
    :data:`STUDY_NICE`) with every network pass checked; Gradio's context (progress) goes along."""
    session, alive = _gradio_event()
    with GATE.admit(session, cost, alive) as ticket:
        return _WORKERS.submit(contextvars.copy_context().run, _checked, ticket, work).result()


_study_models: dict[str, ModelSpec] = {}
_study_guard = threading.Lock()


def study_model(name: str) -> ModelSpec:
    """The study lane's own copy of model ``name`` (made once, eager: its network is not
    compiled), so studies never share hooks or a lock with explanations."""
    shared = get_model(name)
    with _study_guard:
        spec = _study_models.get(name)
        if spec is None:
            with model_lock(name):  # no explanation's hook is on the model while it is copied
                spec = dataclasses.replace(shared, model=copy.deepcopy(shared.model), _network=None)
            _study_models[name] = spec
        return spec


def study_lock(name: str) -> threading.Lock:
    """The lock around network work on the study copy of model ``name``."""
    return model_lock(f"{name}#study")
