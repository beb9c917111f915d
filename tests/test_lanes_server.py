"""Fair sharing on the real server process: a cancelled study stops between batches, a session's
newer study replaces its older one, and (a small version of ``load_test.py --mixed``) a heavy
study repeated by one client does not starve the explainers."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterator

import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError

from benchmarks import load_test as load
from benchmarks.serving import serve_app

from .conftest import ASSETS

pytestmark = pytest.mark.slow

#: A study long enough to stop halfway: Score-CAM at the default layer (1 + 1280 masked passes).
LONG_STUDY = {"methods": ["scorecam"]}


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[tuple[str, object]]:
    """``python app.py`` with a small study budget and waiting room; yields (url, process)."""
    with serve_app(env={
        "CLUSTERCAM_APP_STUDY_BUDGET": "2000", "CLUSTERCAM_APP_STUDY_WAITING": "2",
        "CLUSTERCAM_APP_CACHE_SIZE": "6", "GRADIO_HEARTBEAT_INTERVAL": "1",
    }, log=tmp_path_factory.mktemp("lanes") / "server.log") as served:
        yield served.url, served.process


def client(url: str) -> Client:
    return Client(url, verbose=False, analytics_enabled=False, download_files=False, httpx_kwargs={"timeout": 120})


def lanes(url: str) -> dict:
    return client(url).predict(api_name="/lanes")


def wait_for(condition: Callable[[], bool], timeout: float) -> float:
    """Seconds until ``condition()`` held (raises after ``timeout``)."""
    began = time.monotonic()
    while not condition():
        if time.monotonic() - began > timeout:
            raise TimeoutError(f"not within {timeout} s")
        time.sleep(0.2)
    return time.monotonic() - began


def submit_study(c: Client, **study):
    return c.submit(handle_file(str(ASSETS / "chelsea.jpg")), "efficientnet_lite0", api_name="/compare", **study)


def test_a_cancelled_study_stops_between_batches(server):
    url, _ = server
    before = lanes(url)["stopped"]
    job = submit_study(client(url), **LONG_STUDY)
    wait_for(lambda: lanes(url)["running"] == 1, 60)
    time.sleep(1.0)  # it is scoring masked images now
    job.cancel()
    seconds = wait_for(lambda: lanes(url)["running"] == 0, 30)
    # 1281 masked passes take far longer than one batch of 64 (a few seconds at most here)
    assert seconds < 15 and lanes(url)["stopped"] == before + 1


def test_a_newer_study_from_the_same_session_replaces_the_older(server):
    url, _ = server
    c = client(url)
    older = submit_study(c, **LONG_STUDY)
    wait_for(lambda: lanes(url)["running"] == 1, 60)
    newer = submit_study(c, methods=["gradcam"])
    _, table = newer.result(timeout=120)
    assert table["data"][0][0] == "Grad-CAM"
    with pytest.raises(AppError, match="newer study from this session replaced"):
        older.result(timeout=60)


def test_a_study_over_the_budget_is_refused_with_a_message(server):
    url, _ = server
    with pytest.raises(AppError, match=r"2,565 network passes.*CLUSTERCAM_APP_STUDY_BUDGET.*Untick Ablation-CAM"):
        submit_study(client(url), methods=["scorecam", "ablationcam"]).result(timeout=60)


def test_explainers_are_not_starved_by_a_repeated_heavy_study(server):
    url, process = server
    # a first round fills the caches and the study's allocator arenas; memory is judged on the second,
    # as load_test.py --rounds does
    first = load.run_mixed(url, process.pid, heavy=1, explainers=3, calls=2, images=[], warm_requests=6,
                           warm_study=5.0, baseline=False)
    assert first.ok, first.lines()
    report = load.run_mixed(url, process.pid, heavy=1, explainers=3, calls=2, images=[], warm_requests=0, warm_study=False,
                             first=100)
    assert report.ok, report.lines()
    assert report.finished + len(report.refused) + report.cancelled >= 1, report.lines()  # a study was running
    assert lanes(url)["running"] == 0  # the one cancelled at the end stopped
    explain = report.explain
    assert explain.successes == 6
    # the study alone takes many seconds; an explanation waits for none of it
    longest = max(explain.latencies)
    assert longest < 10, report.lines()
    if report.study_seconds:
        assert statistics.median(explain.latencies) < statistics.median(report.study_seconds) / 2, report.lines()
    # beside the study, explanations take about as long as alone (side by side in this run)
    assert statistics.median(explain.latencies) < 2.5 * statistics.median(report.alone.latencies), report.lines()
    assert explain.growth_mb < 150, report.lines()
