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
        server_name="127.0.0.1", server_port=free_port(), prevent_thread_lock=True, quiet=True, **app.launch_options()
    )
    try:
        yield url
    finally:
        app.demo.close()
        torch.set_num_threads(before)


@pytest.fixture()
def client(server_url: str) -> Client:
    """A fresh client: its own session (gr.State) on the server."""
    return new_client(server_url)


def new_client(url: str) -> Client:
    return Client(url, verbose=False, analytics_enabled=False, httpx_kwargs={"timeout": 60})


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


#: Seconds any one call may take before the test fails (never hang CI on a stuck server).
TIMEOUT = 240


def call(client: Client, *args, api_name: str, timeout: float = TIMEOUT, **named):
    """``client.predict`` with a time limit (``named``: parameters by name)."""
    return client.submit(*args, api_name=api_name, **named).result(timeout=timeout)


def explain(client: Client, image: str, q: int = DEFAULT_Q, target: str = "", seed: int = 0, **more):
    """/explain with the page's defaults; ``more`` are the later settings, by name."""
    return call(
        client, handle_file(str(ASSETS / image)), MODEL, "", q, DEFAULT_BETA, "kmeans", 0, 0.2, 0.0, seed, target,
        api_name="/explain", **more,
    )


def pixels(path: str) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"), dtype=np.int16)


def test_explain_then_reweight_without_a_forward_pass(client):
    answer = explain(client, "chelsea.jpg")
    assert len(answer) == 18  # the outputs of the README's API table
    overlay, heatmap, clusters, masked, table, summary, downloads, markdown, top5, base_map, scissors_map, chart = answer[:12]
    kept_text, tradeoff = answer[16:18]
    kept = summary["confidence_kept"]
    assert f"Confidence kept at β = {DEFAULT_BETA:.2f}: {kept['beta']:.2f}" in kept_text and Image.open(tradeoff).format == "PNG"
    assert summary["formula"] == "β·B − (1 − β)·S (eq. 22)" and summary["in_paper"] is True
    assert len(clusters) == DEFAULT_Q and len(masked) == DEFAULT_Q
    assert all(Path(item["image"]).is_file() and item["caption"].startswith("cluster ") for item in clusters)
    base, scissors = summary["base"]["cluster"], summary["scissors"]["cluster"]
    assert "BASE" in clusters[base]["caption"] and "SCISSORS" in masked[scissors]["caption"]
    assert f"**Base:** cluster {base}" in markdown and f"**Scissors:** cluster {scissors}" in markdown
    assert summary["target"]["name"] == "Egyptian cat"
    assert top5["value"] == "285" and top5["choices"][0][1] == "285" and len(top5["choices"]) == 5
    assert Image.open(overlay).format == "JPEG"  # a photograph; the exact heatmap is the .npy
    assert all(Image.open(path).format == "PNG" for path in (heatmap, base_map, scissors_map, chart))
    assert [row[3] for row in table["data"]] == summary["scores"] and [row[1] for row in table["data"]].index("base") == base
    assert [Path(path).suffix for path in downloads] == [".zip", ".jpg", ".npy"]

    with forward_calls() as calls:
        _, new_heatmap, new_summary, new_downloads, new_markdown, *_ = call(client, 0.2, api_name="/reweight")
    assert calls[0] == 0 and new_summary["request"]["forward_passes"] == 0
    assert new_summary["beta"] == 0.2 and "β = 0.20" in new_markdown
    assert np.abs(pixels(new_heatmap) - pixels(heatmap)).mean() > 1.0
    assert not np.allclose(np.load(new_downloads[2]), np.load(downloads[2]))
    assert (new_summary["base"], new_summary["scissors"]) == (summary["base"], summary["scissors"])


def test_explain_through_the_api_matches_the_library(client):
    """Spectral clustering with non-default K, σ, θ, seed, similarity, β and a target: the
    served .npy is the library's heatmap for the same settings."""
    from clustercam.pipeline import explain_image

    answer = call(
        client, handle_file(str(ASSETS / "cat_and_coffee.jpg")), MODEL, "bn2", 4, 0.6, "spectral", 2, 0.3, 0.4, 11,
        "espresso", "spectral", "ssim", False, "jet", api_name="/explain",
    )
    spec = engine.get_model(MODEL)
    library = explain_image(
        spec, (ASSETS / "cat_and_coffee.jpg").read_bytes(), layer="bn2", preset="spectral", q=4, beta=0.6,
        clustering="spectral", n_eigenvectors=2, sigma=0.3, theta=0.4, seed=11, similarity="ssim",
        normalize_rows=False, target=spec.class_index("espresso"),
    )
    np.testing.assert_allclose(np.load(answer[6][2]), library.result.heatmaps[0].numpy(), atol=1e-6)


def test_retarget_swaps_base_and_scissors_between_cat_and_espresso(client):
    top1 = explain(client, "cat_and_coffee.jpg", q=3, preset="legacy", seed=31)[5]["target"]["name"]  # new to the cache
    roles = {}
    with forward_calls() as calls:
        for name in ("Egyptian cat", "espresso"):
            outputs = call(client, name, api_name="/retarget")
            summary, table, target = outputs[5], outputs[4], outputs[13]
            # the clusters and scores need no pass; the β curve of the class that was not top-1 is
            # one batched pass (the top-1's was measured with the explanation)
            assert summary["target"]["name"] == name
            assert summary["request"]["forward_passes"] == (0 if name == top1 else len(engine.TRADEOFF_BETAS))
            assert table["headers"][3] == f"p({name})"
            assert target["value"] == str(summary["target"]["index"])  # the class dropdown follows
            roles[name] = (summary["base"]["cluster"], summary["scissors"]["cluster"])
    assert calls[0] == len(engine.TRADEOFF_BETAS)
    assert roles["Egyptian cat"] == roles["espresso"][::-1]


def test_sessions_are_separate(server_url):
    first, second = new_client(server_url), new_client(server_url)
    explain(first, "chelsea.jpg")
    first_beta = call(first, 0.4, api_name="/reweight")[2]["beta"]
    skipped = call(second, 0.9, api_name="/reweight")  # nothing explained in this session yet
    assert first_beta == 0.4
    note = skipped[5]  # the β note says there is nothing to redraw; nothing else changes
    assert "Nothing to redraw yet" in note
    assert all(value is None or value == {"__type__": "update"} for index, value in enumerate(skipped) if index != 5)


def test_layers_endpoint(client):
    layer, table = call(client, MODEL, api_name="/layers")
    assert layer == "bn2" and table[-1] == {"name": "bn2", "kind": "BatchNormAct2d", "channels": 1280, "height": 7, "width": 7}


def test_user_mistakes_reach_the_client_as_messages(client, tmp_path):
    photo = handle_file(str(ASSETS / "chelsea.jpg"))
    with pytest.raises(AppError, match="Unknown model"):
        call(client, photo, "resnet9000", "", 6, 0.7, "kmeans", 0, 0.2, 0.0, 0, "", api_name="/explain")
    with pytest.raises(AppError, match="Unknown layer"):
        call(client, photo, MODEL, "nope", 6, 0.7, "kmeans", 0, 0.2, 0.0, 0, "", api_name="/explain")
    broken = tmp_path / "photo.jpg"
    broken.write_bytes((ASSETS / "chelsea.jpg").read_bytes()[:5000])  # a cut-off download
    with pytest.raises(AppError, match="truncated or corrupt"):
        call(client, handle_file(str(broken)), MODEL, "", 6, 0.7, "kmeans", 0, 0.2, 0.0, 0, "", api_name="/explain")
    text = tmp_path / "notes.png"
    text.write_text("not a picture")
    with pytest.raises(AppError, match="not an image"):
        call(client, handle_file(str(text)), MODEL, "", 6, 0.7, "kmeans", 0, 0.2, 0.0, 0, "", api_name="/explain")
    assert explain(client, "chelsea.jpg")[5]["q"] == DEFAULT_Q  # the server keeps serving


def test_a_classroom_sending_one_example_at_once(server_url):
    """Identical concurrent requests (RECIPES: files rewritten while served broke such a load)."""

    def one(_: int):
        return explain(new_client(server_url), "rocket.jpg", q=4)

    with forward_calls() as calls, ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(one, range(6)))
    # computed once (the pass, Q masked passes and the β curve's batched pass), then served from the cache
    assert calls[0] == 1 + 4 + len(engine.TRADEOFF_BETAS)
    assert len({tuple(answer[5]["scores"]) for answer in answers}) == 1
    for answer in answers:
        assert len(answer[2]) == 4 and Image.open(answer[0]).size == Image.open(answers[0][0]).size


def test_compare_and_sweep_endpoints(client):
    coffee = handle_file(str(ASSETS / "coffee.jpg"))
    settings = (MODEL, "", 4, DEFAULT_BETA, "kmeans", 0, 0.2, 0.0, 0, "", "", "euclidean", False, "viridis")
    gallery, table = call(client, coffee, *settings, ["gradcam", "xgradcam"], api_name="/compare")
    assert [item["caption"].split(" · ")[0] for item in gallery] == ["Input", "Grad-CAM", "XGrad-CAM"]
    assert table["headers"][0] == "method" and [row[0] for row in table["data"]] == ["Grad-CAM", "XGrad-CAM"]
    layers = call(client, coffee, *settings, 2, api_name="/sweep_layers")
    assert len(layers) == 2 and layers[-1]["caption"].startswith("bn2 · ")


def test_a_preset_and_the_spectral_similarity_through_the_api(client):
    from clustercam.methods import PRESETS

    paper = PRESETS["paper"]
    answer = explain(client, "cat_and_coffee.jpg", q=paper["q"], target="Egyptian cat", preset="paper")
    summary = answer[5]
    assert summary["preset"] == "paper" and summary["normalization"] == paper["normalization"]
    assert summary["combination"] == paper["combination"] and len(answer[2]) == paper["q"]
    spectral = call(
        client, handle_file(str(ASSETS / "cat_and_coffee.jpg")), MODEL, "", 3, 0.9, "spectral", 0, 0.2, 0.0, 0,
        "Egyptian cat", "", "correlation", True, api_name="/explain",
    )
    assert spectral[5]["method"] == "clustercam" and len(spectral[2]) == 3
    with pytest.raises(AppError, match="Unknown preset"):
        explain(client, "coffee.jpg", q=3, preset="best")


def test_the_q_sweep_shows_the_silhouette_of_each_clustering(client):
    gallery = call(
        client, handle_file(str(ASSETS / "coffee.jpg")), MODEL, "", DEFAULT_Q, DEFAULT_BETA, "kmeans", 0, 0.2, 0.0, 0, "",
        api_name="/sweep_q",
    )
    captions = [item["caption"] for item in gallery]
    assert [c.split(" · ")[0] for c in captions] == [f"Q = {q}" for q in range(2, 9)]
    values = [float(c.split("silhouette ")[1].split()[0]) for c in captions]
    assert all(-1 <= v <= 1 for v in values)
    assert sum("★" in c for c in captions) == 1 and "★" in captions[values.index(max(values))]
