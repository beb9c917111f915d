"""Layer capture: hooks always removed, nothing kept, other threads ignored, memory flat."""

from __future__ import annotations

import gc
import threading

import psutil
import pytest
import torch

import clustercam
from clustercam.hooks import LayerCapture, hook_count, resolve_layer


def test_capture_records_the_layer_output_by_reference(spec, chelsea):
    x = spec.preprocess(chelsea)
    with LayerCapture(spec.model, "bn2") as capture, torch.inference_mode():
        logits = spec.model(x)
        assert capture.activations.shape == (1, 1280, 7, 11)
        assert capture.activations.device == x.device
        with capture.paused():
            spec.model(torch.zeros_like(x))
        assert capture.activations.abs().sum() > 0  # the paused pass did not overwrite it
    assert capture.activations is None and hook_count(spec.model) == 0
    assert logits.shape == (1, 1000)


def test_differentiable_capture_gives_gradients_of_the_layers_after_it(spec, chelsea):
    x = spec.preprocess(chelsea)
    with LayerCapture(spec.model, "bn2", differentiable=True) as capture, torch.enable_grad():
        logits = spec.model(x)
        gradients = capture.gradients(logits[:, 285])
    # after bn2 come global average pooling and the linear classifier: ∂logit/∂F = w_c / (h·w)
    weight = spec.model.classifier.weight[285]
    expected = (weight / (7 * 11)).view(1, -1, 1, 1).expand_as(gradients)
    assert torch.allclose(gradients, expected, atol=1e-7)


def test_hooks_are_removed_after_a_call_and_after_a_call_that_raised(spec, chelsea):
    x = spec.preprocess(chelsea)
    clustercam.ClusterCAM(spec, q=3)(x)
    assert hook_count(spec.model) == 0
    with pytest.raises(ValueError, match="Target class"):
        clustercam.ClusterCAM(spec, q=3)(x, targets=5000)  # raises inside the capture
    assert hook_count(spec.model) == 0
    with pytest.raises(RuntimeError, match="boom"), LayerCapture(spec.model, "bn2"):
        assert hook_count(spec.model) == 1
        raise RuntimeError("boom")
    assert hook_count(spec.model) == 0


def test_unknown_layer_lists_close_names(spec):
    with pytest.raises(ValueError, match="Closest names: bn2"):
        resolve_layer(spec.model, "bn3")
    with pytest.raises(ValueError, match="no layer named"):
        clustercam.ClusterCAM(spec, "not.a.layer")


def test_forward_passes_of_other_threads_are_not_captured(spec, chelsea):
    x = spec.preprocess(chelsea)
    other = torch.zeros(1, 3, 224, 224)
    with LayerCapture(spec.model, "bn2") as capture, torch.inference_mode():
        spec.model(x)
        thread = threading.Thread(target=lambda: spec.model(other))
        thread.start()
        thread.join()
        assert capture.activations.shape[-1] == 11  # still this thread's 7×11 maps


def test_fifty_calls_do_not_grow_memory(spec, chelsea):
    x = spec.preprocess(chelsea.resize((224, 224)))
    cam = clustercam.ClusterCAM(spec, q=4)
    process = psutil.Process()
    for _ in range(5):  # warm-up: allocator pools, lazy initialisation
        cam(x)
    gc.collect()
    before = process.memory_info().rss
    for _ in range(50):
        result = cam(x)
    del result
    gc.collect()
    grown = (process.memory_info().rss - before) / 2**20
    assert hook_count(spec.model) == 0
    assert grown < 40, f"RSS grew by {grown:.1f} MiB over 50 calls"
