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

A run goes by stages, each in its module:

1. plan (:mod:`~clustercam.bench.plan`): check and resolve the :class:`~clustercam.bench.settings.BenchmarkSettings`,
   load the model, build the methods, read the labels, draw the pairs;
2. run the units (:mod:`~clustercam.bench.units`): this rank's image units, then its pair units;
3. gather (:func:`gather`): every rank's records on rank 0;
4. report (:mod:`~clustercam.bench.tally`, :func:`fill_report`): tallies, summaries, intervals, then
   :meth:`~clustercam.bench.report.BenchmarkReport.write`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from contextlib import nullcontext
from dataclasses import replace

import torch

from ..stats import DEFAULT_RESAMPLES
from ..zoo import DEFAULT_MODEL, ModelSpec
from . import distributed
from .data import PAIR_SEED, REPORTING
from .distributed import Ranks
from .plan import Plan, build_methods, make_plan, parse_method
from .records import RecordStore
from .report import BenchmarkReport
from .settings import TARGETS, BenchmarkSettings, check_split
from .tally import COMPARED, MethodTally, compare, tally_records
from .units import UnitRecords, run_units

__all__ = [
    "COMPARED", "TARGETS", "BenchmarkSettings", "MethodTally", "Plan", "build_methods", "check_split", "compare",
    "parse_method", "run_benchmark",
]


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
    adcc: bool = True,
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
        adcc: ADCC and its parts (Poppi et al.): each method also explains every image masked by
            its own heatmap, for the coherency; those passes are counted apart.
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
    settings = BenchmarkSettings(
        data_dirs, split=split, allow_tuning=allow_tuning, model=model, layer=layer, methods=methods,
        reference=reference, limit=limit, batch_size=batch_size, target=target, pairs=pairs, pair_seed=pair_seed,
        n_steps=n_steps, adcc=adcc, method_options=method_options, device=device, forward_batch_size=forward_batch_size,
        resamples=resamples, channels_last=channels_last, workers=workers, progress=progress, warmup=warmup, out=out,
    )
    with distributed.ranks(device) if ranks is None else nullcontext(ranks) as joined:
        return run_on_rank(settings, joined)


def run_on_rank(settings: BenchmarkSettings, ranks: Ranks) -> BenchmarkReport:
    """The run by stages on one rank: plan, run this rank's units, gather every rank's records on
    rank 0, report. Every rank returns a report with the settings; rank 0's has the tables too."""
    plan = make_plan(settings, ranks)
    reported = settings.report_settings(plan, ranks.rank)
    done = run_units(plan, RecordStore(settings.out, settings.fingerprint(plan)), ranks)
    report = BenchmarkReport({**reported, **done.run_settings(ranks.world)})
    everything = gather(done, ranks)
    if everything is None:
        return report
    fill_report(report, plan, everything)
    if settings.out is not None:
        report.write(settings.out)
    return report


def gather(done: UnitRecords, ranks: Ranks) -> UnitRecords | None:
    """Every rank's records on rank 0 (None on the other ranks)."""
    gathered = ranks.gather((done.images, done.pairs))
    if not ranks.leader:
        return None
    images = {index: record for shard, _ in gathered for index, record in shard.items()}
    pairs = {index: record for _, shard in gathered for index, record in shard.items()}
    return replace(done, images=images, pairs=pairs)


def fill_report(report: BenchmarkReport, plan: Plan, done: UnitRecords) -> None:
    """Every record into the report: rows, summaries (Tables 1 and 2), mean curves, intervals."""
    tallies = tally_records(list(plan.cams), plan.samples, done.image_units, done.images, done.pair_units, done.pairs)
    report.rows, report.pair_rows = tallies.rows, tallies.pair_rows
    for name, tally in tallies.methods.items():
        report.summaries[name] = tally.summary()
        curves = tally.mean_curves()
        if curves:
            report.curves[name] = curves
    report.intervals = compare(tallies.methods, plan.reference, plan.settings.resamples)
