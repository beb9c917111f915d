"""Faster network work that changes no result: compiled graphs, channels-last, inference mode.

The compiled graphs (the classifier, and ``bn2``'s feature maps with the logits from one graph)
are built once for this module (about a minute of CPU the first time; inductor's cache makes
later runs quick) and every method's heatmap is compared with the eager model's.
"""

from __future__ import annotations

import threading

import pytest
import torch

import clustercam
from clustercam.methods import ClusterCAM, GradCAM, GroupCAM, ScoreCAM
from clustercam.network import Network, compiler_available, forward_images

pytestmark = pytest.mark.skipif(not compiler_available(), reason="torch.compile needs a C++ compiler")


@pytest.fixture(scope="module")
def compiled():
    """The embedded model with compiled graphs for the classifier and bn2 (checked on compile)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CLUSTERCAM_COMPILE", "1")
        spec = clustercam.load_model("efficientnet_lite0", device="cpu")
        thread = spec.network.compile(["bn2"], background=True)
        assert isinstance(thread, threading.Thread)
        assert spec.network.wait(timeout=900), spec.network.compile_error
    return spec


@pytest.fixture(scope="module")
def eager():
    return clustercam.load_model("efficientnet_lite0", device="cpu")


@pytest.fixture(scope="module")
def images(eager, chelsea, cat_and_coffee):
    return torch.cat([eager.preprocess(chelsea.resize((224, 224))), eager.preprocess(cat_and_coffee.resize((224, 224)))])


@pytest.mark.slow
@pytest.mark.parametrize(
    ("method", "layer", "options"),
    [
        (ClusterCAM, "bn2", {"q": 6}),
        (ClusterCAM, "bn2", {"preset": "spectral"}),
        (ClusterCAM, "blocks.4", {"q": 4}),  # a layer without its own graph: hook on the eager pass
        (GroupCAM, "bn2", {}),
        (ScoreCAM, "blocks.1", {"batch_size": 32}),
        (GradCAM, "bn2", {}),  # needs gradients: runs eagerly, unchanged
    ],
)
def test_compiled_heatmaps_equal_eager_ones(compiled, eager, images, method, layer, options):
    fast = method(compiled, layer, **options)(images)
    slow = method(eager, layer, **options)(images)
    assert torch.equal(fast.targets, slow.targets)
    assert (fast.heatmaps - slow.heatmaps).abs().max() <= 1e-4
    if method is ClusterCAM:
        assert fast.base_index.tolist() == slow.base_index.tolist() and torch.equal(fast.labels, slow.labels)


def test_the_compiled_passes_are_counted(compiled, images):
    assert compiled.network.compiled and compiled.network.compiled_layers() == ["bn2"]
    before = forward_images()
    ClusterCAM(compiled, "bn2", q=4)(images[:1])
    assert forward_images() - before == 1 + 4


def test_a_compiled_graph_that_disagrees_is_dropped(monkeypatch, eager):
    monkeypatch.setenv("CLUSTERCAM_COMPILE", "1")
    network = Network(eager.model, channels_last=False)
    monkeypatch.setattr(network, "_compile_classifier", lambda: (lambda x: eager.model(x) + 0.01))
    network.compile()
    assert not network.compiled and "differ" in network.compile_error
    probe = torch.zeros(1, 3, 224, 224)
    with torch.inference_mode():
        assert torch.equal(network.logits(probe), eager.model(probe))  # still answers, eagerly


def test_compilation_can_be_turned_off(monkeypatch, eager):
    monkeypatch.setenv("CLUSTERCAM_COMPILE", "0")
    network = Network(eager.model, channels_last=False)
    assert network.compile(["bn2"], background=True) is None and not network.compiled
    assert network.layer_and_logits("bn2", torch.zeros(1, 3, 224, 224)) is None


def test_channels_last_changes_nothing_but_the_layout(images):
    nchw = clustercam.load_model("efficientnet_lite0", device="cpu")
    nchw._network = Network(nchw.model, nchw.input_size, channels_last=False)
    nhwc = clustercam.load_model("efficientnet_lite0", device="cpu")
    assert nhwc.network.channels_last and nhwc.model.conv_stem.weight.is_contiguous(memory_format=torch.channels_last)
    assert not nchw.model.conv_stem.weight.is_contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        assert (nhwc.network.logits(images) - nchw.network.logits(images)).abs().max() < 1e-3
    a, b = ClusterCAM(nhwc, q=6)(images), ClusterCAM(nchw, q=6)(images)
    assert (a.heatmaps - b.heatmaps).abs().max() <= 1e-4


def test_serving_never_compiles_an_input_size_it_has_no_graph_for(compiled, eager, chelsea):
    """A non-square upload (224×336 here) runs eagerly instead of stalling on a new compilation."""
    from torch._dynamo.utils import counters

    x = eager.preprocess(chelsea)
    assert tuple(x.shape[-2:]) != (224, 224)
    graphs = counters["stats"]["unique_graphs"]
    fast, slow = ClusterCAM(compiled, "bn2", q=6)(x), ClusterCAM(eager, "bn2", q=6)(x)
    assert counters["stats"]["unique_graphs"] == graphs  # nothing was compiled
    assert (fast.heatmaps - slow.heatmaps).abs().max() <= 1e-4
