"""What a benchmark run is asked for: one frozen :class:`BenchmarkSettings`.

The settings are the keyword parameters of :func:`clustercam.bench.runner.run_benchmark`. They
are the one source of both

- the report's settings (``results.json``'s ``"settings"``, the tables' captions), and
- the records' fingerprint (:mod:`~clustercam.bench.records`: what changes a record's numbers),

each read off :meth:`BenchmarkSettings.describe`, where every setting is listed once with its
name in the report and, when it changes the numbers, its name in the fingerprint.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from ..stats import DEFAULT_RESAMPLES
from ..zoo import DEFAULT_MODEL, ModelSpec
from .data import ALL, PAIR_SEED, REPORTING, SPLITS, TUNING
from .records import fingerprint
from .report import machine_info

if TYPE_CHECKING:
    from .plan import Plan

TARGETS = ("predicted", "label")


def check_split(split: str, allow_tuning: bool) -> None:
    """Refuse an unknown part, and the tuning part unless ``allow_tuning`` (docs/protocol.md)."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}; got '{split}'.")
    if split in (TUNING, ALL) and not allow_tuning:
        raise ValueError(
            f"The {split} split includes the tuning part, on which Cluster-CAM's defaults were chosen: "
            "figures on it are not evidence. Report on --split reporting, or pass --allow-tuning to run anyway."
        )


@dataclass(frozen=True)
class Setting:
    """One line of :meth:`BenchmarkSettings.describe`."""

    report: str  # its key in the report's settings
    fingerprint: str | None  # its key in the records' fingerprint; None: it does not change a record
    value: Any


@dataclass(frozen=True)
class BenchmarkSettings:
    """What the caller asked for (the parameters of :func:`~clustercam.bench.runner.run_benchmark`,
    documented there), as given: model, layer, methods and reference are resolved by the plan
    (:func:`~clustercam.bench.plan.make_plan`)."""

    data_dirs: str | os.PathLike | Sequence[str | os.PathLike]
    split: str = REPORTING
    allow_tuning: bool = False
    model: str | ModelSpec = DEFAULT_MODEL
    layer: str | None = None
    methods: Sequence[str] = ("clustercam",)
    reference: str | None = None
    limit: int | None = None
    batch_size: int = 8
    target: str = "predicted"
    pairs: int | None = 10
    pair_seed: int = PAIR_SEED
    n_steps: int = 32
    adcc: bool = True
    method_options: Mapping[str, Mapping] | None = None
    device: str | torch.device | None = None
    forward_batch_size: int = 64
    resamples: int = DEFAULT_RESAMPLES
    channels_last: bool = False
    workers: int = 0
    progress: bool = True
    warmup: bool = True
    out: str | os.PathLike | None = None

    def check(self) -> None:
        """Refuse settings that cannot run (before any file or model is read)."""
        check_split(self.split, self.allow_tuning)
        if self.target not in TARGETS:
            raise ValueError(f"target must be one of {', '.join(TARGETS)}; got '{self.target}'.")
        for value, what in ((self.batch_size, "batch_size"), (self.forward_batch_size, "forward_batch_size")):
            if value < 1:
                raise ValueError(f"{what} must be at least 1; got {value}.")
        if self.workers < 0:
            raise ValueError(f"workers must not be negative; got {self.workers}.")
        if (self.pairs is not None and self.pairs < 0) or self.n_steps < 0:
            raise ValueError("pairs and n_steps must not be negative.")

    @property
    def folders(self) -> list[str | os.PathLike]:
        """``data_dirs`` as a list."""
        return [self.data_dirs] if isinstance(self.data_dirs, (str, os.PathLike)) else list(self.data_dirs)

    def options_for(self, row: str) -> dict:
        """The keyword options given for one row of the tables (by its row name)."""
        return dict((self.method_options or {}).get(row, {}))

    def describe(self, plan: Plan) -> list[Setting]:
        """Every setting of the report, in its order, as ``plan`` resolved it; the ones that
        change a record's numbers carry their fingerprint key (the keys records have always been
        written under: renaming one would orphan the records of earlier runs)."""
        spec = plan.spec
        return [
            Setting("data_dirs", None, [str(os.path.abspath(folder)) for folder in self.folders]),
            Setting("split", "split", self.split),
            Setting("model", "model", spec.name),
            Setting("layer", "layer", plan.layer),
            Setting("methods", "methods", list(plan.cams)),
            Setting("reference", None, plan.reference),
            Setting("method_options", "options", {row: self.options_for(row) for row in plan.cams}),
            Setting("images", None, len(plan.samples)),
            Setting("image_size", "image_size", spec.input_size),
            Setting("batch_size", "batch_size", self.batch_size),
            Setting("forward_batch_size", "forward_batch_size", self.forward_batch_size),
            Setting("target", "target", self.target),
            Setting("pairs_requested", "pairs", self.pairs),
            Setting("pair_seed", "pair_seed", self.pair_seed),
            Setting("n_steps", "n_steps", self.n_steps),
            # in the fingerprint only when on: records written without ADCC stay usable by a run without it
            Setting("adcc", "adcc" if self.adcc else None, self.adcc),
            Setting("resamples", None, self.resamples),
            Setting("channels_last", None, self.channels_last),
            Setting("workers", None, self.workers),
            Setting("warmup", None, self.warmup),
        ]

    def report_settings(self, plan: Plan, rank: int) -> dict:
        """The report's settings: every setting, this process's rank and the machine."""
        described = {setting.report: setting.value for setting in self.describe(plan)}
        return {**described, "rank": rank, "machine": machine_info(plan.spec.device)}

    def fingerprint(self, plan: Plan) -> str:
        """The records' key (:func:`~clustercam.bench.records.fingerprint`): the images with their
        labels and every setting that changes a record's numbers."""
        files = [(str(sample.path), sample.label) for sample in plan.samples]
        changing = {setting.fingerprint: setting.value for setting in self.describe(plan) if setting.fingerprint}
        return fingerprint({"files": files, **changing})
