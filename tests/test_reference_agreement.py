"""Agreement with the reference library pytorch-grad-cam (grad-cam 1.5.7) on real photographs.

Both libraries explain the embedded EfficientNet-Lite0 for the same class; the maps are compared
after min–max normalising both at the input size. pytorch-grad-cam normalises at the layer's
resolution and then resizes with OpenCV, this library upsamples and then scales; both are affine
rescalings around the same bilinear upsampling, so after renormalisation they must coincide
(max abs difference ≤ 1e-3).

Configuration notes (each an intended difference, matched here by choosing the configuration):

* pytorch-grad-cam needs the target layer's output to require grad; the zoo freezes parameters,
  so it gets a copy of the model with ``requires_grad_(True)``.
* Score-CAM: pytorch-grad-cam weights the maps by the softmax *across channels* of the masked
  inputs' target *logits* and upsamples masks with ``align_corners=True``; ours defaults to the
  paper's eq. 8 (the target's softmax probability) and ``align_corners=False``, so the comparison
  uses ``ScoreCAM(weighting="softmax", align_corners=True)``. The softmax over logits is so peaked
  that the other upsampling changes which channels dominate, hence no agreement is asserted for
  the default configuration.
* Ablation-CAM: pytorch-grad-cam's ``AblationLayer`` writes 0 into an ablated map only when the
  batch's minimum activation is 0 (after a ReLU/ReLU6); elsewhere it writes ``min − k·1e7``
  (:func:`test_reference_ablation_value_is_not_zero_at_layers_with_negative_outputs`). Eq. 7 and
  ours use 0, so the comparison uses a post-ReLU6 layer, where both zero.
* Speed: pytorch-grad-cam's Score-CAM and Ablation-CAM re-run the whole network once per channel
  (about a minute for the 1280 maps of ``bn2`` on two CPU cores), so those two are compared at
  earlier layers with few channels (``blocks.5``: 192 maps; ``blocks.2.0.bn2``: 144 maps after a
  ReLU6) on 112×112 inputs. The gradient methods are compared at ``bn2`` and ``blocks.5`` at
  224×224.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import skimage.data
import torch
from PIL import Image
from torch import nn

from clustercam.maps import minmax
from clustercam.methods import AblationCAM, GradCAM, GradCAMPlusPlus, ScoreCAM, XGradCAM

pgc = pytest.importorskip("pytorch_grad_cam")
from pytorch_grad_cam.ablation_layer import AblationLayer  # noqa: E402
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget  # noqa: E402

pytestmark = pytest.mark.slow
TOLERANCE = 1e-3
PHOTOS = ("chelsea", "coffee")


@pytest.fixture(scope="module")
def reference_model(spec) -> nn.Module:
    """The same network with parameters that require grad, as pytorch-grad-cam expects."""
    return copy.deepcopy(spec.model).requires_grad_(True).eval()


def photo(spec, name: str, size: int) -> torch.Tensor:
    image = Image.fromarray(getattr(skimage.data, name)()).resize((size, size), Image.BILINEAR)
    return spec.to_tensor(image)


def reference_map(cam_class, model: nn.Module, layer: str, inputs: torch.Tensor, target: int, **options) -> torch.Tensor:
    module = dict(model.named_modules())[layer]
    batch_size = options.pop("batch_size", None)
    with cam_class(model, [module], **options) as cam:
        if batch_size is not None:
            cam.batch_size = batch_size
        maps = cam(inputs.clone(), targets=[ClassifierOutputTarget(target)])
    return torch.from_numpy(np.asarray(maps[0], dtype=np.float64))


def assert_same_map(ours: torch.Tensor, theirs: torch.Tensor, label: str) -> None:
    ours, theirs = minmax(ours.double()), minmax(theirs.double())
    assert ours.shape == theirs.shape
    assert float(ours.max()) == 1.0 and float(theirs.max()) == 1.0, f"{label}: a map is constant"
    difference = float((ours - theirs).abs().max())
    assert difference <= TOLERANCE, f"{label}: max abs difference {difference:.2e}"


@pytest.mark.parametrize("name", PHOTOS)
@pytest.mark.parametrize("layer", ["bn2", "blocks.5"])
@pytest.mark.parametrize(
    ("ours", "theirs"),
    [(GradCAM, "GradCAM"), (GradCAMPlusPlus, "GradCAMPlusPlus"), (XGradCAM, "XGradCAM")],
    ids=["gradcam", "gradcam++", "xgradcam"],
)
def test_gradient_methods_agree(spec, reference_model, name, layer, ours, theirs):
    inputs = photo(spec, name, 224)
    result = ours(spec, layer)(inputs)
    reference = reference_map(getattr(pgc, theirs), reference_model, layer, inputs, int(result.targets[0]))
    assert_same_map(result.heatmaps[0], reference, f"{ours.name} {layer} {name}")


@pytest.mark.parametrize("name", PHOTOS)
def test_scorecam_softmax_weighting_agrees(spec, reference_model, name):
    inputs, layer = photo(spec, name, 112), "blocks.5"
    result = ScoreCAM(spec, layer, weighting="softmax", align_corners=True, batch_size=64)(inputs)
    assert result.extras["unique_masks"] == [192]  # a linear layer: no constant or repeated maps
    reference = reference_map(pgc.ScoreCAM, reference_model, layer, inputs, int(result.targets[0]), batch_size=64)
    assert_same_map(result.heatmaps[0], reference, f"scorecam {name}")


@pytest.mark.parametrize("name", PHOTOS)
def test_ablationcam_agrees_at_a_relu_layer(spec, reference_model, name):
    inputs, layer = photo(spec, name, 112), "blocks.2.0.bn2"
    result = AblationCAM(spec, layer, batch_size=64)(inputs)
    assert result.extras["ablation_mode"] == "tail"
    reference = reference_map(
        pgc.AblationCAM, reference_model, layer, inputs, int(result.targets[0]),
        ablation_layer=AblationLayer(), batch_size=64,
    )
    assert_same_map(result.heatmaps[0], reference, f"ablationcam {name}")


def test_reference_ablation_value_is_not_zero_at_layers_with_negative_outputs():
    """The documented difference: pytorch-grad-cam's AblationLayer fills ablated maps with
    ``min − 1e7`` (and lower for each further row) when the activations can be negative."""
    activations = torch.tensor([[[[-1.0, 2.0]], [[0.5, 3.0]]]])  # 1 image, 2 maps of 1×2
    layer = AblationLayer()
    layer.indices = np.array([0, 1])
    layer.set_next_batch(input_batch_index=0, activations=activations, num_channels_to_ablate=2)
    ablated = layer(None)
    assert float(ablated[0, 0].max()) < -1e6 and float(ablated[1, 1].max()) < float(ablated[0, 0].max())
