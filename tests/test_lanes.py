"""Fair sharing (clustercamapp/lanes.py): stated costs equal the passes made, budgets refuse with a
message naming the cheaper choice, a session's newer study replaces its older one, and a study whose
client left stops between batches."""

from __future__ import annotations

import threading
import time

import gradio as gr
import pytest
import torch

from clustercam.methods import METHODS, PRESETS
from clustercam.network import before_each_pass, forward_images
from clustercam.pipeline import explain_image
from clustercamapp import lanes
from clustercamapp.lanes import (
    ABANDONED,
    REPLACED,
    StudyCost,
    StudyGate,
    StudyRefused,
    StudyStopped,
)
from clustercamapp.settings import Settings
from clustercamapp.tabs.compare import compare, compare_listener

from .conftest import ASSETS

LAYER = "blocks.2"  # 40 feature maps: every method runs in a second or two


@pytest.mark.parametrize("method", list(METHODS))
def test_planned_passes_are_the_passes_each_method_makes(spec, chelsea, method):
    cls = METHODS[method]
    options = {"n_samples": 3} if method == "smoothgradcam++" else {}
    layer = "bn2" if method == "reciprocam" else LAYER  # one tail row per position: 70 at bn2, 1,176 at blocks.2
    info = next(info for info in spec.layers() if info.name == layer)
    shape = (224, 352)  # the network input of the 451 × 300 cat photograph: the layer's grid follows it
    grid = lanes.method_passes(method, info, options, shape, spec.input_size)
    forward, backward = cls.planned_passes(info.channels, height=info.height, width=info.width, **options)  # the square's
    before = forward_images()
    result = explain_image(spec, chelsea, method=method, layer=layer, **options).result
    assert tuple(result.heatmaps.shape[-2:]) == shape
    assert result.backward_passes == backward
    through_network = forward_images() - before
    if method == "reciprocam":  # the grid of this photograph's input, not the square probe's
        assert result.forward_passes + backward == grid == 1 + 7 * 11 + 1 and forward == 1 + 7 * 7 + 1
        # one pass through the layers before bn2 (the image's own row and 63 positions ride in it),
        # one for the other 14; plus the tail's check when this network, layer and shape are new to it
        assert result.extras["head_passes"] == 2 and through_network in (2, 4)
        return
    channels = info.channels
    if method == "ablationcam":  # the ablated rows go through the tail, one head pass per batch of rows
        assert through_network == 1 + result.extras["head_passes"]
    else:  # every counted pass went through the Network, where a study is checked between batches
        assert through_network >= result.forward_passes
    if method in ("scorecam", "groupcam"):  # an upper bound: duplicate / constant masks are skipped
        assert result.forward_passes <= forward
        skipped = channels - result.extras["unique_masks"][0] if method == "scorecam" else 32 - result.extras["groups_scored"][0]
        assert result.forward_passes == forward - skipped
    else:
        assert result.forward_passes == forward


def test_planned_passes_follow_the_options():
    assert METHODS["clustercam"].planned_passes(1280, q=5) == (6, 0)
    assert METHODS["clustercam"].planned_passes(1280, preset="paper")[0] == 1 + PRESETS["paper"]["q"]
    assert METHODS["scorecam"].planned_passes(40, subtract_baseline=True) == (42, 0)
    assert METHODS["ablationcam"].planned_passes(40, mode="full") == (41, 0)
    assert METHODS["groupcam"].planned_passes(16, groups=32) == (18, 1)
    assert METHODS["gradcam"].planned_passes(1280) == (1, 1)
    assert METHODS["reciprocam"].planned_passes(1280, height=7, width=10) == (1 + 70 + 1, 0)
    assert METHODS["reciprocam"].planned_passes(1280, height=7, width=10, mode="full") == (1 + 70, 0)


def test_the_stated_cost_of_a_comparison_is_the_passes_its_table_reports(spec):
    methods = ["clustercam", "gradcam", "groupcam", "ablationcam"]
    settings = Settings.parse(image=str(ASSETS / "chelsea.jpg"), model=spec.name, layer=LAYER)
    cost = lanes.compare_cost(spec, LAYER, methods, settings.options)
    _, table = compare(settings, methods)
    reported = {row["method"]: row["forward"] + row["backward"] + 1 for _, row in table.iterrows()}  # + the scoring pass
    assert dict(cost.parts) == reported


def test_a_comparison_over_the_budget_is_refused_naming_the_cheaper_choice(spec):
    layer_count = next(info.channels for info in spec.layers() if info.name == spec.default_layer)
    before = forward_images()
    with pytest.raises(gr.Error) as caught:
        compare_listener(str(ASSETS / "chelsea.jpg"), spec.name, spec.default_layer, methods=["scorecam", "gradcam"])
    assert forward_images() == before, "a refused study must not touch the network"
    message = caught.value.message
    assert f"{layer_count + 5:,} network passes" in message  # Score-CAM 1 + N + its scoring pass, Grad-CAM 2 + 1
    assert "Untick Score-CAM" in message and "CLUSTERCAM_APP_STUDY_BUDGET" in message
    assert "Cluster-CAM" in message and "blocks" in message  # the cheaper method and a layer that fits


def test_the_budget_is_per_request_and_per_session():
    gate = StudyGate(slots=1, waiting=1, request_budget=100, session_budget=150)
    cheap, dear = StudyCost("A", (("x", 60),)), StudyCost("B", (("Score-CAM", 101),), "Untick Score-CAM.")
    with pytest.raises(StudyRefused, match=r"101 network passes .*Untick Score-CAM"), gate.admit("s1", dear):
        pass
    with gate.admit("s1", cheap):
        pass
    with gate.admit("s1", cheap):
        pass
    with pytest.raises(StudyRefused, match="used 120 of its 150"), gate.admit("s1", cheap):
        pass
    with gate.admit("s2", cheap):  # another session has its own budget
        pass
    assert gate.spent("s1") == 120 and gate.spent("s2") == 60


def test_a_newer_study_of_the_same_session_replaces_the_older_between_batches(spec):
    gate = StudyGate(slots=1, waiting=2, request_budget=10_000, session_budget=10_000)
    started, outcome = threading.Event(), {}
    batch = torch.zeros(1, 3, 224, 224)

    def older() -> None:
        try:
            with gate.admit("s", StudyCost("old", (("x", 1),))):
                started.set()
                for _ in range(200):  # a long study: one pass per "batch"
                    spec.network.logits(batch)
            outcome["older"] = "finished"
        except StudyStopped as stop:
            outcome["older"] = str(stop)

    thread = threading.Thread(target=older)
    thread.start()
    assert started.wait(30)
    with gate.admit("s", StudyCost("new", (("x", 1),))):  # waits for the slot the older frees
        outcome["newer"] = "ran"
    thread.join(60)
    assert outcome == {"older": REPLACED, "newer": "ran"}
    assert gate.status()["stopped"] == 1 and gate.status()["running"] == 0


def test_a_study_whose_client_left_stops_at_its_next_batch(spec, chelsea):
    gate = StudyGate(slots=1, waiting=0, request_budget=10_000, session_budget=10_000)
    passes, limit = [], 60  # the client leaves during the first batch of masked images
    alive = lambda: sum(passes) < limit  # noqa: E731
    planned = METHODS["scorecam"].planned_passes(112)[0]
    cost = StudyCost("c", (("Score-CAM", planned),))
    with pytest.raises(StudyStopped, match=ABANDONED), gate.admit("s", cost, alive), before_each_pass(passes.append):
        explain_image(spec, chelsea, method="scorecam", layer="blocks.4", batch_size=64)
    assert 1 + 64 <= sum(passes) < planned  # stopped before the second batch of 48, not at the end


def test_a_full_study_lane_refuses_another_session_with_a_message():
    gate = StudyGate(slots=1, waiting=0, request_budget=100, session_budget=1000)
    release, inside = threading.Event(), threading.Event()

    def running() -> None:
        with gate.admit("a", StudyCost("A", (("x", 1),))):
            inside.set()
            release.wait(30)

    thread = threading.Thread(target=running)
    thread.start()
    assert inside.wait(10)
    try:
        with pytest.raises(StudyRefused, match="busy"), gate.admit("b", StudyCost("B", (("x", 1),))):
            pass
    finally:
        release.set()
        thread.join(30)


def test_studies_run_on_their_own_copy_of_the_model(spec):
    copy = lanes.study_model(spec.name)
    assert copy.model is not spec.model and copy.network is not spec.network
    assert lanes.study_lock(spec.name) is not lanes.model_lock(spec.name)
    inputs = torch.randn(2, 3, 224, 224)
    with torch.inference_mode():
        torch.testing.assert_close(copy.model(inputs), spec.model(inputs), rtol=0, atol=1e-5)


def test_the_lanes_have_their_own_concurrency_ids():
    import app

    ids = {dep.api_name: dep.concurrency_id for dep in app.demo.fns.values() if dep.api_name}
    assert ids["explain"] == "explain"
    assert {ids[name] for name in ("compare", "sweep_q", "sweep_layers", "sweep_eigenvectors")} == {"study"}


def test_a_waiting_study_replaced_by_a_newer_one_stops_while_still_waiting():
    gate = StudyGate(slots=1, waiting=2, request_budget=100, session_budget=1000)
    release, inside, outcome = threading.Event(), threading.Event(), {}

    def running() -> None:
        with gate.admit("a", StudyCost("A", (("x", 1),))):
            inside.set()
            release.wait(30)

    def study(name: str) -> None:
        try:
            with gate.admit("b", StudyCost(name, (("x", 1),))):
                outcome[name] = "ran"
        except StudyStopped as stop:
            outcome[name] = str(stop)

    holder = threading.Thread(target=running)
    holder.start()
    assert inside.wait(10)
    older = threading.Thread(target=study, args=("older",))
    older.start()
    time.sleep(0.3)  # waiting for the slot "a" holds
    newer = threading.Thread(target=study, args=("newer",))
    newer.start()
    older.join(5)
    assert outcome == {"older": REPLACED}, "the older study must stop while the slot is still taken"
    release.set()
    for thread in (holder, newer):
        thread.join(10)
    assert outcome == {"older": REPLACED, "newer": "ran"}
