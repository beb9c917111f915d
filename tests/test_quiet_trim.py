"""The explain lane gives free memory back once it has been quiet, never between a request's
messages (clustercamapp.memory, clustercamapp.engine.runtime)."""

from __future__ import annotations

import time

import pytest

from clustercamapp import engine

QUIET = 0.2


@pytest.fixture
def lane():
    """A runtime of the explain lane as the server has one, with a short quiet time; its trims
    are recorded in ``lane.made``."""
    made: list[float] = []
    runtime = engine.Runtime(concurrency=2, threads=None, trim_after=QUIET,
                             trim=lambda: made.append(time.monotonic()) or True)
    runtime.made = made
    assert runtime.requests_in_flight() == 0 and not runtime.trim_pending
    return runtime


def test_the_server_trims_with_the_runtime_of_its_lane():
    from clustercamapp import memory

    assert engine.RUNTIME.trim is memory.release_free_memory and engine.RUNTIME.trim_after == memory.QUIET_TRIM_SECONDS


def test_the_heap_is_trimmed_once_the_lane_has_been_quiet(lane):
    trims = lane.made
    with lane.explaining():
        pass
    left = time.monotonic()
    time.sleep(QUIET / 2)
    assert trims == []  # not as the request leaves: its next message would take the pages again
    time.sleep(QUIET * 2)
    assert len(trims) == 1 and trims[0] - left >= QUIET * 0.9


def test_no_trim_between_two_messages_or_while_a_request_is_in_flight(lane):
    trims = lane.made
    with lane.explaining():  # the first message
        pass
    with lane.explaining():  # the second, at once: the timer finds the lane busy
        time.sleep(QUIET * 2)
        assert trims == []
    left = time.monotonic()
    with lane.explaining():  # one more request soon after: the quiet time starts again after it
        time.sleep(QUIET / 2)
    last = time.monotonic()
    time.sleep(QUIET * 3)
    assert len(trims) == 1 and trims[0] - last >= QUIET * 0.9 and trims[0] - left >= QUIET
