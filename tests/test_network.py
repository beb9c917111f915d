"""Faster network work that changes no result: compiled graphs, channels-last, inference mode.

The compiled graph (``bn2``'s feature maps and the logits, an ahead-of-time package) is built once
(a minute or two of CPU in a process of its own the first time; later runs load the package from
``~/.cache/clustercam``) and every method's heatmap is compared with the eager model's. This
module runs with compilation on (the rest of the suite runs eagerly; ``tests/test_startup.py``
runs the whole app as served).
"""

from __future__ import annotations

import threading

import pytest
import torch

import clustercam
from clustercam import network as network_module
from clustercam.methods import ClusterCAM, GradCAM, GroupCAM, ScoreCAM
from clustercam.network import Network, compiler_available, forward_images

pytestmark = pytest.mark.skipif(not compiler_available(), reason="torch.compile needs a C++ compiler")


@pytest.fixture(scope="module")
def compiled():
    """The embedded model with compiled graphs for the classifier and bn2 (checked on compile), for
    square inputs and for 4:3 landscape photographs (224×288)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CLUSTERCAM_COMPILE", "1")
        spec = clustercam.load_model("efficientnet_lite0", device="cpu")
        thread = spec.network.compile(["bn2"], background=True, shapes=[(224, 224), LANDSCAPE])
        assert isinstance(thread, threading.Thread)
        assert spec.network.wait(timeout=900), spec.network.compile_error
    return spec


#: A 4:3 landscape photograph's input shape (height, width): one of the app's common shapes.
LANDSCAPE = (224, 288)


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


def test_the_compiled_graphs_were_built_and_serve_the_calls(compiled, images):
    """Counters prove it: the graph (bn2's maps and the logits, which also serves the masked passes)
    was built and checked, and Cluster-CAM's passes went through it (1 layer-and-logits pass + one
    batched pass of the Q masked inputs), none through the eager model."""
    network = compiled.network
    assert network.compiled and network.compiled_layers() == ["bn2"] and network.graphs_built == 2
    assert network.compiled_shapes() == ["224x224", "224x288"]
    before, calls = forward_images(), dict(network.calls)
    ClusterCAM(compiled, "bn2", q=4)(images[:1])
    assert forward_images() - before == 1 + 4
    assert network.calls["compiled"] - calls["compiled"] == 2  # one layer pass, one batched masked pass
    assert network.calls["eager"] == calls["eager"]
    status = network.status()
    assert status["compiled"] and status["compile_error"] is None and not status["compiling"]


def test_a_compiled_graph_that_disagrees_is_dropped(monkeypatch, eager, tmp_path):
    monkeypatch.setenv("CLUSTERCAM_COMPILE", "1")
    network = Network(eager.model, channels_last=False)
    package = tmp_path / "graph.pt2"
    package.write_bytes(b"a package")
    monkeypatch.setattr(network_module, "package_path", lambda *_: package)
    monkeypatch.setattr(network_module, "load", lambda _: (lambda x: {"logits": eager.model(x) + 0.01}))
    network.compile()
    assert not network.compiled and "differ" in network.compile_error and network.graphs_built == 0
    probe = torch.zeros(1, 3, 224, 224)
    with torch.inference_mode():
        assert torch.equal(network.logits(probe), eager.model(probe))  # still answers, eagerly
    assert network.calls == {"compiled": 0, "eager": 1}


def test_the_private_reference_has_no_hook(eager):
    """A copy taken while a request holds a capture on the served model carries no hook."""
    from clustercam.hooks import LayerCapture, hook_count

    network = Network(eager.model, channels_last=False)
    with LayerCapture(eager.model, "bn2"):
        private = network._private_copy(threading.Lock())
        assert hook_count(eager.model) == 1 and hook_count(private) == 0


def test_compilation_can_be_turned_off(monkeypatch, eager):
    monkeypatch.setenv("CLUSTERCAM_COMPILE", "0")
    network = Network(eager.model, channels_last=False)
    assert network.compile(["bn2"], background=True) is None and not network.compiled
    assert network.layer_and_logits("bn2", torch.zeros(1, 3, 224, 224)) is None


def test_channels_last_changes_nothing_but_the_layout(images, monkeypatch):
    monkeypatch.setenv("CLUSTERCAM_CHANNELS_LAST", "0")
    nchw = clustercam.load_model("efficientnet_lite0", device="cpu")
    monkeypatch.setenv("CLUSTERCAM_CHANNELS_LAST", "1")
    nhwc = clustercam.load_model("efficientnet_lite0", device="cpu")
    assert nhwc.network.channels_last and nhwc.model.conv_stem.weight.is_contiguous(memory_format=torch.channels_last)
    assert not nchw.network.channels_last and not nchw.model.conv_stem.weight.is_contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        assert (nhwc.network.logits(images) - nchw.network.logits(images)).abs().max() < 1e-3
    a, b = ClusterCAM(nhwc, q=6)(images), ClusterCAM(nchw, q=6)(images)
    assert (a.heatmaps - b.heatmaps).abs().max() <= 1e-4


def test_a_big_batch_runs_in_chunks_so_that_other_threads_get_their_turn(compiled, images, monkeypatch):
    """A compiled graph holds the interpreter's lock while it runs: a batch of 11 runs as 4 + 4 + 3
    images (the server's other threads run between two), with the logits of the whole batch."""
    from clustercam.network import COMPILED_CHUNK

    network, key = compiled.network, ("bn2", (224, 224))
    graph, sizes = network._graphs[key], []

    def spy(x):
        sizes.append(int(x.shape[0]))
        return graph(x)

    monkeypatch.setattr(network, "_graphs", {**network._graphs, key: spy})
    x = images[:1].repeat(11, 1, 1, 1)
    with torch.inference_mode():
        got = network.logits(x)
    assert COMPILED_CHUNK == 4 and sizes == [4, 4, 3]
    with torch.inference_mode():
        whole = graph(network._layout(x))["logits"]
    assert got.shape == whole.shape and (got - whole).abs().max() <= 1e-4


def test_a_photograph_of_a_common_shape_runs_compiled_and_equals_eager(compiled, eager, cat_and_coffee):
    """A 4:3 landscape photograph (224×288 at the network) goes through its own graph: both passes
    compiled, the heatmap as the eager model's."""
    from clustercam.imaging import common_shapes

    assert LANDSCAPE in common_shapes(224)
    x = eager.preprocess(cat_and_coffee.resize((400, 300)))
    assert tuple(x.shape[-2:]) == LANDSCAPE
    calls = dict(compiled.network.calls)
    fast, slow = ClusterCAM(compiled, "bn2", q=6)(x), ClusterCAM(eager, "bn2", q=6)(x)
    assert compiled.network.calls["compiled"] - calls["compiled"] == 2 and compiled.network.calls["eager"] == calls["eager"]
    assert (fast.heatmaps - slow.heatmaps).abs().max() <= 1e-4 and torch.equal(fast.labels, slow.labels)


def test_serving_never_compiles_an_input_size_it_has_no_graph_for(compiled, eager, chelsea):
    """An upload of a shape without a graph (224×352 here: built by the app, not by this test) runs
    eagerly: no compilation in the serving process."""
    from torch._dynamo.utils import counters

    x = eager.preprocess(chelsea)
    assert tuple(x.shape[-2:]) not in ((224, 224), LANDSCAPE)
    graphs, calls = counters["stats"]["unique_graphs"], dict(compiled.network.calls)
    fast, slow = ClusterCAM(compiled, "bn2", q=6)(x), ClusterCAM(eager, "bn2", q=6)(x)
    assert counters["stats"]["unique_graphs"] == graphs  # nothing was compiled
    assert compiled.network.calls["compiled"] == calls["compiled"]  # and the graph was not used
    assert (fast.heatmaps - slow.heatmaps).abs().max() <= 1e-4


COMPILE_TINY = """
import json, os, sys
os.environ["TORCHINDUCTOR_CACHE_DIR"] = sys.argv[1] + "/inductor"
os.environ["CLUSTERCAM_COMPILE_DIR"] = sys.argv[1]
os.environ["CLUSTERCAM_COMPILE"] = "1"
import torch
from torch import nn
from clustercam.network import Network
torch.manual_seed(0)
model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10)).eval()
network = Network(model, input_size=32, channels_last=False)
network.compile()
with torch.inference_mode():
    network.logits(torch.randn(2, 3, 32, 32))
print(json.dumps({"compiled": network.compiled, "evicted": network.evicted, "error": network.compile_error,
                  "calls": network.calls}))
"""


@pytest.mark.slow
def test_a_truncated_artefact_is_evicted_and_rebuilt_on_the_next_start(tmp_path):
    """A server killed while compiling leaves a truncated package: the next start evicts it, builds
    the graph again and serves it (it used to serve eagerly for good)."""
    import json
    import subprocess
    import sys

    def start() -> dict:
        done = subprocess.run([sys.executable, "-c", COMPILE_TINY, str(tmp_path)], capture_output=True, text=True, timeout=900)
        assert done.returncode == 0, done.stderr[-2000:]
        return json.loads(done.stdout.strip().splitlines()[-1])

    def truncate(pattern: str) -> int:
        files = list(tmp_path.rglob(pattern))
        for path in files:
            path.write_bytes(path.read_bytes()[:64])  # what a kill in the middle of a write leaves
        return len(files)

    first = start()
    assert first["compiled"] and first["evicted"] == [] and first["calls"] == {"compiled": 1, "eager": 0}
    assert truncate("*.pt2") == 1
    second = start()
    assert second["compiled"], second["error"]
    assert second["evicted"] and second["calls"] == {"compiled": 1, "eager": 0}
    assert all(path.stat().st_size > 64 for path in tmp_path.rglob("*.pt2"))


def test_evict_removes_the_cache_folder_a_failed_build_names(tmp_path, monkeypatch):
    folder = tmp_path / "inductor"
    broken = folder / "ab" / "cabc.so"
    broken.parent.mkdir(parents=True)
    broken.write_bytes(b"\x7fELF")
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(folder))
    assert network_module.evict("ImportError: nothing of ours here") == []
    assert folder.exists()
    assert network_module.evict(f"ImportError: {broken}: file too short") == [str(folder)]
    assert not folder.exists()


def test_a_graph_is_kept_only_if_its_feature_maps_and_logits_match_the_eager_model(eager):
    spec = eager
    """The check every compiled graph passes before it serves: feature maps and logits both (a
    graph with the right logits but other maps would give other clusters, hence other heatmaps)."""
    import copy

    from clustercam.hooks import LayerCapture
    from clustercam.network import CompileMismatch

    reference = copy.deepcopy(spec.model).eval()

    def graph(maps_shift: float = 0.0, logits_shift: float = 0.0):
        def run(x):
            with LayerCapture(reference, "bn2") as capture:
                logits = reference(x)
                maps = capture.activations
            return {"layer": maps + maps_shift, "logits": logits + logits_shift}

        return run

    spec.network._check(graph(), reference, "bn2", (224, 224))  # the same: kept
    with pytest.raises(CompileMismatch, match="feature maps of bn2"):
        spec.network._check(graph(maps_shift=0.01), reference, "bn2", (224, 224))
    with pytest.raises(CompileMismatch, match="logits"):
        spec.network._check(graph(logits_shift=0.01), reference, "bn2", (224, 224))
