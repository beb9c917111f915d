"""``python -m clustercam bench``: every method's faithfulness and cost on a folder of labelled images.

The folder holds the images and a ``labels.csv`` with columns ``file,class_index`` (more columns
are ignored). Each image is loaded as a user's upload would be (:func:`clustercam.imaging.load_image`:
any mode, EXIF orientation), resized with the shorter side at the model's input size
(:func:`~clustercam.imaging.resize_for_network`, aspect ratio kept) and centre-cropped to a square
so that images batch together. For every method the batch is explained (target: the predicted
class, or the label) and scored with :mod:`clustercam.metrics`: average drop, the paper's
confidence drop (eq. 23) and increase number, deletion/insertion AUC, pair share, seconds and
forward/backward passes per image (Tables 1 and 2 of the paper). :mod:`clustercam.report` writes
the CSV, JSON, Markdown tables and plot.
"""

from __future__ import annotations

import argparse
import ast
import csv
import os
import statistics
import sys
import time
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image
from tqdm.auto import tqdm

from . import metrics
from .imaging import ImageError, load_image, resize_for_network
from .methods import METHODS, get_method
from .report import BenchmarkReport, machine_info
from .zoo import DEFAULT_MODEL, ModelSpec, WeightsUnavailableError, load_model

TARGETS = ("predicted", "label")


@dataclass(frozen=True)
class Sample:
    """One row of ``labels.csv``."""

    file: str
    path: Path
    label: int
    line: int


def read_labels(data_dir: str | os.PathLike, *, limit: int | None = None, classes: int | None = None) -> list[Sample]:
    """The rows of ``DATA_DIR/labels.csv`` (the first ``limit``), checked.

    Raises:
        ValueError: no folder or no ``labels.csv``; a missing ``file``/``class_index`` column; a
            row with an empty or escaping file name, a file that does not exist, or a class index
            that is not a whole number in ``[0, classes)``. The message names the line.
    """
    folder = Path(data_dir)
    if not folder.is_dir():
        raise ValueError(f"No data folder at {folder}.")
    labels = folder / "labels.csv"
    if not labels.is_file():
        raise ValueError(f"{folder} has no labels.csv (columns: file,class_index).")
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be at least 1; got {limit}.")
    samples: list[Sample] = []
    with labels.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        missing = {"file", "class_index"} - set(reader.fieldnames or ())
        if missing:
            raise ValueError(f"{labels} lacks the column(s) {', '.join(sorted(missing))}; it needs file,class_index.")
        for row in reader:
            if limit is not None and len(samples) >= limit:
                break
            samples.append(_check_row(row, folder, labels, reader.line_num, classes))
    if not samples:
        raise ValueError(f"{labels} lists no images.")
    return samples


def _check_row(row: Mapping[str, str | None], folder: Path, labels: Path, line: int, classes: int | None) -> Sample:
    where = f"{labels}, line {line}"
    name = (row.get("file") or "").strip()
    if not name:
        raise ValueError(f"{where}: the file name is empty.")
    path = folder / name
    if Path(name).is_absolute() or not path.resolve().is_relative_to(folder.resolve()):
        raise ValueError(f"{where}: '{name}' is not inside {folder}.")
    if not path.is_file():
        raise ValueError(f"{where}: no image file '{name}' in {folder}.")
    raw = (row.get("class_index") or "").strip()
    try:
        label = int(raw)
    except ValueError:
        raise ValueError(f"{where}: class_index '{raw}' is not a whole number.") from None
    if label < 0 or (classes is not None and label >= classes):
        bound = f"[0, {classes})" if classes is not None else "≥ 0"
        raise ValueError(f"{where}: class_index {label} is out of range (must be {bound}).")
    return Sample(name, path, label, line)


def load_square(path: str | os.PathLike, size: int) -> Image.Image:
    """An image as the network sees an upload (shorter side ``size``), centre-cropped to ``size²``."""
    try:
        image = resize_for_network(load_image(path), size)
    except ImageError as error:
        raise ImageError(f"{path}: {error}") from error
    left, top = (image.width - size) // 2, (image.height - size) // 2
    return image.crop((left, top, left + size, top + size))


def choose_pairs(targets: Sequence[int], count: int) -> list[tuple[int, int]]:
    """Up to ``count`` disjoint pairs of consecutive images whose classes differ."""
    pairs: list[tuple[int, int]] = []
    index = 0
    while index + 1 < len(targets) and len(pairs) < count:
        if targets[index] != targets[index + 1]:
            pairs.append((index, index + 1))
            index += 2
        else:
            index += 1
    return pairs


def _build_methods(spec: ModelSpec, names: Sequence[str], layer: str | None, options: Mapping[str, Mapping], batch_size: int) -> dict:
    if not names:
        raise ValueError("Name at least one method.")
    classes = {name: get_method(name) for name in names}  # ValueError for unknown names
    canonical = {cls.name: cls for cls in classes.values()}
    stray = {key for key in options if key not in classes and key not in canonical}
    if stray:
        raise ValueError(f"Options given for method(s) not benchmarked: {', '.join(sorted(stray))}.")
    cams = {}
    for name, cls in classes.items():
        given = dict(options.get(name, options.get(cls.name, {})))
        given.setdefault("batch_size", batch_size)
        try:
            cams[name] = cls(spec, layer, **given)
        except TypeError as error:
            raise ValueError(f"Bad options {given} for method '{name}': {error}") from error
    return cams


def run_benchmark(
    data_dir: str | os.PathLike,
    *,
    model: str | ModelSpec = DEFAULT_MODEL,
    layer: str | None = None,
    methods: Sequence[str] = ("clustercam",),
    limit: int | None = None,
    batch_size: int = 8,
    target: str = "predicted",
    pairs: int = 10,
    n_steps: int = 32,
    method_options: Mapping[str, Mapping] | None = None,
    device: str | torch.device | None = None,
    forward_batch_size: int = 64,
    progress: bool = True,
    warmup: bool = True,
    out: str | os.PathLike | None = None,
) -> BenchmarkReport:
    """Benchmark ``methods`` on the images of ``data_dir`` (see the module docstring).

    Args:
        model: zoo name or a loaded :class:`~clustercam.zoo.ModelSpec`.
        layer: target layer of every method (default the model's).
        batch_size: images explained together.
        target: ``"predicted"`` (top-1 class) or ``"label"`` (the CSV's class_index).
        pairs: number of two-image pairs for the pair share (0: none).
        n_steps: deletion/insertion steps (0: skip those curves).
        method_options: per-method keyword options, e.g. ``{"clustercam": {"q": 6, "beta": 0.7}}``.
        forward_batch_size: images per forward pass in the metrics and the methods' masked passes.
        warmup: explain the first image once with every method, untimed, before timing (first
            calls pay for memory allocation, kernel selection, lazy initialisation).
        out: when given, the report is also written there.
    """
    if target not in TARGETS:
        raise ValueError(f"target must be one of {', '.join(TARGETS)}; got '{target}'.")
    for value, what in ((batch_size, "batch_size"), (forward_batch_size, "forward_batch_size")):
        if value < 1:
            raise ValueError(f"{what} must be at least 1; got {value}.")
    if pairs < 0 or n_steps < 0:
        raise ValueError("pairs and n_steps must not be negative.")
    for name in methods:
        get_method(name)
    read_labels(data_dir, limit=limit)  # a bad labels.csv fails before the model is loaded
    spec = model if isinstance(model, ModelSpec) else load_model(model, device)
    samples = read_labels(data_dir, limit=limit, classes=len(spec.categories))
    cams = _build_methods(spec, list(methods), layer, method_options or {}, forward_batch_size)
    layer_name = next(iter(cams.values())).layer_name
    settings = {
        "data_dir": str(Path(data_dir).resolve()),
        "model": spec.name,
        "layer": layer_name,
        "methods": list(cams),
        "method_options": {name: dict((method_options or {}).get(name, {})) for name in cams},
        "images": len(samples),
        "image_size": spec.input_size,
        "batch_size": batch_size,
        "forward_batch_size": forward_batch_size,
        "target": target,
        "pairs_requested": pairs,
        "n_steps": n_steps,
        "warmup": warmup,
        "machine": machine_info(spec.device),
    }
    report = BenchmarkReport(settings)
    batches = [samples[i : i + batch_size] for i in range(0, len(samples), batch_size)]
    steps = len(batches) * len(cams) + (len(cams) if pairs else 0)
    bar = tqdm(total=steps, desc="bench", unit="step", file=sys.stderr, disable=not progress)
    collected: dict[str, dict[str, list]] = {name: defaultdict(list) for name in cams}
    targets_all: list[int] = []
    try:
        if warmup:
            first = spec.to_tensor([load_square(samples[0].path, spec.input_size)])
            for cam in cams.values():
                cam(first)
        for batch in batches:
            inputs = spec.to_tensor([load_square(sample.path, spec.input_size) for sample in batch])
            probabilities = _probabilities(spec, inputs, forward_batch_size)
            predicted = probabilities.argmax(dim=1)
            labels = torch.tensor([sample.label for sample in batch], device=predicted.device)
            targets = predicted if target == "predicted" else labels
            targets_all.extend(targets.tolist())
            y = probabilities.gather(1, targets[:, None]).squeeze(1)
            for name, cam in cams.items():
                _score_batch(report, collected[name], name, cam, spec, batch, inputs, targets, predicted, y, n_steps, forward_batch_size)
                bar.update()
        pair_shares = _pair_shares(spec, cams, samples, targets_all, pairs, batch_size, bar)
    finally:
        bar.close()
    for name in cams:
        _summarize(report, name, collected[name], pair_shares.get(name), n_steps)
    report.settings["pairs"] = len(next(iter(pair_shares.values())).left) if pair_shares else 0
    if out is not None:
        report.write(out)
    return report


def _synchronize(device: torch.device) -> None:
    """Wait for queued GPU work, so that a method's time includes its kernels."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.inference_mode()
def _probabilities(spec: ModelSpec, inputs: torch.Tensor, batch_size: int) -> torch.Tensor:
    return torch.cat([
        spec.model(inputs[i : i + batch_size]).float().softmax(dim=1) for i in range(0, inputs.shape[0], batch_size)
    ])


def _score_batch(report: BenchmarkReport, store: dict[str, list], name: str, cam, spec: ModelSpec, batch: Sequence[Sample],
                 inputs: torch.Tensor, targets: torch.Tensor, predicted: torch.Tensor, y: torch.Tensor,
                 n_steps: int, forward_batch_size: int) -> None:
    _synchronize(inputs.device)
    start = time.perf_counter()
    result = cam(inputs, targets)
    _synchronize(inputs.device)
    seconds = time.perf_counter() - start
    n = len(batch)
    _, o = metrics.explanation_scores(spec.model, inputs, result.heatmaps, targets, batch_size=forward_batch_size, probabilities=y)
    curves = (
        metrics.deletion_insertion(spec.model, inputs, result.heatmaps, targets, n_steps=n_steps, batch_size=forward_batch_size)
        if n_steps else {}
    )
    y_cpu, o_cpu = y.double().cpu(), o.double().cpu()
    drops = metrics.average_drop_per_image(y_cpu, o_cpu)
    signed = metrics.confidence_drop_per_image(y_cpu, o_cpu)
    store["y"].append(y_cpu)
    store["o"].append(o_cpu)
    store["seconds"].append(seconds / n)
    store["fp"].append(result.forward_passes)
    store["bp"].append(result.backward_passes)
    if curves:
        store["del"].append(curves["deletion"].probabilities.cpu())
        store["ins"].append(curves["insertion"].probabilities.cpu())
        store["fractions"] = curves["deletion"].fractions.cpu().tolist()
    for i, sample in enumerate(batch):
        report.rows.append({
            "file": sample.file,
            "label": sample.label,
            "predicted": int(predicted[i]),
            "target": int(targets[i]),
            "method": name,
            "y": float(y_cpu[i]),
            "o": float(o_cpu[i]),
            "average_drop": float(drops[i]),
            "confidence_drop": float(signed[i]),
            "increase": int(o_cpu[i] > y_cpu[i]),
            "deletion": float(curves["deletion"].auc[i]) if curves else None,
            "insertion": float(curves["insertion"].auc[i]) if curves else None,
            "seconds": seconds / n,
            "forward_passes": result.forward_passes / n,
            "backward_passes": result.backward_passes / n,
        })


def _pair_shares(spec: ModelSpec, cams: Mapping, samples: Sequence[Sample], targets: Sequence[int], count: int,
                 batch_size: int, bar: tqdm) -> dict[str, metrics.PairShares]:
    chosen = choose_pairs(targets, count)
    if not chosen:
        bar.update(len(cams) if count else 0)
        return {}
    lefts = [load_square(samples[i].path, spec.input_size) for i, _ in chosen]
    rights = [load_square(samples[j].path, spec.input_size) for _, j in chosen]
    inputs, splits = metrics.make_pairs(spec, lefts, rights)
    left_targets = torch.tensor([targets[i] for i, _ in chosen])
    right_targets = torch.tensor([targets[j] for _, j in chosen])
    shares = {}
    for name, cam in cams.items():
        bar.set_postfix_str(f"pairs: {name}")
        shares[name] = metrics.pair_share(
            lambda x, t, cam=cam: cam(x, t).heatmaps, inputs, left_targets, right_targets, splits, batch_size=batch_size
        )
        bar.update()
    return shares


def _summarize(report: BenchmarkReport, name: str, store: dict[str, list], shares: metrics.PairShares | None, n_steps: int) -> None:
    y, o = torch.cat(store["y"]), torch.cat(store["o"])
    images = y.numel()
    curves = {}
    if n_steps:
        fractions = torch.tensor(store["fractions"])
        for kind, key in (("deletion", "del"), ("insertion", "ins")):
            values = torch.cat(store[key]).double()
            curves[kind] = metrics.Curve(kind, fractions, values, torch.trapezoid(values, fractions.double(), dim=1))
        report.curves[name] = {
            "fractions": store["fractions"],
            "deletion": curves["deletion"].probabilities.mean(dim=0).tolist(),
            "insertion": curves["insertion"].probabilities.mean(dim=0).tolist(),
        }
    report.summaries[name] = metrics.summarize(
        name, y, o, curves=curves, pairs=shares,
        seconds_per_image=statistics.median(store["seconds"]),
        forward_passes=sum(store["fp"]) / images,
        backward_passes=sum(store["bp"]) / images,
    )
    if shares is not None:
        for index, (left, right) in enumerate(zip(shares.left.tolist(), shares.right.tolist(), strict=True)):
            report.pair_rows.append({"pair": index, "method": name, "left_share": left, "right_share": right, "share": (left + right) / 2})


def parse_option(text: str) -> tuple[str, str, object]:
    """``METHOD.KEY=VALUE`` → ``(method, key, value)``; the value is a Python literal or a string."""
    head, sep, raw = text.partition("=")
    method, dot, key = head.partition(".")
    if not sep or not dot or not method.strip() or not key.strip():
        raise ValueError(f"Method options look like METHOD.KEY=VALUE (e.g. clustercam.q=6); got '{text}'.")
    try:
        value = ast.literal_eval(raw.strip())
    except (ValueError, SyntaxError):
        value = raw.strip()
    return method.strip(), key.strip(), value


def add_bench_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The ``bench`` subcommand's arguments."""
    parser.add_argument("data_dir", help="folder with the images and labels.csv (columns file,class_index)")
    parser.add_argument("--model", default=DEFAULT_MODEL, help=f"zoo model (default {DEFAULT_MODEL})")
    parser.add_argument("--layer", default=None, help="target layer (default: the model's)")
    parser.add_argument("--methods", default="clustercam", help=f"comma-separated, or 'all' (registered: {', '.join(METHODS)})")
    parser.add_argument("--limit", type=int, default=None, help="use only the first N images")
    parser.add_argument("--out", default="bench-results", help="output folder (default bench-results)")
    parser.add_argument("--batch-size", type=int, default=8, help="images explained together (default 8)")
    parser.add_argument("--forward-batch-size", type=int, default=64, help="images per forward pass in masked passes (default 64)")
    parser.add_argument("--target", choices=TARGETS, default="predicted", help="class to explain (default: predicted)")
    parser.add_argument("--pairs", type=int, default=10, help="two-image pairs for the pair share (default 10; 0: none)")
    parser.add_argument("--steps", type=int, default=32, help="deletion/insertion steps (default 32; 0: skip)")
    parser.add_argument("--option", action="append", default=[], metavar="METHOD.KEY=VALUE", help="method option, repeatable (e.g. clustercam.q=6)")
    parser.add_argument("--device", default=None, help="torch device (default: CUDA, MPS, else CPU)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--no-warmup", action="store_true", help="time the very first call too")
    return parser


def run_bench_command(args: argparse.Namespace) -> int:
    """Run ``bench`` from parsed arguments: writes the report, prints Table 1; 0 on success, 2 on a user error."""
    try:
        names = list(METHODS) if args.methods.strip().lower() == "all" else [m.strip() for m in args.methods.split(",") if m.strip()]
        options: dict[str, dict] = {}
        for text in args.option:
            method, key, value = parse_option(text)
            options.setdefault(method, {})[key] = value
        report = run_benchmark(
            args.data_dir, model=args.model, layer=args.layer, methods=names, limit=args.limit,
            batch_size=args.batch_size, target=args.target, pairs=args.pairs, n_steps=args.steps,
            method_options=options, device=args.device, forward_batch_size=args.forward_batch_size,
            progress=not args.no_progress, warmup=not args.no_warmup,
        )
    except (ValueError, WeightsUnavailableError) as error:  # ImageError, unknown name, bad labels.csv
        if getattr(args, "traceback", False):
            raise
        print(f"clustercam: error: {error}", file=sys.stderr)
        return 2
    paths = report.write(args.out)
    print(paths["table1"].read_text(encoding="utf-8"))
    print(f"Wrote {', '.join(str(path) for path in paths.values())}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = add_bench_arguments(argparse.ArgumentParser(prog="python -m clustercam.bench", description=__doc__.splitlines()[0]))
    return run_bench_command(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
