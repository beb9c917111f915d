"""Recipro-CAM against its definition: values by hand on a tiny network, a literal re-implementation
on the embedded model (every position, the whole network, one masked copy at a time), the tail."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from clustercam.hooks import LayerCapture
from clustercam.imaging import resize_for_network
from clustercam.maps import minmax, relu_max, upsample
from clustercam.methods.reciprocam import GAUSSIAN_KERNEL, ReciproCAM, mosaic_rows
from clustercam.tail import Tail, replaced_output


def tiny_network() -> nn.Module:
    """``features`` passes its input on (the maps are the input), then the mean over positions and
    a linear layer with weights ``[[1, 0], [0, 1], [1, 1]]``: three classes from two channels."""
    linear = nn.Linear(2, 3, bias=False)
    with torch.no_grad():
        linear.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]))
    return nn.Sequential(nn.Identity(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), linear).eval()


def test_values_by_hand_on_a_tiny_network():
    # channel 0 = [[4, 0], [0, 8]], channel 1 = [[0, 4], [8, 0]]; the mean over the 4 positions of a
    # mosaic keeping one position is that position's vector / 4:
    # (0,0): (1, 0) -> logits (1, 0, 1); (0,1): (0, 1) -> (0, 1, 1); (1,0): (0, 2) -> (0, 2, 2);
    # (1,1): (2, 0) -> (2, 0, 2). p(class 0): e/(2e+1), 1/(1+2e), 1/(1+2e²), e²/(2e²+1).
    x = torch.tensor([[[[4.0, 0.0], [0.0, 8.0]], [[0.0, 4.0], [8.0, 0.0]]]])
    e = math.e
    scores = torch.tensor([[e / (2 * e + 1), 1 / (1 + 2 * e)], [1 / (1 + 2 * e**2), e**2 / (2 * e**2 + 1)]])
    low, high = scores.min(), scores.max()
    expected = (scores - low) / (high - low)  # [[0.887, 0.227], [0, 1]]
    result = ReciproCAM(tiny_network(), "0")(x, 0)
    torch.testing.assert_close(result.heatmaps[0], expected, atol=1e-6, rtol=0)
    assert result.forward_passes == 1 + 4 + 1 and result.extras["tail_rows"] == 5  # a full pass, 4 positions + 1 check
    assert result.extras["tail_mode"] == "tail"


def test_the_gaussian_variant_spreads_each_kept_vector_over_its_neighbours():
    maps = torch.arange(2 * 3 * 4, dtype=torch.float32).view(2, 3, 4) + 1
    rows = mosaic_rows(maps, torch.tensor([0, 5]), gaussian=True)
    corner, centre = rows[0], rows[1]  # positions (0, 0) and (1, 1)
    torch.testing.assert_close(corner[:, :2, :2], maps[:, 0, 0, None, None] * GAUSSIAN_KERNEL[1:, 1:])
    assert corner[:, 2:].abs().sum() == 0 and corner[:, :, 2:].abs().sum() == 0
    torch.testing.assert_close(centre[:, :3, :3], maps[:, 1, 1, None, None] * GAUSSIAN_KERNEL)
    assert centre[:, :, 3].abs().sum() == 0
    plain = mosaic_rows(maps, torch.tensor([5]))[0]
    assert torch.equal(plain[:, 1, 1], maps[:, 1, 1]) and plain.count_nonzero() == 2  # one position kept


def literal_reciprocam(spec, x: torch.Tensor, layer: str, target: int, gaussian: bool = False) -> torch.Tensor:
    """The definition, literally: for every position, the layer's maps with only that position kept
    (``gaussian``: its vector spread over the 3×3 kernel), the whole network run on that one copy,
    the class's softmax probability; min–max scaled, upsampled, scaled as every map."""
    model = spec.model
    with torch.inference_mode(), LayerCapture(model, layer) as capture:
        model(x)
        maps = capture.activations[0].clone()
    _, height, width = maps.shape
    module = dict(model.named_modules())[layer]
    kernel = GAUSSIAN_KERNEL if gaussian else torch.tensor([[0.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 0.0]])
    scores = torch.zeros(height, width)
    for i in range(height):
        for j in range(width):
            masked = torch.zeros_like(maps)
            for di in (-1, 0, 1):
                for dj in (-1, 0, 1):
                    if 0 <= i + di < height and 0 <= j + dj < width and kernel[di + 1, dj + 1] > 0:
                        masked[:, i + di, j + dj] = maps[:, i, j] * kernel[di + 1, dj + 1]
            with torch.inference_mode(), replaced_output(module, masked[None]):
                logits = model(x)
            scores[i, j] = logits.float().softmax(dim=1)[0, target]
    return relu_max(upsample(minmax(scores[None]), tuple(x.shape[-2:])))[0]


@pytest.fixture(scope="module")
def photograph(spec, cat_and_coffee):
    return spec.to_tensor(resize_for_network(cat_and_coffee, spec.input_size))


@pytest.mark.slow
@pytest.mark.parametrize("gaussian", [False, True])
def test_agrees_with_a_literal_reimplementation_on_the_embedded_model(spec, photograph, gaussian):
    espresso = spec.class_index("espresso")
    result = ReciproCAM(spec, "bn2", gaussian=gaussian, batch_size=16)(photograph, espresso)
    expected = literal_reciprocam(spec, photograph, "bn2", espresso, gaussian)
    assert (result.heatmaps[0] - expected).abs().max() <= 1e-5
    positions = result.extras["tail_rows"] - 1  # the image's own row, then one per position
    # one pass carries the image's own row and 15 positions; the other positions go 16 at a time
    assert result.forward_passes == 1 + positions + 1 and result.extras["head_passes"] == 1 + math.ceil((positions - 15) / 16)
    assert result[0].heatmap[:, : photograph.shape[-1] // 2].sum() < result[0].heatmap.sum() / 2  # the cup is right


def test_the_tail_on_the_unmasked_maps_gives_the_networks_logits(spec, photograph):
    with torch.inference_mode(), LayerCapture(spec.model, "bn2") as capture:
        logits = spec.model(photograph)
        maps = capture.activations.clone()
    tail = Tail(spec.network, spec.model.get_submodule("bn2"))
    with torch.inference_mode():
        again = tail.logits(photograph, maps)
        full = tail.logits(photograph, maps.repeat(2, 1, 1, 1), full=True)
    assert (again[0] - logits[0]).abs().max() <= 1e-5 and (full - logits).abs().max() <= 1e-5


def test_chunks_modes_and_batches_give_the_same_maps_and_honest_counts(spec, photograph, chelsea):
    cat = spec.to_tensor(resize_for_network(chelsea.resize(photograph.shape[-1:-3:-1]), spec.input_size))
    batch = torch.cat([photograph, cat])
    one = ReciproCAM(spec, "bn2", batch_size=64)(batch)
    small = ReciproCAM(spec, "bn2", batch_size=9)(batch)
    full = ReciproCAM(spec, "bn2", batch_size=64, mode="full")(batch)
    assert (one.heatmaps - small.heatmaps).abs().max() <= 1e-5 and (one.heatmaps - full.heatmaps).abs().max() <= 1e-5
    _, _, height, width = ReciproCAM(spec, "bn2").forward(photograph, None).activations.shape
    positions = height * width
    assert one.extras["tail_rows"] == 2 * (positions + 1) and one.forward_passes == 2 * (1 + positions + 1)
    # each image once through the layers before bn2, its first 63 positions riding along, then 64 at a time
    assert one.extras["head_passes"] == 2 * (1 + math.ceil((positions - 63) / 64))
    assert full.extras["tail_mode"] == "full" and full.forward_passes == 2 + 2 * positions
    assert ReciproCAM.planned_passes(1280, height=height, width=width) == (1 + positions + 1, 0)
    assert ReciproCAM.planned_passes(1280, height=height, width=width, mode="full") == (1 + positions, 0)
    with pytest.raises(ValueError, match="height and width"):
        ReciproCAM.planned_passes(1280)


class JoinsTheInput(nn.Module):
    """A tail that concatenates the layer's maps with the network's input: it cannot take ``k`` rows
    against one image, so Recipro-CAM falls back to full re-runs."""

    def __init__(self):
        super().__init__()
        self.features = nn.Conv2d(2, 2, 1)
        self.head = tiny_network()[1:]
        self.mix = nn.Conv2d(4, 2, 1)

    def forward(self, x):
        maps = self.features(x)
        return self.head(self.mix(torch.cat([maps, x], dim=1)))


def test_a_tail_that_cannot_take_the_rows_falls_back_to_full_reruns():
    torch.manual_seed(0)
    model = JoinsTheInput().eval()
    x = torch.rand(1, 2, 3, 3)
    auto = ReciproCAM(model, "features")(x, 1)
    full = ReciproCAM(model, "features", mode="full")(x, 1)
    assert auto.extras["tail_mode"] == "full" and "RuntimeError" in auto.extras["tail_fallback_reason"]
    assert torch.allclose(auto.heatmaps, full.heatmaps) and auto.forward_passes == full.forward_passes == 1 + 9
    with pytest.raises(Exception, match="tail failed its check"):
        ReciproCAM(model, "features", mode="tail")(x, 1)
