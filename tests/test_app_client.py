"""The app served in-process on a free port and used through gradio_client's named endpoints."""

from __future__ import annotations

import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError

from clustercam.methods import DEFAULT_BETA, DEFAULT_Q
from clustercamapp import engine

from .conftest import ASSETS, free_port

MODEL = "efficientnet_lite0"


@pytest.fixture(scope="module")
def server_url() -> Iterator[str]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # a small, busy CPU: see test_app_handlers
    import app

    # build_demo already configured the (bounded) queue; calling queue() again would reset it
    _, url, _ = app.demo.launch(
        server_name="127.0.0.1", server_port=free_port(), prevent_thread_lock=True, quiet=True
    )
    try:
        yield url
    finally:
        app.demo.close()
        torch.set_num_threads(before)


@pytest.fixture()
def client(server_url: str) -> Client:
    """A fresh client: its own session (gr.State) on the server."""
    return Client(server_url, verbose=False, analytics_enabled=False)


@contextmanager
def forward_calls() -> Iterator[list[int]]:
    """Images through the served model (the server runs in this process), counted by a hook."""
    calls = [0]

    def hook(_module, args):
        calls[0] += int(args[0].shape[0])

    handle = engine.get_model(MODEL).model.register_forward_pre_hook(hook)
    try:
        yield calls
    finally:
        handle.remove()


def explain(client: Client, image: str, q: int = DEFAULT_Q, target: str = ""):
    return client.predict(
        handle_file(str(ASSETS / image)), MODEL, "", q, DEFAULT_BETA, "kmeans", 0, 0.2, 0.0, 0, target,
        api_name="/explain",
    )


def pixels(path: str) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"), dtype=np.int16)


def test_explain_then_reweight_without_a_forward_pass(client):
    overlay, heatmap, clusters, masked, scores, summary, downloads, markdown, top5 = explain(client, "chelsea.jpg")
    assert len(clusters) == DEFAULT_Q and len(masked) == DEFAULT_Q
    assert all(Path(item["image"]).is_file() and item["caption"].startswith("cluster ") for item in clusters)
    assert all(item["caption"].startswith("X∘H") and "p(Egyptian cat) = " in item["caption"] for item in masked)
    base, scissors = summary["base"]["cluster"], summary["scissors"]["cluster"]
    assert "BASE" in clusters[base]["caption"] and "SCISSORS" in clusters[scissors]["caption"]
    assert f"Cognition base** (eq. 20): cluster {base}" in markdown
    assert f"Cognition scissors** (eq. 21): cluster {scissors}" in markdown
    assert summary["target"]["name"] == "Egyptian cat"
    assert top5["value"] == "285" and top5["choices"][0][1] == "285"
    assert len(top5["choices"]) == 5
    assert Image.open(overlay).format == "PNG"
    bars = scores["data"]  # the bar plot's rows: cluster, score, role, maps
    assert [row[1] for row in bars] == summary["scores"] and [row[2] for row in bars].index("base") == base
    assert [Path(path).suffix for path in downloads] == [".png", ".npy"]

    with forward_calls() as calls:
        _, new_heatmap, new_summary, new_downloads, new_markdown = client.predict(0.2, api_name="/reweight")
    assert calls[0] == 0 and new_summary["request"]["forward_passes"] == 0
    assert new_summary["beta"] == 0.2 and "β = 0.20" in new_markdown
    assert np.abs(pixels(new_heatmap) - pixels(heatmap)).mean() > 1.0
    assert not np.allclose(np.load(new_downloads[1]), np.load(downloads[1]))
    assert (new_summary["base"], new_summary["scissors"]) == (summary["base"], summary["scissors"])


def test_retarget_swaps_base_and_scissors_between_cat_and_espresso(client):
    explain(client, "cat_and_coffee.jpg", q=3)
    roles = {}
    with forward_calls() as calls:
        for name in ("Egyptian cat", "espresso"):
            outputs = client.predict(name, api_name="/retarget")
            summary, masked, target = outputs[5], outputs[3], outputs[9]
            assert summary["target"]["name"] == name and summary["request"]["forward_passes"] == 0
            assert all(f"p({name}) = " in item["caption"] for item in masked)
            assert target["value"] == str(summary["target"]["index"])  # the class dropdown follows
            roles[name] = (summary["base"]["cluster"], summary["scissors"]["cluster"])
    assert calls[0] == 0
    assert roles["Egyptian cat"] == roles["espresso"][::-1]


def test_sessions_are_separate(server_url):
    first, second = (Client(server_url, verbose=False, analytics_enabled=False) for _ in range(2))
    explain(first, "chelsea.jpg")
    first_beta = first.predict(0.4, api_name="/reweight")[2]["beta"]
    skipped = second.predict(0.9, api_name="/reweight")  # nothing explained in this session yet
    assert first_beta == 0.4
    assert all(value == {"__type__": "update"} for value in skipped)  # no change: nothing to redraw


def test_layers_endpoint(client):
    layer, table = client.predict(MODEL, api_name="/layers")
    assert layer["value"] == "bn2" and [value for _, value in layer["choices"]] == [row["name"] for row in table]
    assert table[-1] == {"name": "bn2", "kind": "BatchNormAct2d", "channels": 1280, "height": 7, "width": 7}


def test_user_mistakes_reach_the_client_as_messages(client, tmp_path):
    with pytest.raises(AppError, match="Unknown model 'resnet9000'"):
        client.predict(
            handle_file(str(ASSETS / "chelsea.jpg")), "resnet9000", "", 6, 0.7, "kmeans", 0, 0.2, 0.0, 0, "",
            api_name="/explain",
        )
    with pytest.raises(AppError, match="Unknown layer 'nope'"):
        client.predict(
            handle_file(str(ASSETS / "chelsea.jpg")), MODEL, "nope", 6, 0.7, "kmeans", 0, 0.2, 0.0, 0, "",
            api_name="/explain",
        )
    broken = tmp_path / "photo.jpg"
    broken.write_bytes((ASSETS / "chelsea.jpg").read_bytes()[:5000])  # a cut-off download
    with pytest.raises(AppError, match="truncated or corrupt"):
        client.predict(
            handle_file(str(broken)), MODEL, "", 6, 0.7, "kmeans", 0, 0.2, 0.0, 0, "", api_name="/explain"
        )
    text = tmp_path / "notes.png"
    text.write_text("not a picture")
    with pytest.raises(AppError, match="not an image"):
        client.predict(
            handle_file(str(text)), MODEL, "", 6, 0.7, "kmeans", 0, 0.2, 0.0, 0, "", api_name="/explain"
        )
    # the server keeps serving
    assert explain(client, "chelsea.jpg")[5]["q"] == DEFAULT_Q


def test_a_classroom_sending_one_example_at_once(server_url):
    """Identical concurrent requests (RECIPES: files rewritten while served broke such a load)."""

    def one(_: int):
        return explain(Client(server_url, verbose=False, analytics_enabled=False), "rocket.jpg", q=4)

    with forward_calls() as calls, ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(one, range(6)))
    assert calls[0] == 1 + 4  # computed once, then served from the cache
    assert len({tuple(answer[5]["scores"]) for answer in answers}) == 1
    for answer in answers:
        assert len(answer[2]) == 4 and Image.open(answer[0]).size == Image.open(answers[0][0]).size


def test_compare_and_sweep_endpoints(client):
    gallery, table = client.predict(
        handle_file(str(ASSETS / "coffee.jpg")), MODEL, "", 4, DEFAULT_BETA, "kmeans", 0, 0.2, 0.0, 0, "",
        ["gradcam", "xgradcam"], api_name="/compare",
    )
    assert [item["caption"].split(" · ")[0] for item in gallery] == ["Input", "Grad-CAM", "XGrad-CAM"]
    assert table["headers"][0] == "method" and [row[0] for row in table["data"]] == ["Grad-CAM", "XGrad-CAM"]
    layers = client.predict(
        handle_file(str(ASSETS / "coffee.jpg")), MODEL, 4, DEFAULT_BETA, "kmeans", 0, 0.2, 0.0, 0, "", 2,
        api_name="/sweep_layers",
    )
    assert len(layers) == 2 and layers[-1]["caption"].startswith("bn2 · ")


def test_a_preset_and_the_spectral_similarity_through_the_api(client):
    from clustercam.methods import PRESETS

    paper = PRESETS["paper"]
    answer = client.predict(
        handle_file(str(ASSETS / "cat_and_coffee.jpg")), MODEL, "", paper["q"], paper["beta"], "kmeans", 0, 0.2, 0.0, 0,
        "Egyptian cat", "paper", "euclidean", False, api_name="/explain",
    )
    summary = answer[5]
    assert summary["preset"] == "paper" and summary["normalization"] == paper["normalization"]
    assert summary["combination"] == paper["combination"] and len(answer[2]) == paper["q"]
    spectral = client.predict(
        handle_file(str(ASSETS / "cat_and_coffee.jpg")), MODEL, "", 3, 0.9, "spectral", 0, 0.2, 0.0, 0,
        "Egyptian cat", "", "correlation", True, api_name="/explain",
    )
    assert spectral[5]["method"] == "clustercam" and len(spectral[2]) == 3
    with pytest.raises(AppError, match="Unknown preset"):
        client.predict(
            handle_file(str(ASSETS / "coffee.jpg")), MODEL, "", 3, 0.5, "kmeans", 0, 0.2, 0.0, 0, "", "best", "euclidean",
            False, api_name="/explain",
        )


def test_the_q_sweep_shows_the_silhouette_of_each_clustering(client):
    gallery = client.predict(
        handle_file(str(ASSETS / "coffee.jpg")), MODEL, "", DEFAULT_BETA, "kmeans", 0, 0.2, 0.0, 0, "",
        api_name="/sweep_q",
    )
    captions = [item["caption"] for item in gallery]
    assert [c.split(" · ")[0] for c in captions] == [f"Q = {q}" for q in range(2, 9)]
    values = [float(c.split("silhouette ")[1].split()[0]) for c in captions]
    assert all(-1 <= v <= 1 for v in values)
    assert sum("★" in c for c in captions) == 1 and "★" in captions[values.index(max(values))]
