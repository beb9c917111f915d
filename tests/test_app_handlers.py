"""The app's listeners called directly, exactly as Gradio calls them: values in, ``{component:
value}`` out, a readable ``gr.Error`` for every user mistake.

Real model (the embedded EfficientNet-Lite0, offline) and real photographs from assets/.
"""

from __future__ import annotations

import itertools
import json
import os
import statistics
import threading
import time
import urllib.error
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import gradio as gr

from clustercam.imaging import load_image, resize_for_network
from clustercam.methods import DEFAULT_BETA, DEFAULT_Q, PRESETS, ClusterCAM
from clustercam.pipeline import explain_image
from clustercam.render import BASE_COLOR, SCISSORS_COLOR
from clustercamapp import engine
from clustercamapp.controls import layers
from clustercamapp.i18n import say
from clustercamapp.settings import SETTING_NAMES, Settings
from clustercamapp.tabs import compare as compare_tab
from clustercamapp.tabs import learn
from clustercamapp.tabs import sweeps as sweeps_tab
from clustercamapp.tabs.explain import ExplainSession

from .conftest import ASSETS

CHELSEA = str(ASSETS / "chelsea.jpg")
PAIR = str(ASSETS / "cat_and_coffee.jpg")
MODEL = "efficientnet_lite0"


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread() -> Iterator[None]:
    """One torch thread: these tests run beside others on a small, busy CPU. (The pictures go to
    Gradio's cache folder, as when served: the app's server, started by other test modules in this
    process, serves them only from there.)"""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def page():
    import app

    return app.page


@pytest.fixture(scope="module")
def tab(page):
    return page.explain


@pytest.fixture(scope="module")
def spec():
    return engine.get_model(MODEL)


def values(**settings) -> list[object]:
    """The settings block as the page sends it: the defaults, some of them changed."""
    page_defaults = {
        "image": CHELSEA, "model": MODEL, "layer": "", "q": DEFAULT_Q, "beta": DEFAULT_BETA, "clustering": "kmeans",
        "n_eigenvectors": 0, "sigma": 0.2, "theta": 0.0, "seed": 0, "target": "", "preset": "",
        "similarity": "euclidean", "normalize_rows": False, "colormap": "viridis",
    }
    merged = {**page_defaults, **settings}
    return [merged[name] for name in SETTING_NAMES]


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


def pixels(path: str) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"), dtype=np.int16)


def image_path(value) -> str:
    """The file of an image output: a path, or a ``gr.Image`` update (new label) holding one."""
    if isinstance(value, gr.Image):
        value = value.value
    return value["path"] if isinstance(value, dict) else str(value)


def frame_color(path: str) -> tuple[int, int, int]:
    return Image.open(path).convert("RGB").getpixel((1, 1))


def framed_in(path: str, color: tuple[int, int, int]) -> bool:
    """The tile's frame has ``color`` (within JPEG's rounding: the gallery tiles are JPEGs)."""
    return max(abs(a - b) for a, b in zip(frame_color(path), color, strict=True)) <= 8


def left_share(npy_path: str) -> float:
    heatmap = np.load(npy_path).astype(np.float64)
    return float(heatmap[:, : heatmap.shape[1] // 2].sum() / heatmap.sum())


@pytest.fixture(scope="module")
def chelsea(tab):
    return tab.on_explain(*values())


def test_explain_returns_every_output(tab, chelsea, spec):
    out = chelsea
    assert set(out) >= set(tab.explain_outputs())  # one value for every declared output
    summary, session = out[tab.summary], out[tab.session]
    overlay = out[tab.overlay]
    assert Image.open(overlay).format == "JPEG" and Image.open(overlay).size == Image.open(CHELSEA).size
    clusters, masked = out[tab.clusters], out[tab.masked]
    assert len(clusters) == DEFAULT_Q and len(masked) == DEFAULT_Q
    base, scissors = summary["base"]["cluster"], summary["scissors"]["cluster"]
    for q, ((tile, caption), (_, masked_caption)) in enumerate(zip(clusters, masked, strict=True)):
        assert Path(tile).is_file() and caption.startswith(f"cluster {q} · ") and caption == masked_caption
        assert caption.endswith(f"p {summary['scores'][q]:.3f}")
        assert ("BASE" in caption) == (q == base) and ("SCISSORS" in caption) == (q == scissors)
    assert summary["scores"][base] == max(summary["scores"]) and summary["scores"][scissors] == min(summary["scores"])
    table = out[tab.scores_table]
    assert list(table["maps"]) == summary["cluster_sizes"] and list(table["role"]).index("base") == base
    assert list(table["p(Egyptian cat)"]) == summary["scores"]
    # the model's own top-1 for the scikit-image cat, explained by default
    assert summary["target"]["name"] == summary["predicted_top5"][0]["name"] == "Egyptian cat"
    assert summary["forward_passes"] == 1 + DEFAULT_Q and summary["layer"] == spec.default_layer
    assert f"cluster {base}" in out[tab.summary_md] and f"cluster {scissors}" in out[tab.summary_md]
    top5 = out[tab.controls.top5]
    assert isinstance(top5, gr.Radio) and len(top5.choices) == 5 and top5.value == "285"
    assert out[tab.class_a] == "285" and out[tab.class_b] == str(summary["predicted_top5"][1]["index"])
    assert session.key and session.target is None and session.beta == DEFAULT_BETA
    assert frame_color(out[tab.base_map]) == BASE_COLOR and frame_color(out[tab.scissors_map]) == SCISSORS_COLOR


def test_the_zip_holds_every_output_and_the_npy_is_the_heatmap(tab, chelsea):
    bundle, overlay, npy = chelsea[tab.downloads]
    array = np.load(npy)
    assert array.dtype == np.float32 and array.min() >= 0.0 and array.max() == pytest.approx(1.0)
    with zipfile.ZipFile(bundle) as archive:
        names = set(archive.namelist())
        assert {Path(overlay).name, Path(npy).name, "base.png", "scissors.png", "scores.png", "summary.json"} <= names
        assert {f"cluster_{q}.jpg" for q in range(DEFAULT_Q)} | {f"masked_{q}.jpg" for q in range(DEFAULT_Q)} <= names
        assert np.array_equal(np.load(archive.open(Path(npy).name)), array)
        written = json.loads(archive.read("summary.json"))  # what was computed, as the page's summary says
    assert written["formula"] == chelsea[tab.summary]["formula"] == "β·B − (1 − β)·S (eq. 22)"
    assert written["in_paper"] is True and written["scores"] == chelsea[tab.summary]["scores"]
    assert written["confidence_kept"] == chelsea[tab.summary]["confidence_kept"]


def test_explain_matches_the_library_with_every_setting_changed(tab, spec):
    """Spectral clustering, non-default σ, θ, K, seed, β and a target: the app's .npy is the
    heatmap the library computes with the same settings."""
    options = {"q": 5, "clustering": "spectral", "n_eigenvectors": 3, "sigma": 0.35, "theta": 0.6, "seed": 7,
               "similarity": "correlation", "normalize_rows": True}
    out = tab.on_explain(*values(
        image=PAIR, beta=0.35, target="espresso", preset="discriminative", **options,
    ))
    npy = out[tab.downloads][2]
    library = explain_image(
        spec, Path(PAIR).read_bytes(), layer="bn2", preset="discriminative", target=spec.class_index("espresso"),
        **{**options, "beta": 0.35},
    )
    np.testing.assert_allclose(np.load(npy), library.result.heatmaps[0].numpy(), atol=1e-6)
    assert out[tab.summary]["q"] == 5 and out[tab.summary]["target"]["name"] == "espresso"


@pytest.mark.parametrize("preset", list(PRESETS))
def test_reweight_and_retarget_give_the_librarys_heatmaps_for_every_preset(tab, spec, preset):
    """/reweight and /retarget write the .npy of the library's ``reweight(β)`` / ``retarget(c)``
    (within 1e-6) at several β, under every preset; the library side is computed here directly
    from the image as the network sees it, not through the app's pipeline."""
    chosen = PRESETS[preset]
    page = {"q": chosen["q"], "beta": chosen["beta"], "clustering": chosen["clustering"], "similarity": "", "normalize_rows": None}
    session = tab.on_explain(*values(image=PAIR, preset=preset, **page))[tab.session]
    x = spec.to_tensor(resize_for_network(load_image(PAIR), spec.input_size))
    library = ClusterCAM(spec, "bn2", preset=preset)(x)
    for beta in (0.3, 0.65, 0.925):
        out = tab.on_reweight(beta, session)
        np.testing.assert_allclose(np.load(out[tab.downloads][2]), library.reweight(beta).heatmaps[0].numpy(), atol=1e-6)
        session = out[tab.session]
    for name in ("espresso", "Egyptian cat"):
        out = tab.on_retarget(name, session)
        expected = library.retarget(spec.class_index(name)).reweight(0.925).heatmaps[0].numpy()
        np.testing.assert_allclose(np.load(out[tab.downloads][2]), expected, atol=1e-6)
        assert out[tab.summary]["formula"] == library.cognition.formula


def test_reweight_redraws_without_a_forward_pass(tab, chelsea, spec):
    session, times = chelsea[tab.session], []
    with forward_calls(spec.model) as calls:
        for beta in (0.3, 0.4, 0.5, 0.6, 0.9, 0.3):
            started = time.perf_counter()
            out = tab.on_reweight(beta, session)
            times.append(time.perf_counter() - started)
    assert set(out) == set(tab.redraw_outputs()) - {tab.base_map, tab.scissors_map}  # β leaves the two maps alone
    assert calls[0] == 0 and out[tab.summary]["request"]["forward_passes"] == 0
    assert out[tab.summary]["beta"] == 0.3 and out[tab.session].beta == 0.3 and "β = 0.30" in out[tab.summary_md]
    assert np.abs(pixels(out[tab.overlay]) - pixels(chelsea[tab.overlay])).mean() > 1.0  # another β, another map
    assert not np.allclose(np.load(out[tab.downloads][2]), np.load(chelsea[tab.downloads][2]))
    print(f"\nreweight server time: median {1000 * statistics.median(times):.1f} ms over {len(times)} calls")


def test_recolor_changes_colours_not_the_heatmap(tab, chelsea):
    out = tab.on_recolor("jet", chelsea[tab.session])
    assert out[tab.session].colormap == "jet" and tab.base_map in out  # the two maps change colour too
    assert np.abs(pixels(out[tab.heatmap]) - pixels(image_path(chelsea[tab.heatmap]))).mean() > 10
    assert np.array_equal(np.load(out[tab.downloads][2]), np.load(chelsea[tab.downloads][2]))
    with pytest.raises(gr.Error, match="colormap: expects a colormap name"):
        tab.on_recolor("rainbow-unicorn", chelsea[tab.session])


def test_retarget_swaps_base_and_scissors_on_two_objects(tab, spec):
    explained = tab.on_explain(*values(image=PAIR, q=3, preset="legacy", seed=37))  # a seed new to the cache
    session, top1 = explained[tab.session], explained[tab.summary]["target"]["name"]
    roles = {}
    with forward_calls(spec.model) as calls:
        for name in ("Egyptian cat", "espresso", "285"):
            before = calls[0]
            out = tab.on_retarget(name, session)
            shown = out[tab.summary]
            assert shown["target"]["name"] == ("Egyptian cat" if name == "285" else name)
            # no pass for the clusters and scores; the β curve of a class not seen yet is one batched
            # pass of its β values (the top-1 class's was measured with the explanation)
            new_class = name == {"Egyptian cat": "espresso", "espresso": "Egyptian cat"}[top1]
            assert shown["request"]["forward_passes"] == calls[0] - before == (len(engine.TRADEOFF_BETAS) if new_class else 0)
            roles[name] = (shown["base_index"], shown["scissors_index"], left_share(out[tab.downloads][2]))
            for gallery in (out[tab.clusters], out[tab.masked]):  # cluster maps and masked images: frames follow
                assert framed_in(gallery[shown["base_index"]][0], BASE_COLOR)
                assert framed_in(gallery[shown["scissors_index"]][0], SCISSORS_COLOR)
                others = set(range(len(gallery))) - {shown["base_index"], shown["scissors_index"]}
                assert not any(framed_in(gallery[q][0], BASE_COLOR) or framed_in(gallery[q][0], SCISSORS_COLOR) for q in others)
            assert out[tab.session].target == spec.class_index(name)
            assert out[tab.controls.target]["value"] == str(spec.class_index(name))  # the class dropdown follows
    assert calls[0] == len(engine.TRADEOFF_BETAS)  # the one class new to the curve
    (cat_base, cat_scissors, cat_left), (cup_base, cup_scissors, cup_left) = roles["Egyptian cat"], roles["espresso"]
    assert (cat_base, cat_scissors) == (cup_scissors, cup_base)  # the paper's Fig. 3 swap
    assert cat_left > 0.8 and cup_left < 0.2  # the heatmap follows the object asked for
    assert roles["285"] == roles["Egyptian cat"]


def test_two_classes_side_by_side_without_a_forward_pass(tab, spec):
    session = tab.on_explain(*values(image=PAIR, q=3, preset="legacy"))[tab.session]
    with forward_calls(spec.model) as calls:
        out = tab.on_two_classes("Egyptian cat", "967", session)
    assert calls[0] == 0
    cat, cup = out[tab.overlay_a], out[tab.overlay_b]
    assert "Egyptian cat" in cat.label and "espresso" in cup.label
    left = [np.asarray(Image.open(image.value["path"] if isinstance(image.value, dict) else image.value)) for image in (cat, cup)]
    assert np.abs(left[0].astype(int) - left[1].astype(int)).mean() > 3  # two different heatmaps
    with pytest.raises(gr.Error, match="Pick class B"):
        tab.on_two_classes("Egyptian cat", None, session)
    with pytest.raises(gr.Error, match="Explain an image first"):
        tab.on_two_classes("Egyptian cat", "espresso", None)


def test_beta_notes_explain_a_blank_or_still_heatmap(tab):
    session = tab.on_explain(*values(image=PAIR, preset="discriminative"))[tab.session]
    assert "β = 0:" in tab.on_reweight(0.0, session)[tab.beta_note]
    assert tab.on_reweight(1.0, session)[tab.beta_note] == ""
    gated = tab.on_explain(*values(image=PAIR, preset="gated"))[tab.session]  # the gated variant: β cuts little here
    note = tab.on_reweight(0.2, gated)[tab.beta_note]
    assert "β barely acts here" in note and "B ⊙ (1 − (1 − β)·S) (a variant, not in the paper)" in note
    assert tab.heading(gated).label == "Heatmap: B ⊙ (1 − (1 − β)·S) (a variant, not in the paper)"
    default = tab.on_explain(*values(image=PAIR, preset=""))[tab.session]  # eq. 22: β acts
    assert tab.on_reweight(0.6, default)[tab.beta_note] == ""
    assert tab.heading(default).label == "Heatmap: β·B − (1 − β)·S (eq. 22)"


def test_an_example_button_shows_a_finished_explanation_with_the_default_settings(tab, page):
    out = tab.example("Cat and espresso")  # step 1 (the inputs it sets, what is in view), then Explain's step 2
    c = page.controls
    assert out[c.image].endswith("cat_and_coffee.jpg") and out[c.q] == DEFAULT_Q and out[c.beta] == DEFAULT_BETA
    rest = tab.on_explain_rest(out[tab.session], False)
    assert len(rest[tab.clusters]) == DEFAULT_Q and out[tab.session].key
    with pytest.raises(gr.Error):
        tab.example("Unicorn")


def test_explain_paints_what_is_in_view_first_then_everything(tab, spec):
    """The first message holds the heatmap over the image, β's note, the class choice and the two
    role maps, drawn before the β curve's pass; the second holds every output, the first's reused."""
    c = tab.controls
    with forward_calls(spec.model) as calls:
        messages = tab.on_explain_in_stages(*values(image=str(ASSETS / "coffee.jpg"), q=5, seed=5151))
        first = next(messages)
        passes_first = calls[0]
        last = next(messages)
        assert next(messages, None) is None
    assert set(first) == {tab.overlay, tab.heatmap, tab.beta_note, tab.base_map, tab.scissors_map, c.top5, tab.session}
    assert passes_first == 1 + 5 and calls[0] == passes_first + len(engine.TRADEOFF_BETAS)
    assert set(last) >= set(tab.explain_outputs())
    for component in (tab.overlay, tab.heatmap, tab.base_map, tab.scissors_map):
        assert last[component] == first[component]  # the same file: not drawn twice
    assert first[c.top5].value == last[c.top5].value == str(last[tab.summary]["target"]["index"])
    # what an API caller gets (the last message) is what the one-message handler returns
    whole = tab.on_explain(*values(image=str(ASSETS / "coffee.jpg"), q=5, seed=5151))
    assert whole[tab.summary]["scores"] == last[tab.summary]["scores"]
    np.testing.assert_array_equal(np.load(whole[tab.downloads][2]), np.load(last[tab.downloads][2]))


def test_the_pages_two_steps_give_what_explain_gives_and_the_zip_when_asked_for(tab, spec):
    """The page's Explain: step 1 (what is in view, the network work), step 2 (the rest, the β
    curve's pass, no zip while the details are closed); opening the details writes the zip.
    Together they show what /explain returns, the heatmap's ``.npy`` identical."""
    settings = values(image=str(ASSETS / "coffee.jpg"), q=5, seed=6161)
    with forward_calls(spec.model) as calls:
        first = tab.on_explain_first(*settings)
        assert calls[0] == 1 + 5
        rest = tab.on_explain_rest(first[tab.session], False)
        assert calls[0] == 1 + 5 + len(engine.TRADEOFF_BETAS)
    assert set(first) == set(tab.first_outputs()) and set(rest) <= set(tab.rest_outputs())
    assert not set(rest) & (set(tab.first_outputs()) - {tab.session})  # step 2 leaves β's maps alone
    assert {tab.clusters, tab.masked, tab.scores_chart, tab.tradeoff_chart, tab.summary} <= set(rest)
    overlay, npy = rest[tab.downloads]  # no zip yet
    assert overlay == first[tab.overlay] and npy.endswith(".npy")
    assert rest[tab.summary]["request"]["forward_passes"] == 1 + 5 + len(engine.TRADEOFF_BETAS)
    whole = tab.on_explain(*settings)
    np.testing.assert_array_equal(np.load(npy), np.load(whole[tab.downloads][2]))
    assert rest[tab.summary]["scores"] == whole[tab.summary]["scores"]
    opened = tab.open_details(rest[tab.session])
    bundle, *others = opened[tab.downloads]
    assert others == [overlay, npy] and opened[tab.details_open] is True
    with zipfile.ZipFile(bundle) as written, zipfile.ZipFile(whole[tab.downloads][0]) as expected:
        assert len(written.namelist()) == len(expected.namelist()) == 4 + 2 + 2 * 5 + 1 + 1
        assert {Path(n).suffix for n in written.namelist()} == {Path(n).suffix for n in expected.namelist()}
        np.testing.assert_array_equal(np.load(written.open(Path(npy).name)), np.load(npy))
    assert tab.open_details(opened[tab.session])[tab.downloads] == gr.update()  # written once
    # with the details open, step 2 writes the zip at once
    again = tab.on_explain_rest(tab.on_explain_first(*settings)[tab.session], True)
    assert Path(again[tab.downloads][0]).suffix == ".zip"


def test_step_two_draws_the_beta_moved_while_step_one_was_on_its_way(tab):
    """β moved between the two steps: step 2's curve, summary and ``.npy`` are for the new β."""
    first = tab.on_explain_first(*values(image=PAIR, q=4, seed=7171, beta=0.7))
    moved = tab.on_reweight(0.3, first[tab.session])
    rest = tab.on_explain_rest(moved[tab.session], False)
    entry = engine.RESULTS.get(first[tab.session].key)
    expected = entry.explained.result.reweight(0.3).heatmaps[0].numpy()
    np.testing.assert_allclose(np.load(rest[tab.downloads][1]), expected, atol=1e-6)
    assert rest[tab.summary]["beta"] == 0.3
    assert rest[tab.downloads][0] != first[tab.overlay]  # step 1's picture (β 0.7) not reused


def test_betas_effect_is_computed_once_per_class_not_per_beta_move(tab, monkeypatch):
    """β's note needs how much β acts (two recombinations): once per explanation and class,
    not again for step 2 or any β move; the note is the one computed afresh."""
    from clustercam.methods.cluster import ClusterCAMResult
    from clustercamapp import drawing

    calls, original = [], ClusterCAMResult.beta_effect
    monkeypatch.setattr(ClusterCAMResult, "beta_effect", lambda self, *a, **k: calls.append(1) or original(self, *a, **k))
    session = tab.on_explain(*values(image=PAIR, preset="gated", seed=8181))[tab.session]  # β barely acts: a note
    assert len(calls) == 1
    for beta in (0.2, 0.5, 0.9):
        moved = tab.on_reweight(beta, session)
        session = moved[tab.session]
    assert len(calls) == 1
    entry = engine.RESULTS.get(session.key)
    fresh = drawing.beta_note(drawing.view_result(entry.explained.result, None, 0.9))
    assert moved[tab.beta_note] == fresh != "" and len(calls) == 2
    other = 967 if int(entry.explained.result.targets[0]) != 967 else 285  # espresso, else Egyptian cat
    tab.on_retarget(str(other), session)  # another class: its own effect
    assert len(calls) == 3


def test_render_view_is_a_pure_function_of_the_explanation_and_the_view(tab):
    from clustercamapp import drawing

    out = tab.on_explain(*values(image=PAIR, q=4, seed=4343))
    entry = engine.RESULTS.get(out[tab.session].key)
    view = drawing.View(target=967, beta=0.5, colormap="viridis")  # espresso
    maps = drawing.render_view(entry, view, {"maps"})
    assert maps.overlay.size == entry.display.size and maps.clusters is None and maps.tradeoff_chart is None
    expected = entry.explained.result.retarget(967).reweight(0.5).heatmaps
    assert torch.equal(maps.result.heatmaps, expected)  # the library's heatmap, untouched
    again = drawing.render_view(entry, view, {"maps"})
    assert again.overlay.tobytes() == maps.overlay.tobytes()  # same explanation and view, same pictures
    every = drawing.render_view(entry, view, drawing.PARTS, entry.kept_confidence(967, (*engine.TRADEOFF_BETAS, 0.5)))
    assert len(every.clusters) == len(every.masked) == 4 and every.top5 and "β = 0.50" in every.tradeoff_markdown
    with pytest.raises(ValueError, match="kept confidences"):
        drawing.render_view(entry, view, {"curve"})
    with pytest.raises(ValueError, match="Unknown parts"):
        drawing.render_view(entry, view, {"zip"})


def test_a_new_image_clears_every_output(tab):
    cleared = tab.cleared()
    assert set(cleared) == set(tab.cleared_outputs())
    assert cleared[tab.overlay] is None and cleared[tab.clusters] == [] and cleared[tab.session] is None


def test_redraws_before_any_explanation_change_nothing(tab):
    nothing = {tab.session: None, tab.beta_note: say("explain.nothing_to_redraw")}
    assert tab.on_reweight(0.5, None) == nothing == tab.on_retarget("espresso", None)


def test_layers_follow_the_model(page, spec):
    default, rows = layers(MODEL)  # the /layers endpoint
    assert default == spec.default_layer and [row["name"] for row in rows] == spec.layer_names()
    update = page.controls.choose_model(MODEL, MODEL)
    layer = update[page.controls.layer]
    assert layer.value == "bn2" and all(" · " in label for label, _ in layer.choices)


def test_cache_serves_identical_requests_once_across_threads(tab, spec):
    """A classroom clicking one example together: one computation, identical answers."""
    results, errors = [], []

    def call() -> None:
        try:
            # a seed no other test uses: the request is new to the process-wide cache
            results.append(tab.on_explain(*values(image=str(ASSETS / "coffee.jpg"), q=4, seed=4242))[tab.summary])
        except Exception as error:  # pragma: no cover - reported below
            errors.append(error)

    with forward_calls(spec.model) as calls:
        threads = [threading.Thread(target=call) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert not errors and len(results) == 4
    # one forward pass, Q masked passes and the β curve's batched pass, for all four requests
    assert calls[0] == 1 + 4 + len(engine.TRADEOFF_BETAS)
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


def test_expired_explanation_asks_to_explain_again(tab):
    with pytest.raises(gr.Error, match="press Explain again"):
        tab.on_reweight(0.5, ExplainSession(key="gone", target=None, beta=0.5, colormap="viridis"))


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"image": None}, "No image yet"),
        ({"q": 1}, r"q: expects a whole number of clusters, 2 or more; got 1 \(below 2\)"),
        ({"q": 2.5}, r"q: expects a whole number .*got 2.5 \(not a whole number\)"),
        ({"layer": "blocks.0", "q": 17}, "Q = 17 is more than the 16 channels"),
        ({"beta": 1.5}, r"beta: expects a number from 0 to 1; got 1.5 \(above 1\)"),
        ({"model": "resnet9000"}, "Unknown model &#x27;resnet9000&#x27;|Unknown model 'resnet9000'"),
        ({"layer": "blocks.99"}, "Unknown layer"),
        ({"target": "unicorn"}, "Unknown class name"),
        ({"clustering": "dbscan"}, "clustering: expects 'kmeans' or 'spectral'; got 'dbscan'"),
        ({"preset": "fastest"}, "Unknown preset"),
        ({"colormap": "rainbow"}, "colormap: expects a colormap name; got 'rainbow'"),
        ({"similarity": "cosine", "clustering": "spectral"}, "similarity: expects 'euclidean', 'ssim', 'correlation'"),
    ],
)
def test_user_mistakes_become_gr_errors(tab, changes, message):
    with pytest.raises(gr.Error, match=message) as caught:
        tab.on_explain(*values(**changes))
    assert caught.value.duration is None  # stays until the user closes it


def test_error_messages_are_escaped_for_the_page(tab):
    """Gradio shows an error's message as HTML: angle brackets must survive as text."""
    with pytest.raises(gr.Error) as caught:
        tab.on_explain(*values(target="<urlopen error>"))
    assert "&lt;urlopen error&gt;" in caught.value.message and "<urlopen" not in caught.value.message


def test_bad_files_become_gr_errors(tab, tmp_path):
    not_image = tmp_path / "notes.jpg"
    not_image.write_bytes(b"this is not an image")
    with pytest.raises(gr.Error, match="not an image"):
        tab.on_explain(*values(image=str(not_image)))
    truncated = tmp_path / "truncated.jpg"
    data = (ASSETS / "chelsea.jpg").read_bytes()
    truncated.write_bytes(data[: len(data) // 3])
    with pytest.raises(gr.Error, match="truncated or corrupt"):
        tab.on_explain(*values(image=str(truncated)))
    gray = tmp_path / "gray.png"
    Image.new("RGB", (200, 200), (128, 128, 128)).save(gray)
    with pytest.raises(gr.Error, match=r"single flat colour|distinct|spatially constant"):  # degenerate feature maps
        tab.on_explain(*values(image=str(gray)))


def test_beta_out_of_range_and_unknown_class_on_redraws(tab, chelsea):
    with pytest.raises(gr.Error, match=r"beta: expects a number from 0 to 1; got -0.1 \(below 0\)"):
        tab.on_reweight(-0.1, chelsea[tab.session])
    with pytest.raises(gr.Error, match="beta: expects a number from 0 to 1; got None"):
        tab.on_reweight(None, chelsea[tab.session])
    with pytest.raises(gr.Error, match="Did you mean"):
        tab.on_retarget("egyptian", chelsea[tab.session])


def test_a_model_that_cannot_be_downloaded_is_put_back_and_the_app_keeps_working(monkeypatch, page, tab):
    import torchvision.models._api

    def offline(*_args, **_kwargs):
        raise urllib.error.URLError("<urlopen error no network>")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    monkeypatch.setattr(torchvision.models._api, "load_state_dict_from_url", offline)
    warnings = []
    monkeypatch.setattr(gr, "Warning", lambda message, **options: warnings.append((message, options)))
    c = page.controls
    update = c.choose_model("alexnet", MODEL)
    assert update == {c.model: MODEL}  # the dropdown goes back to the model in use
    (message, options), = warnings
    assert "could not be downloaded" in message and "&lt;urlopen error" in message and options["duration"] is None
    with pytest.raises(gr.Error, match="could not be downloaded"):
        tab.on_explain(*values(model="alexnet"))
    assert c.choose_model(MODEL, MODEL)[c.layer].value == "bn2"  # the embedded model still serves
    labels = dict((name, label) for label, name in c.model.choices)
    assert "needs the internet" in labels["alexnet"] and "needs the internet" not in labels[MODEL]


def test_compare_gives_costs_and_metrics_per_method():
    gallery, table = compare_tab.compare_listener(*values(), ["clustercam", "gradcam", "xgradcam", "reciprocam"])
    assert len(gallery) == 5 and gallery[0][1] == "Input · Egyptian cat"
    assert list(table["method"]) == ["Cluster-CAM", "Grad-CAM", "XGrad-CAM", "Recipro-CAM"]
    passes = dict(zip(table["method"], zip(table["forward"], table["backward"], strict=True), strict=True))
    assert passes["Cluster-CAM"] == (1 + DEFAULT_Q, 0) and passes["Grad-CAM"] == (1, 1)
    # Recipro-CAM: one full pass and a tail of h·w + 1 rows (bn2's 7 × 11 grid for the 352 × 224 input)
    tails = dict(zip(table["method"], table["of which tail rows"], strict=True))
    assert passes["Recipro-CAM"] == (1 + 7 * 11 + 1, 0) and tails == {"Cluster-CAM": 0, "Grad-CAM": 0, "XGrad-CAM": 0,
                                                                     "Recipro-CAM": 7 * 11 + 1}
    assert compare_tab.compare_passes(Settings.parse(image=CHELSEA), ["reciprocam"]) == 1 + 7 * 11 + 1 + 1  # + its scoring pass
    assert table["drop (%)"].between(0, 100).all() and set(table["increase"]) <= {"yes", "no"}
    y, o = table["Y"], table["O"]
    assert (y == y.iloc[0]).all()  # one image, one class: the same Y for every method
    assert np.allclose(table["drop (%)"], (100 * (y - o).clip(lower=0) / y).round(2), atol=0.02)
    for (_, caption), method, drop in zip(gallery[1:], table["method"], table["drop (%)"], strict=True):
        assert caption == f"{method} · drop {drop:.1f} %"


def test_compare_refuses_empty_or_unknown_method_lists():
    with pytest.raises(gr.Error, match="at least one method"):
        compare_tab.compare_listener(*values(), [])
    with pytest.raises(gr.Error, match=r"methods: expects a list of method names; got .*unknown magiccam"):
        compare_tab.compare_listener(*values(), ["magiccam"])


def test_method_metadata_lives_on_the_classes():
    assert compare_tab.method_choices()[0] == ("Cluster-CAM", "clustercam")
    assert "scorecam" not in compare_tab.default_methods(torch.device("cpu"))
    assert "scorecam" in compare_tab.default_methods(torch.device("cuda"))


def test_the_default_comparison_fits_the_study_budget(spec):
    from clustercamapp import lanes

    chosen = compare_tab.default_methods(spec.device, spec)
    assert "clustercam" in chosen and "gradcam" in chosen
    assert "ablationcam" not in chosen  # 1 + 1280 rows at bn2: over a CPU's 400 passes
    cost = lanes.compare_cost(spec, spec.default_layer, chosen, {})
    assert cost.total <= lanes.GATE.request_budget
    assert {"q", "beta", "sigma", "similarity"} <= set(ClusterCAM.option_names())


def overlay_differences(gallery) -> list[float]:
    pictures = [pixels(path) for path, _ in gallery]
    return [float(np.abs(a - b).mean()) for a, b in itertools.pairwise(pictures)]


def test_each_sweep_item_is_what_its_caption_says(monkeypatch, spec):
    monkeypatch.setattr(sweeps_tab, "SWEEP_Q_VALUES", (2, 3, 5))
    monkeypatch.setattr(sweeps_tab, "SWEEP_K_VALUES", (1, 2, 4))
    q_sweep = sweeps_tab.sweep_q_listener(*values(image=PAIR, q=9))  # the page's Q is swept over
    k_sweep = sweeps_tab.sweep_eigenvectors_listener(*values(image=PAIR, q=3))
    layer_sweep = sweeps_tab.sweep_layers_listener(*values(image=PAIR, q=3), 3)
    assert [caption.split(" · ")[0] for _, caption in q_sweep] == ["Q = 2", "Q = 3", "Q = 5"]
    assert sum(caption.endswith(" ★") for _, caption in q_sweep) == 1
    assert [caption.split(" · ")[0] for _, caption in k_sweep] == ["K = 1", "K = 2", "K = 4"]
    labels = {info.name: info.label for info in spec.layers()}
    chosen = [info.name for info in sweeps_tab.sweep_layer_selection(spec, 3)]
    assert [caption.split(" · base")[0] for _, caption in layer_sweep] == [labels[name] for name in chosen]
    # the captions are true: each item is the library's explanation with that Q, K or layer
    for (_, caption), q in zip(q_sweep, (2, 3, 5), strict=True):
        result = explain_image(spec, Path(PAIR).read_bytes(), layer="bn2", q=q).result[0]
        assert f"base {result.base_index} · scissors {result.scissors_index}" in caption
    for (_, caption), k in zip(k_sweep, (1, 2, 4), strict=True):
        result = explain_image(spec, Path(PAIR).read_bytes(), layer="bn2", q=3, clustering="spectral",
                               n_eigenvectors=k, sigma=0.2, theta=0.0, similarity="euclidean",
                               normalize_rows=False).result[0]
        assert f"base {result.base_index} · scissors {result.scissors_index}" in caption
    for gallery in (q_sweep, k_sweep, layer_sweep):  # and the maps differ from item to item
        assert min(overlay_differences(gallery)) > 0.5


def test_layer_selection_keeps_stage_ends_and_the_default(spec):
    layers = spec.layer_names()
    for count in (2, 4, 6, 12):
        chosen = [info.name for info in sweeps_tab.sweep_layer_selection(spec, count)]
        assert 2 <= len(chosen) <= count and spec.default_layer in chosen
        assert chosen == sorted(chosen, key=layers.index)  # forward order
        assert all(name.count(".") <= 1 for name in chosen)
    six = sweeps_tab.sweep_layer_selection(spec, 6)
    assert len({(info.height, info.width) for info in six}) == 5  # one per resolution, 112² … 7²
    with pytest.raises(ValueError, match="at least 2"):
        sweeps_tab.sweep_layer_selection(spec, 1)


def test_teaching_example_swaps_base_and_scissors():
    cat = learn.teach_listener("Egyptian cat")
    cup = learn.teach_listener("espresso")
    assert len(cat[1]) == learn.TEACH_Q and len(cup[2]) == learn.TEACH_Q
    assert "swap places" in cat[3] and "### Class: espresso" in cup[3]
    assert [caption for _, caption in cat[1]] != [caption for _, caption in cup[1]]
    with pytest.raises(gr.Error):
        learn.teach_listener("tabby")


#: The published order of each Explain endpoint's outputs (elem ids; the session last): API callers
#: read answers by position, so a redesign must keep it.
PUBLISHED_ORDERS = {
    "explain": ["overlay", "heatmap", "clusters", "masked", "scores-table", "summary-json", "downloads", "summary-md",
                "top5", "base-map", "scissors-map", "scores-chart", "beta-note", "target", "class-a", "class-b",
                "tradeoff-text", "tradeoff-chart"],
    "reweight": ["overlay", "heatmap", "summary-json", "downloads", "summary-md", "beta-note", "base-map",
                 "scissors-map", "tradeoff-text", "tradeoff-chart"],
    "explain_first": ["overlay", "heatmap", "beta-note", "base-map", "scissors-map", "top5"],
    "explain_rest": ["clusters", "masked", "scores-table", "summary-json", "downloads", "summary-md", "scores-chart",
                     "target", "class-a", "class-b", "tradeoff-text", "tradeoff-chart"],
}
PUBLISHED_ORDERS["retarget"] = PUBLISHED_ORDERS["explain"]


def test_each_explain_endpoint_answers_in_its_published_order(page):
    orders = {fn.api_name: [output.elem_id for output in fn.outputs] for fn in page.demo.fns.values()
              if fn.api_name in PUBLISHED_ORDERS}
    assert orders == {name: [*order, None] for name, order in PUBLISHED_ORDERS.items()}  # the session: no elem id


def test_the_beta_line_says_what_was_measured(tab):
    """Beside β: more, as much or less of the class kept than at β = 1, as the kept confidences say,
    and the share of the image the heat covers at both βs (measured, not assumed)."""
    from clustercamapp import drawing

    grid = {b: 0.5 for b in engine.TRADEOFF_BETAS}
    line = {kept: drawing.tradeoff_markdown("cat", 0.5, {**grid, 0.5: kept}, 0.9, (20.0, 40.0))
            for kept in (0.51, 0.6, 0.3)}
    assert "keeps as much of the class as at β = 1" in line[0.51] and "on 20 % of the image (β = 1: 40 %)" in line[0.51]
    assert "keeps more of the class" in line[0.6] and "keeps less of the class" in line[0.3]
    assert "scissors cut away" in line[0.3] and "scissors" not in line[0.51] + line[0.6]
    assert "faithful end" in drawing.tradeoff_markdown("cat", 1.0, grid, 0.9, (40.0, 40.0))
    half = torch.zeros(10, 10)
    half[:5] = 1.0
    assert drawing.heat_area(half) == 50.0 and drawing.heat_area(torch.zeros(4, 4)) == 0.0
    # on a real explanation the words follow its own figures
    out = tab.on_explain(*values(image=PAIR, q=4, seed=4545, beta=0.6))
    kept, shown = out[tab.summary]["confidence_kept"], out[tab.tradeoff_md]
    entry = engine.RESULTS.get(out[tab.session].key)
    area, area_1 = drawing.heat_areas(entry.explained.result.reweight(0.6))
    assert f"on {area:.0f} % of the image" in shown and f"β = 1: {area_1:.0f} %" in shown
    word = "more" if kept["beta"] > kept["beta_1"] + 0.02 else "less" if kept["beta"] < kept["beta_1"] - 0.02 else "as much"
    assert f"keeps {word} of the class" in shown


def test_the_confidence_kept_is_the_metric_on_the_image_masked_by_the_heatmap_shown(tab, spec):
    """The summary's kept confidence is p(class | X ∘ H(β)) for the heatmap the answer gives (its
    ``.npy``) and its class, computed here by the metrics on the image as the network sees it:
    after Explain, an off-grid β, another class and another β; and at β = 1 with the heatmap at β = 1."""
    from clustercam.metrics import explanation_scores

    x = spec.to_tensor(resize_for_network(load_image(PAIR), spec.input_size))

    def kept_by_the_metric(heatmap: np.ndarray, target: int) -> float:
        _, o = explanation_scores(spec.model, x, torch.from_numpy(heatmap)[None], torch.tensor([target]))
        return float(o[0])

    out = tab.on_explain(*values(image=PAIR, q=4, seed=5353, beta=0.6))
    answers = [out]
    for move in (lambda s: tab.on_reweight(0.85, s), lambda s: tab.on_retarget("espresso", s),
                 lambda s: tab.on_reweight(0.3, s)):
        answers.append(move(answers[-1][tab.session]))
    for answer in answers:
        summary, npy = answer[tab.summary], np.load(answer[tab.downloads][2])
        target = summary["target"]["index"]
        assert summary["confidence_kept"]["beta"] == pytest.approx(kept_by_the_metric(npy, target), abs=2e-6)
        at_one = tab.on_reweight(1.0, answer[tab.session])
        assert summary["confidence_kept"]["beta_1"] == pytest.approx(
            kept_by_the_metric(np.load(at_one[tab.downloads][2]), target), abs=2e-6)
