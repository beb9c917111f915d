"""The baseline CAMs (eqs. 3–9 and Group-CAM) on the embedded EfficientNet-Lite0 and a real photo.

``skimage.data.chelsea()`` is a close-up of a cat: its face fills the left and centre of the frame,
and the right-hand edge (about the last sixth of the width) is background.
"""

from __future__ import annotations

import pytest
import skimage.data
import torch
import torch.nn.functional as F
from torch import nn

import clustercam
from clustercam.hooks import LayerCapture, hook_count
from clustercam.maps import masked_probabilities, minmax, upsample
from clustercam.methods import (
    METHODS,
    AblationCAM,
    GradCAM,
    GradCAMPlusPlus,
    GroupCAM,
    ScoreCAM,
    SmoothGradCAMPlusPlus,
    XGradCAM,
)

BASELINES = ["gradcam", "gradcam++", "smoothgradcam++", "xgradcam", "ablationcam", "scorecam", "groupcam"]
TABBY = 281  # second-ranked class of chelsea (top-1 is 285, Egyptian cat)


@pytest.fixture(scope="module")
def cat(spec) -> torch.Tensor:
    """chelsea as the network sees it: 1×3×224×352."""
    return spec.preprocess(skimage.data.chelsea())


@pytest.fixture(scope="module")
def small_cat(cat) -> torch.Tensor:
    """chelsea at half resolution (1×3×112×176), for the methods with hundreds of passes."""
    return F.interpolate(cat, size=(112, 176), mode="bilinear", antialias=True, align_corners=False)


def make(name: str, spec) -> clustercam.BaseCAM:
    options = {"smoothgradcam++": {"n_samples": 8}}.get(name, {})
    return METHODS[name](spec, **options)


@pytest.fixture(scope="module")
def results(spec, cat, small_cat) -> dict[str, tuple[torch.Tensor, clustercam.CAMResult]]:
    """Each baseline at the default layer ``bn2``; Score-CAM (hundreds of passes) at half size."""
    out = {}
    for name in BASELINES:
        inputs = small_cat if name == "scorecam" else cat
        out[name] = (inputs, make(name, spec)(inputs))
        assert hook_count(spec.model) == 0, f"{name} left a hook on the model"
    return out


def test_registry_names():
    assert next(iter(METHODS)) == "clustercam"
    assert set(BASELINES) <= set(METHODS)
    assert clustercam.get_method("Grad-CAM++") is GradCAMPlusPlus
    assert clustercam.get_method("smooth_gradcam++") is SmoothGradCAMPlusPlus


def layer_activations(spec, inputs: torch.Tensor, layer: str) -> torch.Tensor:
    with LayerCapture(spec.model, layer) as capture, torch.inference_mode():
        spec.model(inputs)
        return capture.activations.clone()


@pytest.mark.parametrize("name", BASELINES)
def test_heatmap_is_a_valid_map_on_the_cat(name, results):
    inputs, result = results[name]
    heatmap = result.heatmaps
    height, width = inputs.shape[-2:]
    assert heatmap.shape == (1, height, width)
    assert torch.isfinite(heatmap).all()
    assert heatmap.min() >= 0 and heatmap.max() == pytest.approx(1.0)
    assert int(result.targets[0]) == 285  # Egyptian cat, the top-1 class
    # The cat: the central box from the forehead to the chin, ears to the right cheek.
    box = heatmap[0, int(0.1 * height) : int(0.95 * height), int(0.05 * width) : int(0.75 * width)]
    share = float(box.sum() / heatmap.sum())
    uniform_share = box.numel() / heatmap[0].numel()
    assert share > 1.1 * uniform_share, f"{name}: {share:.3f} of the mass in the cat box (uniform {uniform_share:.3f})"
    # The background strip at the right edge gets less than its uniform share.
    strip = heatmap[0, :, int(0.85 * width) :]
    assert float(strip.sum() / heatmap.sum()) < strip.numel() / heatmap[0].numel()


def test_pass_counts(spec, results):
    channels = 1280
    for name in ("gradcam", "gradcam++", "xgradcam"):
        assert (results[name][1].forward_passes, results[name][1].backward_passes) == (1, 1)
    smooth = results["smoothgradcam++"][1]
    assert (smooth.forward_passes, smooth.backward_passes) == (1 + 8, 8)
    group = results["groupcam"][1]
    assert group.extras["groups_scored"] == [32]  # no constant group map at bn2
    assert (group.forward_passes, group.backward_passes) == (2 + 32, 1)
    ablation = results["ablationcam"][1]
    assert ablation.extras["ablation_mode"] == "tail", ablation.extras["tail_fallback_reason"]
    assert (ablation.forward_passes, ablation.backward_passes) == (1 + channels + 1, 0)
    assert ablation.extras["head_passes"] == channels // 64  # one per chunk of 64 maps
    # Score-CAM: one pass per distinct normalised map (the ReLU6 output has many constant maps).
    inputs, score = results["scorecam"]
    normalised = minmax(layer_activations(spec, inputs, "bn2")[0].float()).flatten(1)
    distinct = torch.unique(normalised, dim=0).shape[0]
    assert distinct < channels // 2
    assert score.extras["unique_masks"] == [distinct]
    assert (score.forward_passes, score.backward_passes) == (1 + distinct, 0)


def test_gradient_methods_at_the_last_layer(results):
    """At ``bn2`` only global pooling and a linear layer follow, so ∂s_c/∂F is the same at every
    position: Grad-CAM, XGrad-CAM (eq. 6 then reduces to eq. 3) and CAM coincide, and noise
    (Smooth Grad-CAM++) changes nothing."""
    gradcam = results["gradcam"][1].heatmaps
    assert torch.allclose(results["xgradcam"][1].heatmaps, gradcam, atol=1e-5)
    assert torch.allclose(results["smoothgradcam++"][1].heatmaps, results["gradcam++"][1].heatmaps, atol=1e-5)


def test_smooth_gradcam_plus_plus(spec, cat):
    """At an inner layer the noise matters; the same seed gives the same map, and without noise
    eq. 5 reduces to eq. 4 (the two share one implementation)."""
    layer = "blocks.5"
    plain = GradCAMPlusPlus(spec, layer)(cat).heatmaps
    smooth = SmoothGradCAMPlusPlus(spec, layer, n_samples=4, seed=3)
    first, second = smooth(cat).heatmaps, smooth(cat).heatmaps
    assert torch.equal(first, second)
    assert (first - plain).abs().max() > 0.05
    noiseless = SmoothGradCAMPlusPlus(spec, layer, n_samples=2, noise_level=0.0)(cat)
    assert torch.allclose(noiseless.heatmaps, plain, atol=1e-4)
    assert (noiseless.forward_passes, noiseless.backward_passes) == (3, 2)
    assert hook_count(spec.model) == 0


def test_targets_argument(spec, cat, small_cat):
    """Another class, given as an int, a list or a tensor, per image in a batch."""
    gradcam = GradCAM(spec)
    top1 = gradcam(cat)
    tabby = gradcam(cat, targets=TABBY)
    assert tabby.targets.tolist() == [TABBY]
    assert (tabby.heatmaps - top1.heatmaps).abs().max() > 0.05
    assert torch.equal(gradcam(cat, targets=[TABBY]).heatmaps, tabby.heatmaps)
    assert torch.equal(gradcam(cat, targets=torch.tensor(TABBY)).heatmaps, tabby.heatmaps)
    batch = torch.cat([cat, cat.flip(-1)])
    for cam in (GradCAM(spec), GradCAMPlusPlus(spec), XGradCAM(spec), GroupCAM(spec, groups=4)):
        result = cam(batch, targets=[285, TABBY])
        assert result.targets.tolist() == [285, TABBY]
        single = cam(cat.flip(-1), targets=TABBY)
        assert torch.allclose(result.heatmaps[1], single.heatmaps[0], atol=1e-4), cam.name
        assert result.forward_passes == 2 * single.forward_passes
    ablation = AblationCAM(spec)
    both = ablation(torch.cat([small_cat, small_cat]), targets=[285, TABBY])
    assert both.targets.tolist() == [285, TABBY]
    alone = ablation(small_cat, targets=TABBY)
    assert torch.allclose(both.heatmaps[1], alone.heatmaps[0], atol=1e-4)
    with pytest.raises(ValueError, match="Target class"):
        GradCAM(spec)(cat, targets=1000)
    assert hook_count(spec.model) == 0


def test_scorecam_matches_a_per_channel_computation(spec, small_cat):
    """Eqs. 8–9 channel by channel (no de-duplication) give the same weights and map, with the
    baseline subtraction and with pytorch-grad-cam's softmax weighting."""
    layer = "blocks.0.0.bn1"  # 32 maps after a ReLU6, five of them constant
    activations = layer_activations(spec, small_cat, layer)
    masks = minmax(upsample(activations.float(), tuple(small_cat.shape[-2:])))
    probabilities = masked_probabilities(spec.model, small_cat, masks, batch_size=64)[0, :, 285]
    baseline = spec.predict(small_cat * 0)[0, 285]
    for options, alpha in (({}, probabilities), ({"subtract_baseline": True}, probabilities - baseline)):
        expected = relu_max_map(alpha, activations, small_cat)
        result = ScoreCAM(spec, layer, **options)(small_cat)
        assert torch.allclose(result.heatmaps, expected, atol=1e-4), options
        assert result.extras["unique_masks"] == [28]
        assert result.forward_passes == 1 + 28
    with torch.inference_mode():
        logits = torch.cat([spec.model(small_cat * m[None, None]) for m in masks[0]])[:, 285]
    expected = relu_max_map(logits.softmax(0), activations, small_cat)
    result = ScoreCAM(spec, layer, weighting="softmax")(small_cat)
    assert torch.allclose(result.heatmaps, expected, atol=1e-4)


def relu_max_map(alpha: torch.Tensor, activations: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
    maps = torch.einsum("n,bnhw->bhw", alpha.float(), activations.float()).clamp_min(0)
    return clustercam.maps.relu_max(upsample(maps, tuple(inputs.shape[-2:])))


def test_ablation_tail_mode_equals_full_reruns(spec, small_cat):
    """Inside a residual block (``blocks.5.1.bn3`` is added to the block's one-image input), the
    tail-only passes broadcast and give the same ablated scores as re-running the whole network."""
    layer = "blocks.5.1.bn3"
    tail = AblationCAM(spec, layer, mode="tail")(small_cat)
    full = AblationCAM(spec, layer, mode="full")(small_cat)
    assert tail.extras["ablation_mode"] == "tail" and full.extras["ablation_mode"] == "full"
    assert torch.allclose(tail.extras["ablated_scores"], full.extras["ablated_scores"], rtol=1e-4, atol=1e-4)
    assert torch.allclose(tail.heatmaps, full.heatmaps, atol=1e-4)
    assert (tail.forward_passes, full.forward_passes) == (1 + 192 + 1, 1 + 192)
    assert tail.extras["head_passes"] == 3 and full.extras["head_passes"] == 192
    assert hook_count(spec.model) == 0


class ConcatNet(nn.Module):
    """A network whose target layer's output is concatenated with an earlier tensor along the
    channels: a one-image tensor cannot meet ``k`` ablated rows there, so tail mode fails."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.stem = nn.Conv2d(3, 8, 3, stride=4)
        self.features = nn.Sequential(nn.Conv2d(8, 12, 3, padding=1), nn.ReLU())
        self.head = nn.Linear(20, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        stem = self.stem(x)
        return self.head(torch.cat([stem, self.features(stem)], dim=1).mean(dim=(2, 3)))


def test_ablation_falls_back_to_full_reruns(small_cat):
    model = ConcatNet().eval()
    auto = AblationCAM(model, "features", batch_size=5)(small_cat, targets=2)
    full = AblationCAM(model, "features", batch_size=5, mode="full")(small_cat, targets=2)
    assert auto.extras["ablation_mode"] == "full"
    assert "RuntimeError" in auto.extras["tail_fallback_reason"]
    assert torch.allclose(auto.heatmaps, full.heatmaps)
    assert auto.forward_passes == 1 + 12
    with pytest.raises(RuntimeError, match="failed validation"):
        AblationCAM(model, "features", mode="tail")(small_cat, targets=2)
    assert hook_count(model) == 0


def test_groupcam_with_fewer_channels_than_groups(spec, small_cat):
    result = GroupCAM(spec, "blocks.0", groups=32)(small_cat)  # 16 channels: 16 groups
    assert result.extras["group_scores"].shape == (1, 16)
    scored = result.extras["groups_scored"][0]
    assert 1 <= scored <= 16
    assert (result.forward_passes, result.backward_passes) == (2 + scored, 1)
    assert result.heatmaps.shape == (1, 112, 176) and 0 <= result.heatmaps.min() <= result.heatmaps.max() <= 1
