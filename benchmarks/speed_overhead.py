"""How much Cluster-CAM adds to the network work it cannot avoid.

Cluster-CAM needs one forward pass of the image and one batched forward pass of its Q masked
copies; everything else (capture, clustering, upsampling, bookkeeping) is overhead. This script
times, alternately in one process on the same input, (a) a full ``ClusterCAM`` call and (b) those
two bare forward passes, and prints the medians and their ratio (target ≤ 1.3).

    python benchmarks/speed_overhead.py --repeats 30 --q 6 --device cpu
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch
from _common import asset_path
from PIL import Image

import clustercam


def unavoidable_network_work(model: torch.nn.Module, x: torch.Tensor, q: int) -> None:
    """One forward pass of the image plus one batched pass of ``q`` (masked) copies."""
    with torch.inference_mode():
        model(x)
        model(x.expand(q, -1, -1, -1) * 0.5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--q", type=int, default=6)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--clustering", default="kmeans", choices=("kmeans", "spectral"))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    spec = clustercam.load_model("efficientnet_lite0", device=args.device)
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
        unavoidable_network_work(spec.model, x, args.q)
    full, network = [], []
    for _ in range(args.repeats):
        full.append(timed(lambda: cam(x)))
        network.append(timed(lambda: unavoidable_network_work(spec.model, x, args.q)))
    full_median, network_median = statistics.median(full), statistics.median(network)
    print(f"device: {spec.device} ({platform.processor() or platform.machine()}), torch {torch.__version__}, threads {torch.get_num_threads()}")
    print(f"model: efficientnet_lite0, layer {spec.default_layer}, input {args.size}×{args.size}, Q = {args.q}, {args.clustering}, {args.repeats} repeats")
    print(f"Cluster-CAM per image (median):                {full_median * 1000:8.1f} ms")
    print(f"unavoidable network work: 1 + {args.q} images (median): {network_median * 1000:8.1f} ms")
    print(f"ratio (target ≤ 1.3):                          {full_median / network_median:8.2f}")


if __name__ == "__main__":
    main()
