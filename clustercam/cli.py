"""Command line: ``python -m clustercam explain|bench|models|layers``.

Errors are reported as one line on stderr with a non-zero exit status (``--traceback`` shows the
full trace).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"}


def _build_parser() -> argparse.ArgumentParser:
    from .methods import DEFAULT_BETA, DEFAULT_Q, METHODS
    from .zoo import DEFAULT_MODEL

    parser = argparse.ArgumentParser(prog="clustercam", description="Cluster-CAM explanations of CNN image classifiers.")
    parser.add_argument("--traceback", action="store_true", help="show the full traceback on errors")
    commands = parser.add_subparsers(dest="command", required=True)

    explain = commands.add_parser("explain", help="explain images (a file or every image in a folder)")
    explain.add_argument("images", type=Path, help="an image file or a folder of images")
    explain.add_argument("--model", default=DEFAULT_MODEL, help=f"zoo model (default {DEFAULT_MODEL}; see 'clustercam models')")
    explain.add_argument("--layer", default=None, help="target layer (default: the model's; see 'clustercam layers')")
    explain.add_argument("--method", default="clustercam", choices=sorted(METHODS), help="explanation method")
    explain.add_argument("--q", type=int, default=DEFAULT_Q, help=f"number of clusters Q (default {DEFAULT_Q})")
    explain.add_argument("--beta", type=float, default=DEFAULT_BETA, help=f"balance β of eq. 22 in [0, 1] (default {DEFAULT_BETA})")
    explain.add_argument("--clustering", choices=("kmeans", "spectral"), default="kmeans")
    explain.add_argument("--eigenvectors", type=int, default=None, help="spectral: number of eigenvectors K (default Q−1)")
    explain.add_argument("--sigma", type=float, default=None, help="spectral: σ of eq. 11")
    explain.add_argument("--theta", type=float, default=None, help="spectral: threshold θ of eq. 11")
    explain.add_argument("--seed", type=int, default=0, help="clustering seed")
    explain.add_argument("--target", default=None, help="class index or name to explain (default: the prediction)")
    explain.add_argument("--device", default=None, help="cpu, cuda, cuda:1, mps (default: best available)")
    explain.add_argument("--out", type=Path, default=Path("clustercam-out"), help="output folder")
    explain.add_argument("--no-progress", action="store_true", help="no progress bar for folders")
    explain.set_defaults(handler=_explain_command)

    models = commands.add_parser("models", help="list the zoo's models")
    models.set_defaults(handler=_models_command)

    layers = commands.add_parser("layers", help="list a model's explainable layers")
    layers.add_argument("--model", default=DEFAULT_MODEL)
    layers.set_defaults(handler=_layers_command)

    try:
        from .bench import add_bench_arguments, run_bench_command
    except ImportError:  # pragma: no cover - the benchmark engine is optional
        pass
    else:
        bench = commands.add_parser("bench", help="faithfulness and speed of methods over a labelled folder (Tables 1–2)")
        add_bench_arguments(bench)
        bench.set_defaults(handler=run_bench_command)
    return parser


def _method_options(args: argparse.Namespace) -> dict:
    if args.method != "clustercam":
        return {}
    options: dict = {"q": args.q, "beta": args.beta, "clustering": args.clustering, "seed": args.seed}
    if args.clustering == "spectral":
        extra = {"n_eigenvectors": args.eigenvectors, "sigma": args.sigma, "theta": args.theta}
        options.update({key: value for key, value in extra.items() if value is not None})
    return options


def _image_files(path: Path) -> list[Path]:
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise ValueError(f"No images ({', '.join(sorted(IMAGE_SUFFIXES))}) in folder {path}.")
        return files
    if not path.exists():
        raise FileNotFoundError(f"No such file or folder: {path}")
    return [path]


def _write_outputs(explained, folder: Path) -> None:
    from .render import cluster_sheet, masked_sheet, overlay

    folder.mkdir(parents=True, exist_ok=True)
    heatmap = explained.heatmap()
    overlay(explained.image, heatmap).save(folder / "overlay.png")
    np.save(folder / "heatmap.npy", heatmap.astype(np.float32))
    if explained.is_cluster_cam:
        one = explained.explanation
        cluster_sheet(one, explained.prepared).save(folder / "clusters.png")
        masked_sheet(one, explained.prepared, explained.baseline_color).save(folder / "masked.png")
    (folder / "summary.json").write_text(json.dumps(explained.summary(), indent=2))


def _explain_command(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from .pipeline import explain_image
    from .zoo import load_model

    files = _image_files(args.images)
    spec = load_model(args.model, device=args.device)
    options = _method_options(args)
    failures = 0
    progress = tqdm(files, unit="image", disable=args.no_progress or len(files) == 1, file=sys.stderr)
    for path in progress:
        started = time.perf_counter()
        try:
            explained = explain_image(spec, path, method=args.method, layer=args.layer, target=args.target, **options)
        except ValueError as error:  # ImageError included: report, go on with the folder
            if len(files) == 1:
                raise
            failures += 1
            progress.write(f"clustercam: skipped {path.name}: {error}", file=sys.stderr)
            continue
        folder = args.out / path.stem if len(files) > 1 else args.out
        _write_outputs(explained, folder)
        if len(files) == 1:
            one = explained.explanation
            print(
                f"{path.name}: {spec.categories[one.target]} (p = {one.target_probability:.3f}), "
                f"{one.forward_passes} forward passes, {time.perf_counter() - started:.2f} s → {folder}"
            )
    if len(files) > 1:
        print(f"Explained {len(files) - failures} of {len(files)} images → {args.out}")
    return 1 if failures else 0


def _models_command(_args: argparse.Namespace) -> int:
    from .zoo import MODELS, available_models

    for name in available_models():
        print(f"{name:22s} {MODELS[name].title}")
    print(f"{'timm/<architecture>':22s} any timm classifier (weights downloaded on first use)")
    return 0


def _layers_command(args: argparse.Namespace) -> int:
    from .zoo import load_model

    spec = load_model(args.model, pretrained=False)
    for layer in spec.layers():
        marker = "  (default)" if layer.name == spec.default_layer else ""
        print(layer.label + marker)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    parser = _build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args))
    except KeyboardInterrupt:
        print("clustercam: interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # one clear line, not a traceback, unless asked for
        if args.traceback:
            raise
        message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        print(f"clustercam: error: {message}", file=sys.stderr)
        return 1
