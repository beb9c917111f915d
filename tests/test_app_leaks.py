"""100 app requests, some failing halfway: no hook left behind, cache bounded, memory flat."""

from __future__ import annotations

import gc
import io
import os

import psutil
import pytest
import torch
from PIL import Image

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import gradio as gr

from clustercam.hooks import hook_count
from clustercamapp import engine
from clustercamapp.memory import release_free_memory
from clustercamapp.settings import SETTING_NAMES

from .conftest import ASSETS

MODEL = "efficientnet_lite0"


@pytest.fixture()
def small_cache(monkeypatch, tmp_path):
    monkeypatch.setattr(engine.RESULTS, "max_entries", 4)  # the one cache every handler uses
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path))
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield engine.RESULTS
    torch.set_num_threads(before)


def test_sixty_requests_half_failing_leave_no_hooks_and_flat_memory(small_cache, tmp_path):
    import app

    tab = app.page.explain
    spec = engine.get_model(MODEL)
    baseline_hooks = hook_count(spec.model)  # the app's own forward-pass counter
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes((ASSETS / "chelsea.jpg").read_bytes()[:3000])
    flat = tmp_path / "flat.png"
    Image.new("RGB", (200, 200), (90, 90, 90)).save(flat)
    chelsea, pair = str(ASSETS / "chelsea.jpg"), str(ASSETS / "cat_and_coffee.jpg")

    def explain(image, seed=0, layer="", q=4, model=MODEL):
        settings = {"image": image, "model": model, "layer": layer, "q": q, "beta": 0.7, "seed": seed}
        return tab.on_explain(*[settings.get(name) for name in SETTING_NAMES])

    def one_request(i: int) -> bool:
        """One request of a mix; True when it succeeded."""
        kind = i % 10
        try:
            if kind < 4:  # new explanations: evict older cache entries
                session = explain(chelsea if kind % 2 else pair, seed=i)[tab.session]
                tab.on_reweight(0.3 + 0.05 * (i % 10), session)
                tab.on_retarget("espresso", session)
            elif kind == 4:
                explain(str(corrupt))
            elif kind == 5:
                explain(str(flat))
            elif kind == 6:  # fails halfway: after the layer was captured, before any masked pass
                explain(chelsea, layer="conv_stem", q=40)
            elif kind == 7:
                explain(chelsea, layer="no.such.layer")
            elif kind == 8:
                explain(chelsea, model="resnet9000")
            else:
                explain(chelsea, seed=3)  # a cache hit once warmed up
            return True
        except gr.Error:
            return False

    for i in range(10):  # warm-up: allocator pools, lazy imports, a full cache
        one_request(i)
    gc.collect()
    release_free_memory()  # as the server does once quiet (clustercamapp.memory)
    process = psutil.Process()
    before = process.memory_info().rss
    outcomes = [one_request(i) for i in range(60)]
    gc.collect()
    release_free_memory()
    grown = (process.memory_info().rss - before) / 2**20

    assert outcomes.count(False) == 30 and outcomes.count(True) == 30
    assert hook_count(spec.model) == baseline_hooks
    assert all(not m._forward_hooks for m in spec.model.modules())  # no capture hook anywhere
    assert len(small_cache) <= 4
    assert grown < 60, f"RSS grew by {grown:.1f} MiB over 60 requests"


def test_an_expired_explanation_is_dropped_and_reported():
    cache = engine.ResultCache(max_entries=2, ttl=0.0)

    class Entry:
        key = "k"

    cache.put(Entry())
    assert cache.get("k") is None and len(cache) == 0


def test_corrupt_upload_bytes_never_reach_torch(small_cache):
    from clustercam.imaging import ImageError

    data = io.BytesIO()
    Image.new("RGB", (8, 8)).save(data, format="PNG")
    with pytest.raises(ImageError, match="truncated or corrupt"):
        engine.explain_cached(data.getvalue()[:20], "x", engine.get_model(MODEL), "bn2", {"q": 3})
