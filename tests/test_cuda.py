"""GPU paths; skipped cleanly where there is no CUDA device."""

from __future__ import annotations

import pytest
import torch

import clustercam
from clustercam.clustering import kmeans, spectral_clustering

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


def test_cluster_cam_on_cuda_matches_the_cpu(chelsea):
    cpu = clustercam.load_model("efficientnet_lite0", device="cpu")
    gpu = clustercam.load_model("efficientnet_lite0", device="cuda")
    on_cpu = clustercam.ClusterCAM(cpu, q=6)(cpu.preprocess(chelsea))
    on_gpu = clustercam.ClusterCAM(gpu, q=6)(gpu.preprocess(chelsea))
    assert on_gpu.heatmaps.device.type == "cuda"
    assert on_gpu[0].target == on_cpu[0].target
    assert torch.corrcoef(torch.stack([on_gpu.heatmaps.cpu().flatten(), on_cpu.heatmaps.flatten()]))[0, 1] > 0.95


def test_clustering_runs_on_the_device():
    points = torch.randn(200, 49, device="cuda")
    assert kmeans(points, 5).labels.device.type == "cuda"
    assert spectral_clustering(points, 5).labels.device.type == "cuda"
