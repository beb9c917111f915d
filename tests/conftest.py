"""Shared fixtures: the embedded model and real photographs (scikit-image, CC0)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from benchmarks.serving import free_port  # noqa: F401 (the tests' port, as the serving harness picks it)

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
# Eager networks in the tests (a compilation costs a minute of CPU); tests/test_network.py
# compiles on purpose and checks the compiled graphs against the eager model.
os.environ.setdefault("CLUSTERCAM_COMPILE", "0")
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))

ROOT = Path(__file__).resolve().parents[1]
ASSETS = ROOT / "assets"


@pytest.fixture(scope="session")
def spec():
    """The embedded EfficientNet-Lite0 (real ImageNet weights, offline), on the CPU."""
    import clustercam

    return clustercam.load_model("efficientnet_lite0", device="cpu")


@pytest.fixture(scope="session")
def chelsea() -> Image.Image:
    return Image.open(ASSETS / "chelsea.jpg").convert("RGB")


@pytest.fixture(scope="session")
def coffee() -> Image.Image:
    return Image.open(ASSETS / "coffee.jpg").convert("RGB")


@pytest.fixture(scope="session")
def cat_and_coffee() -> Image.Image:
    """The two-object picture: the cat on the left half, the coffee cup on the right."""
    return Image.open(ASSETS / "cat_and_coffee.jpg").convert("RGB")


def left_share(heatmap: torch.Tensor | np.ndarray) -> float:
    """Share of a heatmap's mass on the left half of the image."""
    values = torch.as_tensor(heatmap, dtype=torch.float64)
    half = values.shape[-1] // 2
    total = float(values.sum())
    return float(values[..., :half].sum()) / total if total > 0 else float("nan")
