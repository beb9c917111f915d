"""A small version of benchmarks/load_test.py: the real server process under concurrent clients."""

from __future__ import annotations

import pytest

from benchmarks import load_test as load
from benchmarks.serving import serve_app


@pytest.mark.slow
def test_concurrent_clients_all_succeed_with_a_bounded_queue_and_flat_memory(tmp_path):
    with serve_app(env={"CLUSTERCAM_APP_QUEUE_SIZE": "16", "CLUSTERCAM_APP_CACHE_SIZE": "6"},
                   log=tmp_path / "server.log") as server:
        # two rounds, growth measured over the second (as load_test.py --rounds 2): the first fills
        # the explanation cache and the allocator's arenas, which then stay
        load.run_load(server.url, server.pid, clients=6, calls=2, warm_requests=6)
        report = load.run_load(server.url, server.pid, clients=6, calls=2, warm_up=False)
        assert server.process.poll() is None, "the server died under load"
    assert report.successes == report.calls == 12, report.errors
    assert report.max_queue <= 16
    assert report.growth_mb < 100, report.lines()
    assert 0 < report.percentile(0.5) <= report.percentile(0.95)
