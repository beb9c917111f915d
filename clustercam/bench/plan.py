"""The benchmark's first stage: check and resolve the settings into a :class:`Plan`.

The plan loads the model, builds one method per row of the tables, reads the labelled images of
the chosen part and draws the pairs; every later stage reads it and nothing changes it.
"""

from __future__ import annotations

import ast
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch

from ..methods import get_method
from ..methods.base import BaseCAM
from ..methods.presets import preset_name
from ..zoo import ModelSpec, load_model
from .data import Sample, draw_pairs, read_labels
from .distributed import Ranks
from .settings import BenchmarkSettings


def parse_method(name: str) -> tuple[str, type, dict]:
    """A row of the tables: a method, optionally a Cluster-CAM preset after a colon and options
    after ``@`` (each ``KEY=VALUE``, the value a Python literal or text).

    ``"clustercam:gated"`` → ``("clustercam:gated", ClusterCAM, {"preset": "gated"})``;
    ``"clustercam@beta=1"`` → ``("clustercam@beta=1", ClusterCAM, {"beta": 1})`` (the default preset at β = 1).
    """
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


@dataclass(frozen=True)
class Plan:
    """The settings resolved: what every later stage of the run reads.

    Attributes:
        settings: what the caller asked for.
        spec: the loaded model.
        cams: ``{row name: method}``, one per row of the tables, in the order asked.
        samples: the labelled images of the part, in folder and file order.
        reference: the row every other is compared with.
        pairs: the pairs drawn (indices into ``samples``), before those of one target are left out.
    """

    settings: BenchmarkSettings
    spec: ModelSpec
    cams: dict[str, BaseCAM]
    samples: list[Sample]
    reference: str
    pairs: list[tuple[int, int]]

    @property
    def layer(self) -> str:
        """The target layer every method explains."""
        return next(iter(self.cams.values())).layer_name

    def image_units(self) -> list[list[int]]:
        """The batches of image indices, formed over the whole part (the same on any number of ranks)."""
        size, count = self.settings.batch_size, len(self.samples)
        return [list(range(i, min(i + size, count))) for i in range(0, count, size)]


def make_plan(settings: BenchmarkSettings, ranks: Ranks) -> Plan:
    """Check the settings, then load the model, build the methods, read the labels and draw the
    pairs. Bad settings, method names and ``labels.csv`` rows fail before the model is loaded."""
    settings.check()
    for name in settings.methods:
        parse_method(name)
    read_labels(settings.data_dirs, split=settings.split, limit=settings.limit)
    spec = _load(settings, ranks)
    samples = read_labels(settings.data_dirs, split=settings.split, limit=settings.limit, classes=len(spec.categories))
    cams = build_methods(spec, list(settings.methods), settings.layer, settings.method_options or {},
                         settings.forward_batch_size)
    reference = _reference(settings.reference, cams)
    pairs = (draw_pairs([sample.label for sample in samples], settings.pairs, seed=settings.pair_seed)
             if settings.pairs != 0 else [])
    return Plan(settings, spec, cams, samples, reference, pairs)


def _load(settings: BenchmarkSettings, ranks: Ranks) -> ModelSpec:
    """The model as named (on this rank's device) or as given; channels-last when asked."""
    model = settings.model
    spec = model if isinstance(model, ModelSpec) else load_model(model, ranks.device(settings.device))
    if settings.channels_last:
        spec.model.to(memory_format=torch.channels_last)
    return spec


def _reference(asked: str | None, cams: Mapping[str, BaseCAM]) -> str:
    """The row asked for, or the first Cluster-CAM, or the first row."""
    reference = asked or next((name for name, cam in cams.items() if cam.name == "clustercam"), next(iter(cams)))
    if reference not in cams:
        raise ValueError(f"The reference method '{reference}' is not among the methods benchmarked ({', '.join(cams)}).")
    return reference
