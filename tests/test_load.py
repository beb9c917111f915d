"""A small version of benchmarks/load_test.py: the real server process under concurrent clients."""

from __future__ import annotations

import importlib.util
import sys

import pytest

from .conftest import ROOT


def load_script():
    spec = importlib.util.spec_from_file_location("load_test", ROOT / "benchmarks" / "load_test.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_concurrent_clients_all_succeed_with_a_bounded_queue_and_flat_memory():
    load = load_script()
    port = load.free_port()
    server = load.start_server(port, env={"CLUSTERCAM_APP_QUEUE_SIZE": "16", "CLUSTERCAM_APP_CACHE_SIZE": "6"})
    url = f"http://127.0.0.1:{port}"
    try:
        load.wait_until_up(url, server)
        # two rounds, growth measured over the second (as load_test.py --rounds 2): the first fills
        # the explanation cache and the allocator's arenas, which then stay
        load.run_load(url, server.pid, clients=6, calls=2, warm_requests=6)
        report = load.run_load(url, server.pid, clients=6, calls=2, warm_up=False)
        assert server.poll() is None, "the server died under load"
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert report.successes == report.calls == 12, report.errors
    assert report.max_queue <= 16
    assert report.growth_mb < 100, report.lines()
    assert 0 < report.percentile(0.5) <= report.percentile(0.95)
