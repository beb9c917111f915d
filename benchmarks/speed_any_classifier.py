"""Seconds per image of each method on networks beyond the zoo: a vision transformer (timm's
DeiT-Tiny at its default layer ``blocks.11.norm1``, 192 maps on 14 × 14) and a researcher's own
CNN (torchvision's ResNet-18 through ``clustercam.from_module``, ``layer4``, 512 maps on 7 × 7),
beside the embedded EfficientNet-Lite0 at ``bn2`` for scale.

The weights are random unless ``--pretrained`` (the DeiT download needs a network): the cost of a
method does not depend on the weights, the quality of its maps does and is not measured here. In
one process, alternating between the methods in every round (a drift in machine load hits all of
them alike), on ``assets/chelsea.jpg``, after one untimed warm-up call each. Prints the median
seconds per image, each method's ratio to Grad-CAM on the same network and its passes.

    python benchmarks/speed_any_classifier.py --repeats 5
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torchvision
from _common import asset_path

import clustercam

METHODS = ("clustercam", "reciprocam", "gradcam", "gradcam++", "groupcam")


def networks(pretrained: bool) -> dict[str, clustercam.ModelSpec]:
    torch.manual_seed(0)
    resnet = torchvision.models.resnet18(weights="DEFAULT" if pretrained else None)
    return {
        "efficientnet_lite0 bn2": clustercam.load_model("efficientnet_lite0", device="cpu"),
        "deit_tiny blocks.11.norm1": clustercam.load_model("timm/deit_tiny_patch16_224", device="cpu",
                                                           pretrained=pretrained),
        "own resnet18 layer4": clustercam.from_module(resnet, device="cpu"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--pretrained", action="store_true", help="download the real weights first")
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device cpu")
    for title, spec in networks(args.pretrained).items():
        x = spec.preprocess(asset_path("chelsea.jpg"))
        cams = {name: clustercam.get_method(name)(spec) for name in METHODS}
        passes = {name: cam(x) for name, cam in cams.items()}  # warm-up, untimed
        times: dict[str, list[float]] = {name: [] for name in METHODS}
        for _ in range(args.repeats):
            for name, cam in cams.items():
                start = time.perf_counter()
                cam(x)
                times[name].append(time.perf_counter() - start)
        reference = statistics.median(times["gradcam"])
        print(f"\n{title} (input {tuple(x.shape[-2:])}, {args.repeats} rounds)")
        print(f"{'method':<12} {'s/image':>9} {'× Grad-CAM':>11} {'forward':>8} {'backward':>9}")
        for name in METHODS:
            median = statistics.median(times[name])
            result = passes[name]
            print(f"{name:<12} {median:>9.3f} {median / reference:>11.1f} {result.forward_passes:>8} "
                  f"{result.backward_passes:>9}")


if __name__ == "__main__":
    main()
