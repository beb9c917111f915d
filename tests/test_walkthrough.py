"""The "Step by step" tab's handlers on the embedded model and a real photograph: the five
screens say what the explanation computed, and β moves the heatmap without a forward pass."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from clustercamapp import engine
from clustercamapp.settings import SETTING_NAMES

from .conftest import ASSETS
from .test_app_handlers import forward_calls, values

PAIR = str(ASSETS / "cat_and_coffee.jpg")


@pytest.fixture(scope="module")
def page():
    import app

    return app.page


@pytest.fixture(scope="module")
def walked(page):
    return page.walk.on_walk(*values(image=PAIR, q=6, seed=606))


def test_the_five_screens_tell_what_was_computed(page, walked):
    walk, explain = page.walk, page.explain
    summary = explain.on_explain(*values(image=PAIR, q=6, seed=606))[explain.summary]  # the same, from the cache
    texts = [walked[sentence] for sentence in walk.sentences]
    assert "**1280 feature maps**" in texts[0] and "layer `bn2`" in texts[0]
    assert "**grouped into 6 clusters**" in texts[1]
    low, high = min(summary["cluster_sizes"]), max(summary["cluster_sizes"])
    assert f"({low} to {high} maps each)" in texts[1]
    name, scores = summary["target"]["name"], summary["scores"]
    assert f"**{name}** on that masked image: from {min(scores):.3f} to {max(scores):.3f}" in texts[2]
    assert f"(cluster {summary['base']['cluster']}, {max(scores):.3f}, solid" in texts[3]
    assert f"(cluster {summary['scissors']['cluster']}, {min(scores):.3f}, dashed" in texts[3]
    assert "β·B − (1 − β)·S (eq. 22)" in texts[4] and "β = 0.8" in texts[4]
    assert [caption for _, caption in walked[walk.clusters]] == [caption for _, caption in
                                                                  explain.on_explain(*values(image=PAIR, q=6, seed=606))[explain.clusters]]
    assert len(walked[walk.masked]) == 6 and walked[walk.walk].selected == 0


def test_step_one_shows_the_most_active_feature_maps(page, walked):
    entry = engine.RESULTS.get(walked[page.walk.session]["key"])
    activations, labels = entry.explained.result.activations[0], entry.explained.result.labels[0]
    strongest = activations.float().mean(dim=(-2, -1)).argsort(descending=True)[:12].tolist()
    assert [caption for _, caption in walked[page.walk.features]] == [
        f"channel {c} · cluster {int(labels[c])}" for c in strongest
    ]


def test_beta_moves_the_slider_heatmap_without_a_forward_pass(page, walked, spec):
    walk = page.walk
    photo, overlay = walked[walk.slider]
    assert Image.open(photo).size == Image.open(overlay).size
    with forward_calls(spec.model) as calls:
        moved = walk.on_beta(0.3, walked[walk.session])
    assert calls[0] == 0  # β on the curve's grid: known already
    new_photo, new_overlay = moved[walk.slider]
    assert np.asarray(Image.open(new_photo)).tolist() == np.asarray(Image.open(photo)).tolist()
    assert np.abs(np.asarray(Image.open(new_overlay), dtype=int) - np.asarray(Image.open(overlay), dtype=int)).mean() > 0.2  # 0.76 here
    assert "Confidence kept at β = 0.30" in moved[walk.kept] and "β = 0.3" in moved[walk.sentences[4]]


def test_walking_through_an_image_already_explained_costs_no_pass(page, walked, spec):
    with forward_calls(spec.model) as calls:
        again = page.walk.on_walk(*values(image=PAIR, q=6, seed=606))
    assert calls[0] == 0 and again[page.walk.session]["key"] == walked[page.walk.session]["key"]


def test_beta_before_a_walk_asks_for_one(page):
    import gradio as gr

    with pytest.raises(gr.Error, match="Walk through my image"):
        page.walk.on_beta(0.5, None)
    assert len(SETTING_NAMES) == len(values())
