"""How much Cluster-CAM adds to the network work it cannot avoid.

Cluster-CAM needs one forward pass of the image and one batched forward pass of its Q masked
copies; everything else (capture, clustering, upsampling, bookkeeping) is overhead. This script
times, alternately in one process on the same input, (a) a full ``ClusterCAM`` call and (b) those
two bare forward passes, and prints the medians and their ratio (target ≤ 1.3).

    python benchmarks/speed_overhead.py --repeats 30 --q 6 --device cpu
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import torch
from _common import asset_path
from PIL import Image

import clustercam


def unavoidable_network_work(network, layer: str, x: torch.Tensor, q: int) -> None:
    """One forward pass of the image (with its layer's maps) plus one batched pass of ``q``
    (masked) copies, through the same :class:`~clustercam.network.Network` Cluster-CAM uses."""
    with torch.inference_mode():
        if network.layer_and_logits(layer, x) is None:
            network.eager(x)
        network.logits(x.expand(q, -1, -1, -1) * 0.5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--q", type=int, default=6)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--clustering", default="kmeans", choices=("kmeans", "spectral"))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--compile", action="store_true", help="compile the network first (clustercam.network)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    spec = clustercam.load_model("efficientnet_lite0", device=args.device)
    if args.compile:
        os.environ["CLUSTERCAM_COMPILE"] = "1"
        spec.network.compile([spec.default_layer])
        print(f"compiled: {spec.network.compiled} ({spec.network.compile_seconds or 0:.0f} s) {spec.network.compile_error or ''}")
    image = Image.open(asset_path("chelsea.jpg")).convert("RGB").resize((args.size, args.size))
    x = spec.to_tensor(image)
    cam = clustercam.ClusterCAM(spec, q=args.q, clustering=args.clustering)
    sync = torch.cuda.synchronize if x.device.type == "cuda" else (lambda: None)

    def timed(function) -> float:
        sync()
        start = time.perf_counter()
        function()
        sync()
        return time.perf_counter() - start

    for _ in range(3):  # warm-up
        cam(x)
        unavoidable_network_work(spec.network, spec.default_layer, x, args.q)
    full, network = [], []
    for _ in range(args.repeats):
        full.append(timed(lambda: cam(x)))
        network.append(timed(lambda: unavoidable_network_work(spec.network, spec.default_layer, x, args.q)))
    full_median, network_median = statistics.median(full), statistics.median(network)
    print(f"device: {spec.device} ({platform.processor() or platform.machine()}), torch {torch.__version__}, threads {torch.get_num_threads()}")
    print(f"model: efficientnet_lite0, layer {spec.default_layer}, input {args.size}×{args.size}, Q = {args.q}, {args.clustering}, {args.repeats} repeats")
    print(f"Cluster-CAM per image (median):                {full_median * 1000:8.1f} ms")
    print(f"unavoidable network work: 1 + {args.q} images (median): {network_median * 1000:8.1f} ms")
    print(f"ratio (target ≤ 1.3):                          {full_median / network_median:8.2f}")


if __name__ == "__main__":
    main()
