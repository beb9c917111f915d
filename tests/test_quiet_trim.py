"""The explain lane gives free memory back once it has been quiet, never between a request's
messages (clustercamapp.memory, clustercamapp.engine.explaining)."""

from __future__ import annotations

import time

import pytest

from clustercamapp import engine

QUIET = 0.2


@pytest.fixture
def trims(monkeypatch):
    """The trims made, with a short quiet time; the lane idle at the start."""
    made: list[float] = []
    deadline = time.monotonic() + 10
    while engine._trim_pending[0] and time.monotonic() < deadline:  # an earlier test's trim runs out first
        time.sleep(0.05)
    monkeypatch.setattr(engine, "QUIET_TRIM_SECONDS", QUIET)
    monkeypatch.setattr(engine, "release_free_memory", lambda: made.append(time.monotonic()) or True)
    time.sleep(QUIET * 2)
    made.clear()
    assert engine.requests_in_flight() == 0
    return made


def test_the_heap_is_trimmed_once_the_lane_has_been_quiet(trims):
    with engine.explaining():
        pass
    left = time.monotonic()
    time.sleep(QUIET / 2)
    assert trims == []  # not as the request leaves: its next message would take the pages again
    time.sleep(QUIET * 2)
    assert len(trims) == 1 and trims[0] - left >= QUIET * 0.9


def test_no_trim_between_two_messages_or_while_a_request_is_in_flight(trims):
    with engine.explaining():  # the first message
        pass
    with engine.explaining():  # the second, at once: the timer finds the lane busy
        time.sleep(QUIET * 2)
        assert trims == []
    left = time.monotonic()
    with engine.explaining():  # one more request soon after: the quiet time starts again after it
        time.sleep(QUIET / 2)
    last = time.monotonic()
    time.sleep(QUIET * 3)
    assert len(trims) == 1 and trims[0] - last >= QUIET * 0.9 and trims[0] - left >= QUIET
