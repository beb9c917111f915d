"""Seconds per image of Cluster-CAM and the baselines, ours against pytorch-grad-cam's.

On the embedded EfficientNet-Lite0 at its default layer ``bn2`` (1280 maps of 7×7), on the CPU,
with ``skimage.data.chelsea()`` resized to 224×224, this script times in one process, alternating
between the methods in every round (so drifts in machine load hit all of them alike):

* ours: ClusterCAM (Q = 6, K-means), GradCAM, ScoreCAM, AblationCAM;
* pytorch-grad-cam: ScoreCAM and AblationCAM, with the same ``--batch-size`` as ours.

Score-CAM runs in the configuration in which both libraries compute the same map
(``weighting="softmax"``, ``align_corners=True``; see tests/test_reference_agreement.py), so the
comparison is of speed alone. pytorch-grad-cam's Score-CAM and Ablation-CAM re-run the whole
network for every one of the 1280 maps (about a minute per image on two CPU cores), so they and
our Score-CAM get ``--slow-repeats`` rounds, the fast methods ``--repeats``. It prints the median
seconds per image and four ratios with their targets:

* ClusterCAM / GradCAM (≤ 1.5),
* Score-CAM speed-up, theirs / ours (≥ 2),
* Ablation-CAM speed-up, theirs / ours (≥ 2),
* pytorch-grad-cam Score-CAM / our ClusterCAM (≥ 100).

    python benchmarks/speed_vs_reference.py --repeats 10 --slow-repeats 2 --batch-size 64
"""

from __future__ import annotations

import argparse
import copy
import os
import platform
import statistics
import time
from collections.abc import Callable

os.environ.setdefault("TQDM_DISABLE", "1")  # pytorch-grad-cam's progress bars

import skimage.data
import torch
from PIL import Image

import clustercam
from clustercam.methods import AblationCAM, ClusterCAM, GradCAM, ScoreCAM


def reference_runner(name: str, model: torch.nn.Module, layer: str, batch_size: int, target: int) -> Callable[[torch.Tensor], object]:
    """A pytorch-grad-cam method as a callable on an input batch."""
    import pytorch_grad_cam as pgc
    from pytorch_grad_cam.ablation_layer import AblationLayer
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    module = dict(model.named_modules())[layer]
    targets = [ClassifierOutputTarget(target)]

    def run(x: torch.Tensor) -> object:
        if name == "ablationcam":
            cam = pgc.AblationCAM(model, [module], ablation_layer=AblationLayer(), batch_size=batch_size)
        else:
            cam = pgc.ScoreCAM(model, [module])
            cam.batch_size = batch_size  # read by its get_cam_weights
        with cam:
            return cam(x, targets=targets)

    return run


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=10, help="rounds for the fast methods")
    parser.add_argument("--slow-repeats", type=int, default=2, help="rounds for both Score-CAMs and pytorch-grad-cam's Ablation-CAM")
    parser.add_argument("--batch-size", type=int, default=64, help="masked/ablated inputs per pass, both libraries")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    spec = clustercam.load_model("efficientnet_lite0", device="cpu")
    image = Image.fromarray(skimage.data.chelsea()).resize((args.size, args.size), Image.BILINEAR)
    x = spec.to_tensor(image)
    layer = spec.default_layer
    target = int(spec.predict(x).argmax())
    reference_model = copy.deepcopy(spec.model).requires_grad_(True).eval()

    cluster = ClusterCAM(spec, q=6, clustering="kmeans", batch_size=args.batch_size)
    gradcam = GradCAM(spec)
    scorecam = ScoreCAM(spec, weighting="softmax", align_corners=True, batch_size=args.batch_size)
    ablation = AblationCAM(spec, batch_size=args.batch_size)
    methods: dict[str, tuple[Callable[[torch.Tensor], object], bool]] = {
        "ours ClusterCAM (Q=6, kmeans)": (cluster, False),
        "ours GradCAM": (gradcam, False),
        "ours AblationCAM": (ablation, False),
        "ours ScoreCAM": (scorecam, True),
        "pytorch-grad-cam ScoreCAM": (reference_runner("scorecam", reference_model, layer, args.batch_size, target), True),
        "pytorch-grad-cam AblationCAM": (reference_runner("ablationcam", reference_model, layer, args.batch_size, target), True),
    }
    passes = {name: cam(x).forward_passes for name, (cam, _) in methods.items() if isinstance(cam, clustercam.BaseCAM)}
    for cam, slow in methods.values():  # warm-up (the slow ones once, above or here)
        if not slow:
            cam(x)

    times: dict[str, list[float]] = {name: [] for name in methods}
    for round_index in range(max(args.repeats, args.slow_repeats)):
        for name, (cam, slow) in methods.items():
            if round_index >= (args.slow_repeats if slow else args.repeats):
                continue
            start = time.perf_counter()
            cam(x)
            times[name].append(time.perf_counter() - start)
    median = {name: statistics.median(values) for name, values in times.items()}

    print(f"device: cpu ({platform.processor() or platform.machine()}), torch {torch.__version__}, threads {torch.get_num_threads()}")
    print(f"model: efficientnet_lite0, layer {layer} (1280 maps), input chelsea {args.size}×{args.size}, "
          f"batch size {args.batch_size}, repeats {args.repeats} fast / {args.slow_repeats} slow")
    for name, seconds in median.items():
        count = f"{passes[name]:5d} forward passes" if name in passes else ""
        print(f"  {name:32s} {seconds:9.3f} s/image (median of {len(times[name])})  {count}")
    ratios = [
        ("ClusterCAM / GradCAM", median["ours ClusterCAM (Q=6, kmeans)"] / median["ours GradCAM"], "≤", 1.5),
        ("Score-CAM speed-up (theirs / ours)", median["pytorch-grad-cam ScoreCAM"] / median["ours ScoreCAM"], "≥", 2.0),
        ("Ablation-CAM speed-up (theirs / ours)", median["pytorch-grad-cam AblationCAM"] / median["ours AblationCAM"], "≥", 2.0),
        ("pytorch-grad-cam ScoreCAM / ClusterCAM", median["pytorch-grad-cam ScoreCAM"] / median["ours ClusterCAM (Q=6, kmeans)"], "≥", 100.0),
    ]
    for label, value, relation, goal in ratios:
        met = value <= goal if relation == "≤" else value >= goal
        print(f"  {label:40s} {value:9.2f}   target {relation} {goal:g}: {'met' if met else 'MISSED'}")


if __name__ == "__main__":
    main()
