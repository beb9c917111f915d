"""Spectral clustering at the default layer of every zoo model (random weights where real ones need a download)."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

import clustercam
from clustercam.hooks import hook_count

from .conftest import ASSETS

OFFLINE = {"efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"}


@pytest.mark.parametrize("name", clustercam.available_models())
def test_spectral_cluster_cam_at_the_default_layer(name):
    spec = clustercam.load_model(name, device="cpu", pretrained=name in OFFLINE)
    x = spec.preprocess(Image.open(ASSETS / "chelsea.jpg"))
    result = clustercam.ClusterCAM(spec, q=4, clustering="spectral", n_eigenvectors=3)(x)
    one = result[0]
    assert torch.isfinite(one.heatmap).all() and one.heatmap.shape == x.shape[-2:]
    assert len(set(one.labels.tolist())) == 4 and one.forward_passes == 5
    assert hook_count(spec.model) == 0
    if name in OFFLINE:  # real weights: the explanation is about a cat
        assert spec.categories[one.target] in {"Egyptian cat", "tabby", "tiger cat"}
