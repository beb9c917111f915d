"""Where a request's network work runs: in this process, or, on a ZeroGPU Space, in one
``@spaces.GPU`` task per request.

On ZeroGPU (``SPACES_ZERO_GPU=true``, set by Hugging Face) a GPU is attached only while a
function decorated with ``spaces.GPU`` runs, and it runs in a *forked worker process*: its
arguments and its return value are pickled between the processes, and nothing it changes in the
worker (a cache, a counter) reaches the server. So the network work is done by pure functions
(:func:`clustercamapp.engine.tasks.compute_explanation`, :func:`~clustercamapp.engine.tasks.measure_kept`, the
studies) that take plain values and return data on the CPU, and the server keeps the caches.
Everywhere else :func:`gpu_task` returns the function unchanged and it runs in-process.

Each task declares how long it may hold the GPU (ZeroGPU checks the visitor's quota against
that, so it is kept tight): :func:`duration_for` turns the request's stated cost in network
passes (the same counts the study lane budgets with, :mod:`clustercamapp.lanes`) into seconds.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, TypeVar

from clustercam import environment

F = TypeVar("F", bound=Callable[..., Any])

#: Whether this server runs on a ZeroGPU Space.
ON_ZERO_GPU = environment.on_zero_gpu()
#: Seconds one image takes through the network on a ZeroGPU slice, generously (EfficientNet-Lite0
#: at 224², batched: a few milliseconds).
SECONDS_PER_PASS: float = environment.read("CLUSTERCAM_APP_GPU_SECONDS_PER_PASS")
#: Seconds every task needs besides its passes (the worker attaching the GPU, moving the model).
OVERHEAD_SECONDS: float = environment.read("CLUSTERCAM_APP_GPU_OVERHEAD")
#: The longest a task may declare (ZeroGPU's own default is 60 s).
MAX_SECONDS: int = environment.read("CLUSTERCAM_APP_GPU_MAX_SECONDS")


def duration_for(passes: int) -> int:
    """Whole seconds a task of ``passes`` network passes declares: the overhead plus the passes,
    at most :data:`MAX_SECONDS`."""
    return int(min(MAX_SECONDS, math.ceil(OVERHEAD_SECONDS + max(0, passes) * SECONDS_PER_PASS)))


def passes_within(seconds: float = MAX_SECONDS) -> int:
    """The network passes a task can make within ``seconds`` (the study budget on ZeroGPU)."""
    return max(1, int((seconds - OVERHEAD_SECONDS) / SECONDS_PER_PASS))


def gpu_task(duration: Callable[..., int]) -> Callable[[F], F]:
    """Decorate a module-level function that does network work: ``spaces.GPU`` with ``duration``
    (called with the task's own arguments) where the ``spaces`` package is installed (a no-op off
    ZeroGPU), the function itself elsewhere."""

    def decorate(fn: F) -> F:
        fn.gpu_duration = duration  # type: ignore[attr-defined]  # what the task declares (tests read it)
        try:
            import spaces  # type: ignore[import-not-found]
        except ImportError:
            return fn
        decorated = spaces.GPU(duration=duration)(fn)
        decorated.gpu_duration = duration  # type: ignore[attr-defined]
        return decorated

    return decorate
