"""Command line: ``python -m clustercam explain|bench|models|layers``.

Errors are reported as one line on stderr with a non-zero exit status (``--traceback`` shows the
full trace).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"}


def _build_parser() -> argparse.ArgumentParser:
    from .clustering import SIMILARITIES
    from .methods import DEFAULT_PRESET, METHODS, PRESETS
    from .methods.cognition import COMBINATIONS, NORMALIZATIONS, OUTPUTS
    from .methods.presets import ALIASES
    from .zoo import DEFAULT_MODEL

    parser = argparse.ArgumentParser(prog="clustercam", description="Cluster-CAM explanations of CNN image classifiers.")
    parser.add_argument("--traceback", action="store_true", help="show the full traceback on errors")
    commands = parser.add_subparsers(dest="command", required=True)

    explain = commands.add_parser("explain", help="explain images (a file or every image in a folder)")
    explain.add_argument("images", type=Path, help="an image file or a folder of images")
    explain.add_argument("--model", default=DEFAULT_MODEL,
                         help=f"zoo model (default {DEFAULT_MODEL}; see 'clustercam models'), or a torch.export file (*.pt2)")
    explain.add_argument("--labels", default=None, help="an exported model's class names, one per line")
    explain.add_argument("--layer", default=None, help="target layer (default: the model's; see 'clustercam layers')")
    explain.add_argument("--method", default="clustercam", choices=sorted(METHODS), help="explanation method")
    explain.add_argument("--preset", choices=sorted([*PRESETS, *ALIASES]), default=None,
                         help=f"Cluster-CAM configuration (default {DEFAULT_PRESET}; trade-offs in docs/benchmarks.md); the options below override it")
    explain.add_argument("--q", type=int, default=None, help="number of clusters Q (default: the preset's)")
    explain.add_argument("--beta", type=float, default=None, help="balance β in [0, 1] (default: the preset's)")
    explain.add_argument("--clustering", choices=("kmeans", "spectral"), default=None, help="default: the preset's")
    explain.add_argument("--combination", choices=COMBINATIONS, default=None, help="how base, scissors and the other clusters make the heatmap")
    explain.add_argument("--normalization", choices=NORMALIZATIONS, default=None, help="how each cluster map is scaled before combining")
    explain.add_argument("--output", choices=OUTPUTS, default=None, help="how the combined map is scaled into [0, 1]")
    explain.add_argument("--eigenvectors", type=int, default=None, help="spectral: number of eigenvectors K (default Q−1)")
    explain.add_argument("--sigma", type=float, default=None, help="spectral: σ of eq. 11")
    explain.add_argument("--theta", type=float, default=None, help="spectral: threshold θ of eq. 11")
    explain.add_argument("--similarity", choices=SIMILARITIES, default=None, help="spectral: similarity of eq. 10 (default: the preset's, the one that separated objects best on the tuning part; euclidean is eq. 17)")
    explain.add_argument("--normalize-rows", action="store_true", default=None, help="spectral: unit-length rows of the embedding before K-means")
    explain.add_argument("--no-quality", action="store_true", help="skip the cluster-quality scores for Q = 2…8 in the summary")
    explain.add_argument("--seed", type=int, default=0, help="clustering seed")
    explain.add_argument("--target", default=None, help="class index or name to explain (default: the prediction)")
    explain.add_argument("--device", default=None, help="cpu, cuda, cuda:1, mps (default: best available)")
    explain.add_argument("--out", type=Path, default=Path("clustercam-out"), help="output folder")
    explain.add_argument("--no-progress", action="store_true", help="no progress bar for folders")
    explain.set_defaults(handler=_explain_command)

    models = commands.add_parser("models", help="list the zoo's models")
    models.set_defaults(handler=_models_command)

    layers = commands.add_parser("layers", help="list a model's explainable layers")
    layers.add_argument("--model", default=DEFAULT_MODEL, help="zoo model or a torch.export file (*.pt2)")
    layers.add_argument("--labels", default=None, help="an exported model's class names, one per line")
    layers.set_defaults(handler=_layers_command)

    bench = commands.add_parser("bench", help="faithfulness and speed of methods over labelled folders (Tables 1–2)")
    add_bench_arguments(bench)
    bench.set_defaults(handler=run_bench_command)
    return parser


def add_bench_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The ``bench`` subcommand's arguments."""
    from .bench.data import PAIR_SEED, REPORTING, SPLITS
    from .bench.runner import TARGETS
    from .methods import METHODS, PRESETS
    from .stats import DEFAULT_RESAMPLES
    from .zoo import DEFAULT_MODEL

    parser.add_argument("data_dirs", nargs="+", help="folders with the images and labels.csv (columns file,class_index)")
    parser.add_argument("--split", choices=SPLITS, default=REPORTING,
                        help="which part of the images (by a hash of the file name; docs/protocol.md): reporting (default), tuning or all")
    parser.add_argument("--allow-tuning", action="store_true", help="allow --split tuning/all (figures on tuning images are not evidence)")
    parser.add_argument("--model", default=DEFAULT_MODEL, help=f"zoo model (default {DEFAULT_MODEL})")
    parser.add_argument("--layer", default=None, help="target layer (default: the model's)")
    parser.add_argument("--methods", default="clustercam",
                        help=f"comma-separated, or 'all' (registered: {', '.join(METHODS)}); Cluster-CAM presets as clustercam:NAME ({', '.join(PRESETS)})")
    parser.add_argument("--reference", default=None, help="the method the others are compared with (default: the first Cluster-CAM)")
    parser.add_argument("--limit", type=int, default=None, help="use only the first N images of the part")
    parser.add_argument("--out", default="bench-results",
                        help="output folder (default bench-results); it also keeps every finished batch, so a run started "
                             "again with the same folder and settings resumes")
    parser.add_argument("--batch-size", type=int, default=8, help="images explained together (default 8)")
    parser.add_argument("--forward-batch-size", type=int, default=64, help="images per forward pass in masked passes (default 64)")
    parser.add_argument("--target", choices=TARGETS, default="predicted", help="class to explain (default: predicted)")
    parser.add_argument("--pairs", type=int, default=10, help="two-image pairs for the pair share (default 10; 0: none; -1: all the part holds)")
    parser.add_argument("--pair-seed", type=int, default=PAIR_SEED, help=f"seed the pairs are drawn with (default {PAIR_SEED})")
    parser.add_argument("--steps", type=int, default=32, help="deletion/insertion steps (default 32; 0: skip)")
    parser.add_argument("--resamples", type=int, default=DEFAULT_RESAMPLES, help=f"bootstrap resamples per interval (default {DEFAULT_RESAMPLES})")
    parser.add_argument("--option", action="append", default=[], metavar="METHOD.KEY=VALUE", help="method option, repeatable (e.g. clustercam.q=6)")
    parser.add_argument("--device", default=None, help="torch device (default: CUDA, MPS, else CPU)")
    parser.add_argument("--channels-last", action="store_true", help="run the network in channels-last memory format (same results, faster on CPUs)")
    parser.add_argument("--workers", type=int, default=min(4, max(0, (os.cpu_count() or 1) - 1)),
                        help="processes decoding images while the network runs (0: in this process)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--no-warmup", action="store_true", help="time the very first call too")
    parser.add_argument("--no-adcc", action="store_true",
                        help="leave ADCC out (its coherency explains every masked image once more)")
    return parser


def parse_option(text: str) -> tuple[str, str, object]:
    """``METHOD.KEY=VALUE`` → ``(method, key, value)``; the value is a Python literal or a string."""
    import ast

    head, sep, raw = text.partition("=")
    method, dot, key = head.rpartition(".")
    if not sep or not dot or not method.strip() or not key.strip():
        raise ValueError(f"Method options look like METHOD.KEY=VALUE (e.g. clustercam.q=6); got '{text}'.")
    try:
        value = ast.literal_eval(raw.strip())
    except (ValueError, SyntaxError):
        value = raw.strip()
    return method.strip(), key.strip(), value


def run_bench_command(args: argparse.Namespace) -> int:
    """``bench``: writes the report and prints Table 1 with the intervals; 0 on success, 2 on a user error."""
    from .bench.runner import run_benchmark
    from .methods import METHODS
    from .zoo import WeightsUnavailableError

    try:
        names = list(METHODS) if args.methods.strip().lower() == "all" else [m.strip() for m in args.methods.split(",") if m.strip()]
        options: dict[str, dict] = {}
        for text in args.option:
            method, key, value = parse_option(text)
            options.setdefault(method, {})[key] = value
        report = run_benchmark(
            args.data_dirs, split=args.split, allow_tuning=args.allow_tuning, model=args.model, layer=args.layer,
            methods=names, reference=args.reference, limit=args.limit, batch_size=args.batch_size, target=args.target,
            pairs=None if args.pairs < 0 else args.pairs, pair_seed=args.pair_seed, n_steps=args.steps,
            method_options=options, device=args.device, forward_batch_size=args.forward_batch_size,
            resamples=args.resamples, channels_last=args.channels_last, workers=args.workers, progress=not args.no_progress,
            warmup=not args.no_warmup, adcc=not args.no_adcc, out=args.out,
        )
    except (ValueError, WeightsUnavailableError) as error:  # ImageError, unknown name, bad labels.csv, split
        if getattr(args, "traceback", False):
            raise
        print(f"clustercam: error: {error}", file=sys.stderr)
        return 2
    if report.settings.get("rank", 0) != 0:
        return 0  # under torchrun, rank 0 merged every rank's records and wrote the tables
    paths = report.written or report.write(args.out)  # run_benchmark wrote them where out was given
    print(paths["table1"].read_text(encoding="utf-8"))
    print(f"Wrote {', '.join(str(path) for path in paths.values())}")
    return 0


def _method_options(args: argparse.Namespace) -> dict:
    from .methods.presets import preset_options

    if args.method != "clustercam":
        return {}
    given = {"preset": args.preset, "q": args.q, "beta": args.beta, "clustering": args.clustering,
             "combination": args.combination, "normalization": args.normalization, "output": args.output}
    options: dict = {key: value for key, value in given.items() if value is not None}
    options["seed"] = args.seed
    clustering = args.clustering or preset_options(args.preset).get("clustering", "kmeans")
    if clustering == "spectral":
        extra = {"n_eigenvectors": args.eigenvectors, "sigma": args.sigma, "theta": args.theta,
                 "similarity": args.similarity, "normalize_rows": args.normalize_rows}
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


def _write_outputs(explained, folder: Path, quality: bool = True) -> dict:
    from .render import cluster_sheet, masked_sheet, overlay

    folder.mkdir(parents=True, exist_ok=True)
    heatmap = explained.heatmap()
    overlay(explained.image, heatmap).save(folder / "overlay.png")
    np.save(folder / "heatmap.npy", heatmap.astype(np.float32))
    summary = explained.summary()
    if explained.is_cluster_cam:
        one = explained.explanation
        cluster_sheet(one, explained.prepared).save(folder / "clusters.png")
        masked_sheet(one, explained.prepared, explained.baseline_color).save(folder / "masked.png")
        if quality:
            summary["cluster_quality"] = {str(q): scores for q, scores in explained.cluster_quality().items()}
    (folder / "summary.json").write_text(json.dumps(summary, indent=2, allow_nan=True))
    return summary


def quality_line(summary: dict) -> str:
    """``cluster quality (silhouette) by Q: 2: 0.41 · 3: 0.38 … (highest at Q = 2)``."""
    quality = summary.get("cluster_quality") or {}
    scores = {int(q): values["silhouette"] for q, values in quality.items()}
    if not scores:
        return ""
    best = max(scores, key=lambda q: scores[q])
    cells = " · ".join(f"{q}: {value:.3f}" for q, value in scores.items())
    return f"cluster quality (silhouette, scikit-learn) by Q: {cells} (highest at Q = {best}; see docs/benchmarks.md on whether it picks a good Q)"


def _explain_command(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from .pipeline import explain_image
    from .zoo import load_model

    files = _image_files(args.images)
    spec = load_model(args.model, device=args.device, labels=args.labels)
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
        summary = _write_outputs(explained, folder, quality=not args.no_quality)
        if len(files) == 1:
            one = explained.explanation
            print(
                f"{path.name}: {spec.categories[one.target]} (p = {one.target_probability:.3f}), "
                f"{one.forward_passes} forward passes, {time.perf_counter() - started:.2f} s → {folder}"
            )
            if quality_line(summary):
                print(quality_line(summary))
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

    spec = load_model(args.model, pretrained=False, labels=args.labels)
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
