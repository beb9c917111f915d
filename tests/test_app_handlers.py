"""The app's handlers called directly: types in, types out, gr.Error for every user mistake.

Real model (the embedded EfficientNet-Lite0, offline) and real photographs from assets/.
"""

from __future__ import annotations

import os
import statistics
import threading
import time
import urllib.error
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import gradio as gr

from clustercam.methods import DEFAULT_BETA, DEFAULT_Q
from clustercam.render import BASE_COLOR, SCISSORS_COLOR
from clustercamapp import engine, handlers, studies

from .conftest import ASSETS

CHELSEA = str(ASSETS / "chelsea.jpg")
PAIR = str(ASSETS / "cat_and_coffee.jpg")
MODEL = "efficientnet_lite0"
#: image, model, layer, Q, β, clustering, K, σ, θ, seed, target — the /explain inputs.
DEFAULTS = (CHELSEA, MODEL, "", DEFAULT_Q, DEFAULT_BETA, "kmeans", 0, 0.2, 0.0, 0, "")


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread_and_own_files(tmp_path_factory) -> Iterator[None]:
    """One torch thread (these tests run beside others on a small, busy CPU); the pictures the
    handlers write go to a temporary folder instead of Gradio's shared cache."""
    before, folder = torch.get_num_threads(), os.environ.get("GRADIO_TEMP_DIR")
    torch.set_num_threads(1)
    os.environ["GRADIO_TEMP_DIR"] = str(tmp_path_factory.mktemp("gradio"))
    yield
    torch.set_num_threads(before)
    if folder is None:
        os.environ.pop("GRADIO_TEMP_DIR", None)
    else:
        os.environ["GRADIO_TEMP_DIR"] = folder


@pytest.fixture(scope="module")
def spec():
    return engine.get_model(MODEL)


@contextmanager
def forward_calls(model: torch.nn.Module) -> Iterator[list[int]]:
    """Count forward calls (images) of ``model`` from any thread, with a forward pre-hook."""
    calls = [0]

    def hook(_module, args):
        calls[0] += int(args[0].shape[0])

    handle = model.register_forward_pre_hook(hook)
    try:
        yield calls
    finally:
        handle.remove()


def explain(*overrides: tuple[int, object]):
    values = list(DEFAULTS)
    for index, value in overrides:
        values[index] = value
    return handlers.explain(*values)


def pixels(path: str) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"), dtype=np.int16)


def frame_color(path: str) -> tuple[int, int, int]:
    return Image.open(path).convert("RGB").getpixel((1, 1))


def left_share(npy_path: str) -> float:
    heatmap = np.load(npy_path).astype(np.float64)
    return float(heatmap[:, : heatmap.shape[1] // 2].sum() / heatmap.sum())


@pytest.fixture(scope="module")
def chelsea_outputs():
    return explain()


def test_explain_returns_pictures_galleries_summary_and_downloads(chelsea_outputs, spec):
    overlay, heatmap, clusters, masked, scores, summary, downloads, markdown, top5, session = chelsea_outputs
    assert Image.open(overlay).format == "PNG" and Image.open(heatmap).format == "PNG"
    assert Image.open(overlay).size == Image.open(CHELSEA).size  # 451×300: under the display size
    assert list(scores["cluster"]) == [str(q) for q in range(DEFAULT_Q)]  # the bar plot's rows
    assert len(clusters) == DEFAULT_Q and len(masked) == DEFAULT_Q
    for q, (path, caption) in enumerate(clusters):
        assert Path(path).is_file() and caption.startswith(f"cluster {q} · ")
        assert f"{summary['cluster_sizes'][q]} maps" in caption
    assert sum(" · BASE" in caption for _, caption in clusters) == 1
    assert sum(" · SCISSORS" in caption for _, caption in masked) == 1
    base, scissors = summary["base"]["cluster"], summary["scissors"]["cluster"]
    assert "BASE" in clusters[base][1] and "SCISSORS" in masked[scissors][1]
    assert summary["scores"][base] == max(summary["scores"]) and summary["scores"][scissors] == min(summary["scores"])
    assert list(scores["score"]) == summary["scores"] and list(scores["maps"]) == summary["cluster_sizes"]
    assert list(scores["role"]).index("base") == base and list(scores["role"]).index("scissors") == scissors
    # the model's own top-1 for the scikit-image cat, explained by default
    assert summary["target"]["name"] == summary["predicted_top5"][0]["name"] == "Egyptian cat"
    assert summary["forward_passes"] == 1 + DEFAULT_Q and summary["layer"] == spec.default_layer
    assert f"cluster {base}" in markdown and f"cluster {scissors}" in markdown
    png, npy = downloads
    assert png == overlay and npy.endswith(".npy")
    array = np.load(npy)
    assert array.dtype == np.float32 and array.shape == tuple(summary["input_size"][::-1])
    assert array.min() >= 0.0 and array.max() == pytest.approx(1.0)
    assert isinstance(top5, gr.Radio) and len(top5.choices) == 5 and top5.value == "285"
    assert session["key"] and session["target"] is None and session["beta"] == DEFAULT_BETA


def test_reweight_redraws_without_a_forward_pass(chelsea_outputs, spec):
    overlay, *_, session = chelsea_outputs
    times = []
    with forward_calls(spec.model) as calls:
        for beta in (0.3, 0.4, 0.5, 0.6, 0.9, 0.3):
            started = time.perf_counter()
            new_overlay, _, summary, downloads, markdown, new_session = handlers.reweight(beta, session)
            times.append(time.perf_counter() - started)
    assert calls[0] == 0 and summary["request"]["forward_passes"] == 0
    assert summary["beta"] == 0.3 and new_session["beta"] == 0.3 and "β = 0.30" in markdown
    assert np.abs(pixels(new_overlay) - pixels(overlay)).mean() > 1.0  # another β, another map
    assert not np.allclose(np.load(downloads[1]), np.load(chelsea_outputs[6][1]))
    print(f"\nreweight server time: median {1000 * statistics.median(times):.1f} ms over {len(times)} calls")


def test_retarget_swaps_base_and_scissors_on_two_objects(spec):
    session = explain((0, PAIR), (3, 3))[-1]
    roles = {}
    with forward_calls(spec.model) as calls:
        for name in ("Egyptian cat", "espresso", "285"):
            outputs = handlers.retarget(name, session)
            shown, downloads, new_session = outputs[5], outputs[6], outputs[-1]
            assert shown["target"]["name"] == ("Egyptian cat" if name == "285" else name)
            assert shown["request"]["forward_passes"] == 0
            roles[name] = (shown["base_index"], shown["scissors_index"], left_share(downloads[1]))
            for gallery in (outputs[2], outputs[3]):  # cluster maps and masked images: frames follow
                assert frame_color(gallery[shown["base_index"]][0]) == BASE_COLOR
                assert frame_color(gallery[shown["scissors_index"]][0]) == SCISSORS_COLOR
            assert "p(" + shown["target"]["name"] + ")" in outputs[3][0][1]
            assert new_session["target"] == spec.class_index(name)
            assert outputs[9]["value"] == str(spec.class_index(name))  # the class dropdown follows
    assert calls[0] == 0
    (cat_base, cat_scissors, cat_left), (cup_base, cup_scissors, cup_left) = roles["Egyptian cat"], roles["espresso"]
    assert (cat_base, cat_scissors) == (cup_scissors, cup_base)  # the paper's Fig. 3 swap
    assert cat_left > 0.8 and cup_left < 0.2  # the heatmap follows the object asked for
    assert roles["285"] == roles["Egyptian cat"]


def test_redraws_before_any_explanation_change_nothing():
    assert all(value == gr.skip() for value in handlers.reweight(0.5, None))
    assert all(value == gr.skip() for value in handlers.retarget("espresso", None))


def test_layers_follow_the_model(spec):
    dropdown, table = handlers.layers(MODEL)
    assert dropdown.value == spec.default_layer
    assert [value for _, value in dropdown.choices] == spec.layer_names() == [row["name"] for row in table]
    assert all(" · " in label for label, _ in dropdown.choices)


def test_cache_serves_identical_requests_once_across_threads(spec):
    """A classroom clicking one example together: one computation, identical answers."""
    results, errors = [], []

    def call() -> None:
        try:
            # a seed no other test uses: the request is new to the process-wide cache
            results.append(explain((0, str(ASSETS / "coffee.jpg")), (3, 4), (9, 4242))[5])
        except Exception as error:  # pragma: no cover - reported below
            errors.append(error)

    with forward_calls(spec.model) as calls:
        threads = [threading.Thread(target=call) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert not errors and len(results) == 4
    assert calls[0] == 1 + 4  # one forward pass and Q masked passes, for all four requests
    assert len({(r["base_index"], r["scissors_index"], tuple(r["scores"])) for r in results}) == 1
    assert sorted(r["request"]["cached"] for r in results) == [False, True, True, True]


def test_result_cache_is_bounded_and_expires():
    class Entry:
        def __init__(self, key: str):
            self.key = key

    cache = engine.ResultCache(max_entries=2, ttl=3600)
    for key in "abc":
        cache.put(Entry(key))
    assert len(cache) == 2 and cache.get("a") is None and cache.get("c").key == "c"
    cache.get("b")  # b is now the most recent: d evicts c
    cache.put(Entry("d"))
    assert cache.get("c") is None and cache.get("b") is not None
    short = engine.ResultCache(max_entries=2, ttl=0.05)
    short.put(Entry("x"))
    time.sleep(0.1)
    assert short.get("x") is None and len(short) == 0


def test_expired_explanation_asks_to_explain_again():
    with pytest.raises(gr.Error, match="press Explain again"):
        handlers.reweight(0.5, {"key": "gone", "target": None, "beta": 0.5})


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (((0, None),), "No image yet"),
        (((3, 1),), "Q must be a whole number of clusters ≥ 2"),
        (((3, 2.5),), "Q must be a whole number"),
        (((2, "blocks.0"), (3, 17)), "Q = 17 is more than the 16 channels"),
        (((4, 1.5),), "β must be between 0 and 1"),
        (((1, "resnet9000"),), "Unknown model 'resnet9000'"),
        (((2, "blocks.99"),), "Unknown layer 'blocks.99'"),
        (((10, "unicorn"),), "Unknown class name 'unicorn'"),
        (((5, "dbscan"),), "Clustering must be 'kmeans' or 'spectral'"),
    ],
)
def test_user_mistakes_become_gr_errors(overrides, message):
    with pytest.raises(gr.Error, match=message):
        explain(*overrides)


def test_bad_files_become_gr_errors(tmp_path):
    not_image = tmp_path / "notes.jpg"
    not_image.write_bytes(b"this is not an image")
    with pytest.raises(gr.Error, match="not an image"):
        explain((0, str(not_image)))
    truncated = tmp_path / "truncated.jpg"
    data = (ASSETS / "chelsea.jpg").read_bytes()
    truncated.write_bytes(data[: len(data) // 3])
    with pytest.raises(gr.Error, match="truncated or corrupt"):
        explain((0, str(truncated)))
    gray = tmp_path / "gray.png"
    Image.new("RGB", (200, 200), (128, 128, 128)).save(gray)
    with pytest.raises(gr.Error, match=r"single flat colour|distinct|spatially constant"):  # degenerate feature maps
        explain((0, str(gray)))


def test_beta_out_of_range_on_reweight(chelsea_outputs):
    with pytest.raises(gr.Error, match="β must be between 0 and 1"):
        handlers.reweight(-0.1, chelsea_outputs[-1])


def test_unknown_class_on_retarget(chelsea_outputs):
    with pytest.raises(gr.Error, match="Did you mean"):
        handlers.retarget("egyptian", chelsea_outputs[-1])


def test_weights_that_cannot_be_downloaded_become_gr_error_and_the_app_keeps_working(monkeypatch):
    import torchvision.models._api

    def offline(*_args, **_kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    monkeypatch.setattr(torchvision.models._api, "load_state_dict_from_url", offline)
    with pytest.raises(gr.Error, match="could not be downloaded"):
        handlers.layers("alexnet")
    with pytest.raises(gr.Error, match="could not be downloaded"):
        explain((1, "alexnet"))
    dropdown, _ = handlers.layers(MODEL)  # the embedded model still serves
    assert dropdown.value == "bn2"


def test_compare_gives_costs_and_metrics_per_method(spec):
    gallery, table = studies.compare(*DEFAULTS, ["clustercam", "gradcam", "xgradcam"])
    assert len(gallery) == 4 and gallery[0][1].startswith("Input · target: Egyptian cat")
    assert [row for row in table["method"]] == ["Cluster-CAM", "Grad-CAM", "XGrad-CAM"]
    passes = dict(zip(table["method"], zip(table["forward"], table["backward"], strict=True), strict=True))
    assert passes["Cluster-CAM"] == (1 + DEFAULT_Q, 0) and passes["Grad-CAM"] == (1, 1)
    assert table["average drop %"].between(0, 100).all()
    assert set(table["increase"]) <= {"yes", "no"}
    y, o = table["Y"], table["O"]
    assert (y == y.iloc[0]).all()  # one image, one class: the same Y for every method
    expected = (100 * (y - o).clip(lower=0) / y).round(2)
    assert np.allclose(table["average drop %"], expected, atol=0.02)
    for (_, caption), method in zip(gallery[1:], table["method"], strict=True):
        assert caption.startswith(method) and " fwd / " in caption and "avg drop" in caption


def test_compare_refuses_empty_or_unknown_method_lists():
    with pytest.raises(gr.Error, match="at least one method"):
        studies.compare(*DEFAULTS, [])
    with pytest.raises(gr.Error, match="Unknown method"):
        studies.compare(*DEFAULTS, ["magiccam"])


def test_default_methods_leave_score_cam_out_on_cpu():
    assert "scorecam" not in studies.default_methods(torch.device("cpu"))
    assert "scorecam" in studies.default_methods(torch.device("cuda"))


def test_sweeps_over_q_layers_and_eigenvectors(monkeypatch, spec):
    monkeypatch.setattr(studies, "SWEEP_Q_VALUES", (2, 3))
    monkeypatch.setattr(studies, "SWEEP_K_VALUES", (1, 2))
    q_sweep = studies.sweep_q(CHELSEA, MODEL, "", DEFAULT_BETA, "kmeans", 0, 0.2, 0.0, 0, "")
    assert [caption.split(" · ")[0] for _, caption in q_sweep] == ["Q = 2", "Q = 3"]
    layer_sweep = studies.sweep_layers(CHELSEA, MODEL, 3, DEFAULT_BETA, "kmeans", 0, 0.2, 0.0, 0, "", 2)
    labels = {info.name: info.label for info in spec.layers()}
    chosen = [info.name for info in studies.sweep_layer_selection(spec, 2)]
    assert [caption.split(" · base")[0] for _, caption in layer_sweep] == [labels[name] for name in chosen]
    k_sweep = studies.sweep_eigenvectors(CHELSEA, MODEL, "", 3, DEFAULT_BETA, 0.2, 0.0, 0, "")
    assert [caption.split(" · ")[0] for _, caption in k_sweep] == ["K = 1", "K = 2"]
    for _, caption in q_sweep + layer_sweep + k_sweep:
        assert " · base " in caption and " · scissors " in caption
    for path, _ in q_sweep + layer_sweep + k_sweep:
        assert Image.open(path).size == Image.open(CHELSEA).size  # chelsea is under the display size


def test_layer_selection_keeps_stage_ends_and_the_default(spec):
    layers = spec.layer_names()
    for count in (2, 4, 6, 12):
        chosen = [info.name for info in studies.sweep_layer_selection(spec, count)]
        assert 2 <= len(chosen) <= count and spec.default_layer in chosen
        assert chosen == sorted(chosen, key=layers.index)  # forward order
        assert all(name.count(".") <= 1 for name in chosen)
    six = [info for info in studies.sweep_layer_selection(spec, 6)]
    assert len({(info.height, info.width) for info in six}) == 5  # one per resolution, 112² … 7²
    with pytest.raises(ValueError, match="at least 2"):
        studies.sweep_layer_selection(spec, 1)


def test_teaching_example_swaps_base_and_scissors():
    cat = handlers.teach("Egyptian cat")
    cup = handlers.teach("espresso")
    assert len(cat[1]) == handlers.TEACH_Q and len(cup[2]) == handlers.TEACH_Q
    assert "swap places" in cat[3] and "### Target: espresso" in cup[3]
    assert [caption for _, caption in cat[1]] != [caption for _, caption in cup[1]]
    with pytest.raises(gr.Error):
        handlers.teach("tabby")
