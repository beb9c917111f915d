"""Seconds per image of Cluster-CAM and the baselines, ours against pytorch-grad-cam's.

On the embedded EfficientNet-Lite0 at its default layer ``bn2`` (1280 maps of 7×7), on the CPU,
with ``skimage.data.chelsea()`` resized to 224×224, this script times in one process, alternating
between the methods in every round (so drifts in machine load hit all of them alike):

* ours, on the network as the library runs it (channels-last, inference mode, compiled graphs
  unless ``--no-compile``; compilation happens first and is reported, not timed): ClusterCAM
  (Q = 6, K-means), its network floor (the 1 + Q images it must push through the network, nothing
  else), GradCAM, ScoreCAM, AblationCAM, and ClusterCAM on the plain eager model for comparison;
* pytorch-grad-cam: GradCAM, ScoreCAM and AblationCAM, with the same ``--batch-size`` as ours.

Score-CAM runs in the configuration in which both libraries compute the same map
(``weighting="softmax"``, ``align_corners=True``; see tests/test_reference_agreement.py), so the
comparison is of speed alone. pytorch-grad-cam's Score-CAM and Ablation-CAM re-run the whole
network for every one of the 1280 maps (about a minute per image on two CPU cores), so they and
our Score-CAM get ``--slow-repeats`` rounds, the fast methods ``--repeats``. It prints the median
seconds per image and the ratios with their targets:

* ClusterCAM / pytorch-grad-cam GradCAM (≤ 1.0),
* ClusterCAM / its network floor (≤ 1.3),
* Score-CAM speed-up, theirs / ours (≥ 2), Ablation-CAM speed-up, theirs / ours (≥ 2),
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
from clustercam.network import Network


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
        elif name == "gradcam":
            cam = pgc.GradCAM(model, [module])
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
    parser.add_argument("--no-compile", action="store_true", help="time our methods on the eager network only")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    spec = clustercam.load_model("efficientnet_lite0", device="cpu")
    eager = clustercam.load_model("efficientnet_lite0", device="cpu")
    eager._network = Network(eager.model, eager.input_size, channels_last=False)  # the plain model
    image = Image.fromarray(skimage.data.chelsea()).resize((args.size, args.size), Image.BILINEAR)
    x = spec.to_tensor(image)
    layer = spec.default_layer
    if not args.no_compile:
        os.environ["CLUSTERCAM_COMPILE"] = "1"
        spec.network.compile([layer])
        state = f"{spec.network.compile_seconds:.0f} s" if spec.network.compiled else f"failed ({spec.network.compile_error})"
        print(f"compiled the classifier and {layer}: {state}")
    target = int(spec.predict(x).argmax())
    reference_model = copy.deepcopy(eager.model).requires_grad_(True).eval()

    cluster = ClusterCAM(spec, q=6, clustering="kmeans", batch_size=args.batch_size)
    masked = x.repeat(6, 1, 1, 1)

    def floor(_: torch.Tensor) -> None:
        """The network work Cluster-CAM cannot avoid: the image, then its Q = 6 masked copies."""
        with torch.inference_mode():
            if spec.network.layer_and_logits(layer, x) is None:
                spec.network.eager(x)
            spec.network.logits(masked)

    gradcam = GradCAM(spec)
    scorecam = ScoreCAM(spec, weighting="softmax", align_corners=True, batch_size=args.batch_size)
    ablation = AblationCAM(spec, batch_size=args.batch_size)
    methods: dict[str, tuple[Callable[[torch.Tensor], object], bool]] = {
        "ours ClusterCAM (Q=6, kmeans)": (cluster, False),
        "its network floor (1 + 6 images)": (floor, False),
        "ours ClusterCAM, eager NCHW": (ClusterCAM(eager, q=6, clustering="kmeans", batch_size=args.batch_size), False),
        "ours GradCAM": (gradcam, False),
        "pytorch-grad-cam GradCAM": (reference_runner("gradcam", reference_model, layer, args.batch_size, target), False),
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
    ours = median["ours ClusterCAM (Q=6, kmeans)"]
    ratios = [
        ("ClusterCAM / pytorch-grad-cam GradCAM", ours / median["pytorch-grad-cam GradCAM"], "≤", 1.0),
        ("ClusterCAM / its network floor", ours / median["its network floor (1 + 6 images)"], "≤", 1.3),
        ("Score-CAM speed-up (theirs / ours)", median["pytorch-grad-cam ScoreCAM"] / median["ours ScoreCAM"], "≥", 2.0),
        ("Ablation-CAM speed-up (theirs / ours)", median["pytorch-grad-cam AblationCAM"] / median["ours AblationCAM"], "≥", 2.0),
        ("pytorch-grad-cam ScoreCAM / ClusterCAM", median["pytorch-grad-cam ScoreCAM"] / ours, "≥", 100.0),
        ("ClusterCAM eager NCHW / ClusterCAM", median["ours ClusterCAM, eager NCHW"] / ours, "", 0.0),
    ]
    for label, value, relation, goal in ratios:
        if not relation:
            print(f"  {label:40s} {value:9.2f}")
            continue
        met = value <= goal if relation == "≤" else value >= goal
        print(f"  {label:40s} {value:9.2f}   target {relation} {goal:g}: {'met' if met else 'MISSED'}")


if __name__ == "__main__":
    main()
