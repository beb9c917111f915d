"""The network work of a request, as tasks: pure functions of plain values that return data on the
CPU, so that on a ZeroGPU Space each runs as one ``@spaces.GPU`` task in a forked worker
(:mod:`clustercamapp.gpu`) and everywhere else in this process.

Each task declares how long it may hold the GPU from the passes it will make
(:func:`explanation_passes`, :func:`clustercamapp.gpu.duration_for`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import torch
from PIL import Image

from clustercam.methods import DEFAULT_PRESET, PRESETS, ClusterCAM, ClusterCAMResult
from clustercam.pipeline import explain_image
from clustercam.zoo import ModelSpec

from ..gpu import duration_for, gpu_task
from .models import get_model


@dataclass
class Computed:
    """What :func:`compute_explanation` hands back: plain data, every tensor on the CPU."""

    result: ClusterCAMResult
    image: Image.Image
    prepared: Image.Image
    inputs: torch.Tensor
    kept: dict[float, float]
    seconds: float


def explanation_passes(options: dict[str, Any], betas: tuple[float, ...] | list[float] = ()) -> int:
    """Network passes of one explanation: 1 + Q, and one per β of the kept-confidence curve."""
    q = options.get("q") or PRESETS[options.get("preset") or DEFAULT_PRESET]["q"]
    return 1 + int(q) + len(betas)


@gpu_task(duration=lambda data, model, layer, options, betas: duration_for(explanation_passes(options, betas)))
def compute_explanation(
    data: bytes, model: str | ModelSpec, layer: str, options: dict[str, Any], betas: tuple[float, ...] | list[float],
) -> Computed:
    """Explain an image (raw file bytes) with Cluster-CAM for its top-1 class, and measure the class
    kept on the masked image at each β of ``betas`` (one batched pass). ``model`` is a zoo name (a
    ZeroGPU task: the worker uses its own copy) or a loaded spec. Pure: nothing here changes
    the server's state."""
    spec = model if isinstance(model, ModelSpec) else get_model(model)
    start = time.perf_counter()
    explained = explain_image(spec, data, layer=layer, **options)
    kept: dict[float, float] = {}
    if betas and explained.is_cluster_cam:
        tradeoff = explained.method.beta_tradeoff(explained.inputs, explained.result, betas)
        kept = dict(zip((round(float(b), 4) for b in betas), tradeoff.kept[0].tolist(), strict=True))
    return Computed(explained.result.to("cpu"), explained.image, explained.prepared, explained.inputs.cpu(), kept,
                    time.perf_counter() - start)


@gpu_task(duration=lambda model, layer, options, inputs, result, target, betas: duration_for(len(betas)))
def measure_kept(
    model: str | ModelSpec, layer: str, options: dict[str, Any], inputs: torch.Tensor, result: ClusterCAMResult,
    target: int, betas: list[float],
) -> list[float]:
    """The class ``target`` kept on the input masked by the heatmap at each β (one batched pass),
    for an explanation computed earlier (``inputs`` and ``result`` on the CPU)."""
    spec = model if isinstance(model, ModelSpec) else get_model(model)
    if int(result.targets[0]) != target:
        result = result.retarget(target)
    cam = ClusterCAM(spec, layer, **options)
    return cam.beta_tradeoff(inputs.to(spec.device), result.to(spec.device), betas).kept[0].tolist()
