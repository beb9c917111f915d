"""Run a benchmark: explain every image with every method, score it, keep one tally per method.

Each image is loaded as a user's upload would be (:func:`~clustercam.bench.data.load_square`:
any mode, EXIF orientation, shorter side at the model's input size, centre-cropped to a square so
that images batch together). For every method the batch is explained (target: the predicted
class, or the label) and scored with :mod:`clustercam.metrics`: average drop, the paper's
confidence drop (eq. 23) and increase number, deletion/insertion AUC, seconds and forward/backward
passes per image (Tables 1 and 2 of the paper); then the pair share on two-image pairs of the
same part. Every method sees the same images and pairs in the same order, so the per-image values
are paired and :mod:`clustercam.stats` gives intervals of each method's difference to a reference
(by default Cluster-CAM).

Methods are named as in :data:`clustercam.METHODS`, optionally with a Cluster-CAM preset after a
colon (``clustercam:gated``, ``clustercam:paper``) and options after ``@`` (``clustercam@beta=1``):
each name is one row of the tables.

The work is done in *units* (batches of images, then batches of pairs) whose records are written
as they finish (:mod:`~clustercam.bench.records`, so a stopped run resumes) and shared out among
torchrun's ranks (:mod:`~clustercam.bench.distributed`); the tallies and rows are always rebuilt
from the records in unit order, so one process, N ranks and a resumed run give the same tables.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from tqdm.auto import tqdm

from .. import metrics
from ..methods import get_method
from ..methods.presets import preset_name
from ..stats import DEFAULT_RESAMPLES, paired_bootstrap
from ..zoo import DEFAULT_MODEL, ModelSpec, load_model
from . import distributed
from .data import (
    ALL,
    PAIR_SEED,
    REPORTING,
    SPLITS,
    TUNING,
    SquareImages,
    draw_pairs,
    load_square,
    read_labels,
)
from .distributed import Ranks
from .records import RecordStore, fingerprint
from .report import BenchmarkReport, machine_info

TARGETS = ("predicted", "label")
#: Per-image (and per-pair) figures compared between methods with paired bootstrap intervals.
COMPARED = ("average_drop", "confidence_drop", "increase", "deletion", "insertion", "pair_share")


@dataclass
class MethodTally:
    """What one method scored, image by image and pair by pair, as the run goes."""

    name: str
    y: list[float] = field(default_factory=list)
    o: list[float] = field(default_factory=list)
    deletion_curves: list[torch.Tensor] = field(default_factory=list)
    insertion_curves: list[torch.Tensor] = field(default_factory=list)
    fractions: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    forward_passes: int = 0
    backward_passes: int = 0
    left_shares: list[float] = field(default_factory=list)
    right_shares: list[float] = field(default_factory=list)

    def per_image(self) -> dict[str, np.ndarray]:
        """Per-image values of the compared metrics (percentages as in Table 1)."""
        y, o = torch.tensor(self.y, dtype=torch.float64), torch.tensor(self.o, dtype=torch.float64)
        values = {
            "average_drop": metrics.average_drop_per_image(y, o).numpy(),
            "confidence_drop": metrics.confidence_drop_per_image(y, o).numpy(),
            "increase": 100.0 * (o > y).double().numpy(),
        }
        for kind, curves in (("deletion", self.deletion_curves), ("insertion", self.insertion_curves)):
            if curves:
                values[kind] = self._curves(curves)[1].numpy()
        if self.left_shares:
            values["pair_share"] = (np.asarray(self.left_shares) + np.asarray(self.right_shares)) / 2
        return values

    def _curves(self, curves: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        values = torch.cat(curves).double()
        return values, torch.trapezoid(values, torch.tensor(self.fractions, dtype=torch.float64), dim=1)

    def summary(self) -> metrics.MethodMetrics:
        images = len(self.y)
        curves = {}
        for kind, stored in (("deletion", self.deletion_curves), ("insertion", self.insertion_curves)):
            if stored:
                values, auc = self._curves(stored)
                curves[kind] = metrics.Curve(kind, torch.tensor(self.fractions), values, auc)
        pairs = metrics.PairShares(torch.tensor(self.left_shares), torch.tensor(self.right_shares)) if self.left_shares else None
        return metrics.summarize(
            self.name, torch.tensor(self.y, dtype=torch.float64), torch.tensor(self.o, dtype=torch.float64),
            curves=curves, pairs=pairs, seconds_per_image=statistics.median(self.seconds) if self.seconds else None,
            forward_passes=self.forward_passes / images, backward_passes=self.backward_passes / images,
        )

    def mean_curves(self) -> dict[str, list[float]] | None:
        if not self.deletion_curves:
            return None
        return {
            "fractions": self.fractions,
            "deletion": self._curves(self.deletion_curves)[0].mean(dim=0).tolist(),
            "insertion": self._curves(self.insertion_curves)[0].mean(dim=0).tolist(),
        }


def parse_method(name: str) -> tuple[str, type, dict]:
    """A row of the tables: a method, optionally a Cluster-CAM preset after a colon and options
    after ``@`` (each ``KEY=VALUE``, the value a Python literal or text).

    ``"clustercam:gated"`` → ``("clustercam:gated", ClusterCAM, {"preset": "gated"})``;
    ``"clustercam@beta=1"`` → ``("clustercam@beta=1", ClusterCAM, {"beta": 1})`` (the default preset at β = 1).
    """
    import ast

    row = name.strip()
    head, *settings = row.split("@")
    base, _, preset = head.partition(":")
    cls = get_method(base)  # ValueError for unknown names
    options: dict = {}
    if preset:
        if cls.name != "clustercam":
            raise ValueError(f"Only Cluster-CAM has presets; got '{name}'.")
        options["preset"] = preset_name(preset)
    for setting in settings:
        key, equals, raw = setting.partition("=")
        if not equals or not key.strip():
            raise ValueError(f"Options after '@' look like KEY=VALUE (e.g. clustercam@beta=1); got '{setting}' in '{name}'.")
        try:
            value = ast.literal_eval(raw.strip())
        except (ValueError, SyntaxError):
            value = raw.strip()
        options[key.strip()] = value
    return row, cls, options


def build_methods(spec: ModelSpec, names: Sequence[str], layer: str | None, options: Mapping[str, Mapping], batch_size: int) -> dict:
    """``{row name: method instance}``; ``options`` maps row names (or class names) to keyword options."""
    if not names:
        raise ValueError("Name at least one method.")
    parsed = [parse_method(name) for name in names]
    if len({row for row, _, _ in parsed}) != len(parsed):
        raise ValueError(f"A method is named twice: {', '.join(names)}.")
    known = {row for row, _, _ in parsed} | {cls.name for _, cls, _ in parsed}
    stray = set(options) - known
    if stray:
        raise ValueError(f"Options given for method(s) not benchmarked: {', '.join(sorted(stray))}.")
    cams = {}
    for row, cls, preset in parsed:
        given = {**preset, **options.get(cls.name, {}), **options.get(row, {})}
        given.setdefault("batch_size", batch_size)
        try:
            cams[row] = cls(spec, layer, **given)
        except TypeError as error:
            raise ValueError(f"Bad options {given} for method '{row}': {error}") from error
    return cams


def check_split(split: str, allow_tuning: bool) -> None:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}; got '{split}'.")
    if split in (TUNING, ALL) and not allow_tuning:
        raise ValueError(
            f"The {split} split includes the tuning part, on which Cluster-CAM's defaults were chosen: "
            "figures on it are not evidence. Report on --split reporting, or pass --allow-tuning to run anyway."
        )


def run_benchmark(
    data_dirs: str | os.PathLike | Sequence[str | os.PathLike],
    *,
    split: str = REPORTING,
    allow_tuning: bool = False,
    model: str | ModelSpec = DEFAULT_MODEL,
    layer: str | None = None,
    methods: Sequence[str] = ("clustercam",),
    reference: str | None = None,
    limit: int | None = None,
    batch_size: int = 8,
    target: str = "predicted",
    pairs: int | None = 10,
    pair_seed: int = PAIR_SEED,
    n_steps: int = 32,
    method_options: Mapping[str, Mapping] | None = None,
    device: str | torch.device | None = None,
    forward_batch_size: int = 64,
    resamples: int = DEFAULT_RESAMPLES,
    channels_last: bool = False,
    workers: int = 0,
    progress: bool = True,
    warmup: bool = True,
    out: str | os.PathLike | None = None,
    ranks: Ranks | None = None,
) -> BenchmarkReport:
    """Benchmark ``methods`` on the ``split`` part of ``data_dirs`` (see the module docstring).

    Args:
        split: ``"reporting"`` (default), ``"tuning"`` or ``"all"``; the last two need ``allow_tuning``.
        model: zoo name or a loaded :class:`~clustercam.zoo.ModelSpec`.
        layer: target layer of every method (default the model's).
        reference: the method every other is compared with (default the first Cluster-CAM).
        batch_size: images explained together.
        target: ``"predicted"`` (top-1 class) or ``"label"`` (the CSV's class_index).
        pairs: number of two-image pairs for the pair share (0: none; ``None``: as many as the part holds).
        pair_seed: the seed the pairs are drawn with.
        n_steps: deletion/insertion steps (0: skip those curves).
        method_options: per-method keyword options, e.g. ``{"clustercam": {"q": 6, "beta": 0.7}}``.
        forward_batch_size: images per forward pass in the metrics and the methods' masked passes.
        resamples: bootstrap resamples of each interval.
        channels_last: run the network in the channels-last memory format (the same results within
            float rounding); the model is converted in place. (The network of a loaded model
            already runs channels-last unless ``CLUSTERCAM_CHANNELS_LAST=0``.)
        workers: processes decoding and resizing the images (``torch.utils.data.DataLoader``)
            while the network runs; 0 decodes in this process. The same rows either way.
        warmup: explain the first image once with every method, untimed, before timing.
        out: when given, the report is written there, and so is every unit's record as it is done
            (:mod:`~clustercam.bench.records`): started again with the same ``out`` and settings,
            the run computes only what is missing and gives the same tables.
        ranks: this process's rank (:mod:`~clustercam.bench.distributed`); by default joined from
            torchrun's environment, or one rank of one. Every rank computes its shard; rank 0
            merges and writes the tables (the others return a report with only the settings).
    """
    if ranks is None:
        arguments = {name: value for name, value in locals().items() if name != "ranks"}
        with distributed.ranks(device) as joined:
            return run_benchmark(**arguments, ranks=joined)
    check_split(split, allow_tuning)
    if target not in TARGETS:
        raise ValueError(f"target must be one of {', '.join(TARGETS)}; got '{target}'.")
    for value, what in ((batch_size, "batch_size"), (forward_batch_size, "forward_batch_size")):
        if value < 1:
            raise ValueError(f"{what} must be at least 1; got {value}.")
    if workers < 0:
        raise ValueError(f"workers must not be negative; got {workers}.")
    if (pairs is not None and pairs < 0) or n_steps < 0:
        raise ValueError("pairs and n_steps must not be negative.")
    for name in methods:
        parse_method(name)
    read_labels(data_dirs, split=split, limit=limit)  # a bad labels.csv fails before the model is loaded
    spec = model if isinstance(model, ModelSpec) else load_model(model, ranks.device(device))
    if channels_last:
        spec.model.to(memory_format=torch.channels_last)
    samples = read_labels(data_dirs, split=split, limit=limit, classes=len(spec.categories))
    cams = build_methods(spec, list(methods), layer, method_options or {}, forward_batch_size)
    reference = reference or next((name for name, cam in cams.items() if cam.name == "clustercam"), next(iter(cams)))
    if reference not in cams:
        raise ValueError(f"The reference method '{reference}' is not among the methods benchmarked ({', '.join(cams)}).")
    chosen_pairs = draw_pairs([sample.label for sample in samples], pairs, seed=pair_seed) if pairs != 0 else []
    folders = [data_dirs] if isinstance(data_dirs, (str, os.PathLike)) else list(data_dirs)
    report = BenchmarkReport({
        "data_dirs": [str(os.path.abspath(folder)) for folder in folders],
        "split": split,
        "model": spec.name,
        "layer": next(iter(cams.values())).layer_name,
        "methods": list(cams),
        "reference": reference,
        "method_options": {name: dict((method_options or {}).get(name, {})) for name in cams},
        "images": len(samples),
        "image_size": spec.input_size,
        "batch_size": batch_size,
        "forward_batch_size": forward_batch_size,
        "target": target,
        "pairs_requested": pairs,
        "pair_seed": pair_seed,
        "n_steps": n_steps,
        "resamples": resamples,
        "channels_last": channels_last,
        "workers": workers,
        "warmup": warmup,
        "rank": ranks.rank,
        "machine": machine_info(spec.device),
    })
    store = RecordStore(out, fingerprint({
        "files": [(str(sample.path), sample.label) for sample in samples], "split": split, "model": spec.name,
        "layer": report.settings["layer"], "methods": list(cams), "options": report.settings["method_options"],
        "batch_size": batch_size, "forward_batch_size": forward_batch_size, "target": target, "n_steps": n_steps,
        "pairs": pairs, "pair_seed": pair_seed, "image_size": spec.input_size,
    }))
    units = [list(range(i, min(i + batch_size, len(samples)))) for i in range(0, len(samples), batch_size)]
    records: dict[int, dict] = {}  # this rank's units: read back from an earlier run, or computed now
    todo = []
    for index, unit in ranks.mine(units):
        found = store.load("images", index)
        if found is None:
            todo.append((index, unit))
        else:
            records[index] = found
    bar = tqdm(total=len(todo) * len(cams), desc=f"bench rank {ranks.rank}" if ranks.world > 1 else "bench",
               unit="step", file=sys.stderr, disable=not progress)
    try:
        if warmup and todo:
            first = spec.to_tensor([load_square(samples[todo[0][1][0]].path, spec.input_size)])
            for cam in cams.values():
                cam(first)
        loader = torch.utils.data.DataLoader(
            SquareImages(samples, spec.input_size), batch_sampler=[unit for _, unit in todo], num_workers=workers,
            persistent_workers=False,
        )
        started = time.perf_counter()
        for (index, unit), pixels in zip(todo, loader, strict=True):
            records[index] = _image_record(spec, cams, [samples[i] for i in unit], spec.from_pixels(pixels),
                                           target, n_steps, forward_batch_size, bar)
            store.save("images", index, records[index])
        ranks.barrier()
        seconds = time.perf_counter() - started
    finally:
        bar.close()
    computed = sum(ranks.share(sum(len(unit) for _, unit in todo)))
    report.settings.update(ranks=ranks.world, images_computed=computed,
                           images_per_second=round(computed / seconds, 3) if computed and seconds > 0 else None)
    # every rank needs every image's target to know which pairs are usable
    targets_all = [0] * len(samples)
    for shard in ranks.share({index: record["targets"] for index, record in records.items()}):
        for index, targets in shard.items():
            for position, value in zip(units[index], targets, strict=True):
                targets_all[position] = value
    usable = [(i, j) for i, j in chosen_pairs if targets_all[i] != targets_all[j]]
    report.settings["pairs"] = len(usable)
    report.settings["pairs_same_target"] = len(chosen_pairs) - len(usable)
    pair_units = [usable[i : i + batch_size] for i in range(0, len(usable), batch_size)]
    pair_records: dict[int, dict] = {}
    for index, chosen in ranks.mine(pair_units):
        pair_records[index] = store.load("pairs", index)
        if pair_records[index] is None:
            pair_records[index] = _pair_record(spec, cams, samples, targets_all, chosen, batch_size)
            store.save("pairs", index, pair_records[index])
    gathered = ranks.gather((records, pair_records))
    if not ranks.leader:
        return report
    merged_images = {index: record for shard, _ in gathered for index, record in shard.items()}
    merged_pairs = {index: record for _, shard in gathered for index, record in shard.items()}
    tallies = _tallies(report, cams, samples, units, merged_images, pair_units, merged_pairs)
    for name, tally in tallies.items():
        report.summaries[name] = tally.summary()
        curves = tally.mean_curves()
        if curves:
            report.curves[name] = curves
    report.intervals = compare(tallies, reference, resamples)
    if out is not None:
        report.write(out)
    return report


def compare(tallies: Mapping[str, MethodTally], reference: str, resamples: int = DEFAULT_RESAMPLES) -> dict[str, dict]:
    """``{method: {metric: Interval}}``: each method minus ``reference``, paired over images (pairs)."""
    base = tallies[reference].per_image()
    intervals: dict[str, dict] = {}
    for name, tally in tallies.items():
        if name == reference:
            continue
        mine = tally.per_image()
        intervals[name] = {
            metric: paired_bootstrap(mine[metric], base[metric], resamples=resamples)
            for metric in COMPARED if metric in mine and metric in base and len(mine[metric])
        }
    return intervals


def _synchronize(device: torch.device) -> None:
    """Wait for queued GPU work, so that a method's time includes its kernels."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.inference_mode()
def _probabilities(spec: ModelSpec, inputs: torch.Tensor, batch_size: int) -> torch.Tensor:
    return torch.cat([
        spec.model(inputs[i : i + batch_size]).float().softmax(dim=1) for i in range(0, inputs.shape[0], batch_size)
    ])


def _image_record(spec: ModelSpec, cams: Mapping, batch: Sequence, inputs: torch.Tensor, target: str, n_steps: int,
                  forward_batch_size: int, bar) -> dict:
    """One unit's record: the batch's targets and probabilities, then every method's figures."""
    probabilities = _probabilities(spec, inputs, forward_batch_size)
    predicted = probabilities.argmax(dim=1)
    labels = torch.tensor([sample.label for sample in batch], device=predicted.device)
    targets = predicted if target == "predicted" else labels
    y = probabilities.gather(1, targets[:, None]).squeeze(1)
    record = {"files": [sample.file for sample in batch], "targets": targets.tolist(), "predicted": predicted.tolist(),
              "y": y.double().cpu().tolist(), "methods": {}}
    for name, cam in cams.items():
        record["methods"][name] = _score_batch(cam, spec, inputs, targets, y, n_steps, forward_batch_size)
        bar.update()
    return record


def _score_batch(cam, spec: ModelSpec, inputs: torch.Tensor, targets: torch.Tensor, y: torch.Tensor, n_steps: int,
                 forward_batch_size: int) -> dict:
    """One method on one batch: its heatmaps' scores, curves, time and passes."""
    _synchronize(inputs.device)
    start = time.perf_counter()
    result = cam(inputs, targets)
    _synchronize(inputs.device)
    seconds = time.perf_counter() - start
    _, o = metrics.explanation_scores(spec.model, inputs, result.heatmaps, targets, batch_size=forward_batch_size, probabilities=y)
    curves = (
        metrics.deletion_insertion(spec.model, inputs, result.heatmaps, targets, n_steps=n_steps, batch_size=forward_batch_size)
        if n_steps else {}
    )
    return {
        "o": o.double().cpu().tolist(),
        "deletion": curves["deletion"].probabilities.double().cpu().tolist() if curves else None,
        "insertion": curves["insertion"].probabilities.double().cpu().tolist() if curves else None,
        "deletion_auc": curves["deletion"].auc.double().cpu().tolist() if curves else None,
        "insertion_auc": curves["insertion"].auc.double().cpu().tolist() if curves else None,
        "fractions": curves["deletion"].fractions.double().cpu().tolist() if curves else None,
        "seconds": seconds / inputs.shape[0],
        "forward_passes": result.forward_passes,
        "backward_passes": result.backward_passes,
    }


def _pair_record(spec: ModelSpec, cams: Mapping, samples, targets: Sequence[int], chosen: Sequence[tuple[int, int]],
                 batch_size: int) -> dict:
    """One unit of pairs: every method's share of its heatmap on each half."""
    lefts = [load_square(samples[i].path, spec.input_size) for i, _ in chosen]
    rights = [load_square(samples[j].path, spec.input_size) for _, j in chosen]
    inputs, splits = metrics.make_pairs(spec, lefts, rights)
    left_targets = torch.tensor([targets[i] for i, _ in chosen])
    right_targets = torch.tensor([targets[j] for _, j in chosen])
    record: dict = {"pairs": [list(pair) for pair in chosen], "methods": {}}
    for name, cam in cams.items():
        shares = metrics.pair_share(
            lambda x, t, cam=cam: cam(x, t).heatmaps, inputs, left_targets, right_targets, splits, batch_size=batch_size
        )
        record["methods"][name] = {"left": shares.left.tolist(), "right": shares.right.tolist()}
    return record


def _tallies(report: BenchmarkReport, cams: Mapping, samples, units: Sequence[Sequence[int]], images: Mapping[int, dict],
             pair_units: Sequence, pairs: Mapping[int, dict]) -> dict[str, MethodTally]:
    """Every unit's record, in unit order, into the tallies and the report's rows: the same
    whatever the number of ranks, and whether the records were computed now or read back."""
    tallies = {name: MethodTally(name) for name in cams}
    for index, unit in enumerate(units):
        record = images[index]
        batch = [samples[i] for i in unit]
        if record["files"] != [sample.file for sample in batch]:
            raise RuntimeError(f"The record of unit {index} is for other images; remove the output folder's records/ and run again.")
        y = torch.tensor(record["y"], dtype=torch.float64)
        for name in cams:
            tally, scored = tallies[name], record["methods"][name]
            o = torch.tensor(scored["o"], dtype=torch.float64)
            drops, signed = metrics.average_drop_per_image(y, o), metrics.confidence_drop_per_image(y, o)
            tally.y += y.tolist()
            tally.o += o.tolist()
            tally.seconds.append(scored["seconds"])
            tally.forward_passes += scored["forward_passes"]
            tally.backward_passes += scored["backward_passes"]
            if scored["deletion"] is not None:
                tally.deletion_curves.append(torch.tensor(scored["deletion"], dtype=torch.float64))
                tally.insertion_curves.append(torch.tensor(scored["insertion"], dtype=torch.float64))
                tally.fractions = scored["fractions"]
            n = len(batch)
            for i, sample in enumerate(batch):
                report.rows.append({
                    "file": sample.file,
                    "split": sample.split,
                    "label": sample.label,
                    "predicted": int(record["predicted"][i]),
                    "target": int(record["targets"][i]),
                    "method": name,
                    "y": float(y[i]),
                    "o": float(o[i]),
                    "average_drop": float(drops[i]),
                    "confidence_drop": float(signed[i]),
                    "increase": int(o[i] > y[i]),
                    "deletion": scored["deletion_auc"][i] if scored["deletion"] is not None else None,
                    "insertion": scored["insertion_auc"][i] if scored["deletion"] is not None else None,
                    "seconds": scored["seconds"],
                    "forward_passes": scored["forward_passes"] / n,
                    "backward_passes": scored["backward_passes"] / n,
                })
    for name in cams:
        number = 0
        for index in range(len(pair_units)):
            record = pairs[index]
            shares = record["methods"][name]
            tallies[name].left_shares += shares["left"]
            tallies[name].right_shares += shares["right"]
            for (i, j), left, right in zip(record["pairs"], shares["left"], shares["right"], strict=True):
                report.pair_rows.append({"pair": number, "left_file": samples[i].file, "right_file": samples[j].file,
                                         "method": name, "left_share": left, "right_share": right, "share": (left + right) / 2})
                number += 1
    return tallies
