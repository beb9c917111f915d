"""The benchmark's last stage: every record, in unit order, into one tally per method, the rows
of the per-image and per-pair CSVs, and the paired intervals of each method against the reference.

The records are read in unit order whichever rank computed them and whether they were computed
now or read back, so one process, N ranks and a resumed run give the same tables.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from .. import metrics
from ..stats import DEFAULT_RESAMPLES, paired_bootstrap
from .data import Sample

#: Per-image (and per-pair) figures compared between methods with paired bootstrap intervals.
COMPARED = ("average_drop", "confidence_drop", "increase", "deletion", "insertion", "pair_share", "adcc", "coherency",
            "complexity")


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
    coherency: list[float] = field(default_factory=list)  # ADCC's parts per image, in [0, 1]
    complexity: list[float] = field(default_factory=list)
    adcc: list[float] = field(default_factory=list)
    coherency_forward_passes: int = 0
    coherency_backward_passes: int = 0

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
        if self.adcc:  # percentages, as the drops
            values.update(adcc=100.0 * np.asarray(self.adcc), coherency=100.0 * np.asarray(self.coherency),
                          complexity=100.0 * np.asarray(self.complexity))
        return values

    def adcc_parts(self) -> metrics.ADCC | None:
        """ADCC and its parts over every image so far (None when the run had no ADCC)."""
        if not self.adcc:
            return None
        y, o = torch.tensor(self.y, dtype=torch.float64), torch.tensor(self.o, dtype=torch.float64)
        return metrics.ADCC(metrics.average_drop_per_image(y, o) / 100.0, torch.tensor(self.coherency),
                            torch.tensor(self.complexity), torch.tensor(self.adcc),
                            self.coherency_forward_passes, self.coherency_backward_passes)

    def _curves(self, curves: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        values = torch.cat(curves).double()
        return values, torch.trapezoid(values, torch.tensor(self.fractions, dtype=torch.float64), dim=1)

    def summary(self) -> metrics.MethodMetrics:
        """The method's line of Tables 1 and 2."""
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
            adcc=self.adcc_parts(),
        )

    def mean_curves(self) -> dict[str, list[float]] | None:
        """The mean deletion and insertion curves (None when the run had no curves)."""
        if not self.deletion_curves:
            return None
        return {
            "fractions": self.fractions,
            "deletion": self._curves(self.deletion_curves)[0].mean(dim=0).tolist(),
            "insertion": self._curves(self.insertion_curves)[0].mean(dim=0).tolist(),
        }


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


@dataclass
class Tallies:
    """Every record read into one tally per method and the rows of the CSVs."""

    methods: dict[str, MethodTally]
    rows: list[dict] = field(default_factory=list)  # per image × method
    pair_rows: list[dict] = field(default_factory=list)  # per pair × method


def tally_records(names: Sequence[str], samples: Sequence[Sample], units: Sequence[Sequence[int]],
                  images: Mapping[int, dict], pair_units: Sequence, pairs: Mapping[int, dict]) -> Tallies:
    """Every unit's record, in unit order, into the tallies and the rows: the same whatever the
    number of ranks, and whether the records were computed now or read back."""
    tallies = Tallies({name: MethodTally(name) for name in names})
    for index, unit in enumerate(units):
        _tally_image_unit(tallies, index, [samples[i] for i in unit], images[index])
    for name in names:
        _tally_pairs(tallies, name, samples, [pairs[index] for index in range(len(pair_units))])
    return tallies


def _tally_image_unit(tallies: Tallies, index: int, batch: Sequence[Sample], record: dict) -> None:
    """One image unit's record into every method's tally and rows."""
    if record["files"] != [sample.file for sample in batch]:
        raise RuntimeError(f"The record of unit {index} is for other images; remove the output folder's records/ and run again.")
    y = torch.tensor(record["y"], dtype=torch.float64)
    for name, tally in tallies.methods.items():
        scored = record["methods"][name]
        o = torch.tensor(scored["o"], dtype=torch.float64)
        tally.y += y.tolist()
        tally.o += o.tolist()
        tally.seconds.append(scored["seconds"])
        tally.forward_passes += scored["forward_passes"]
        tally.backward_passes += scored["backward_passes"]
        if scored.get("adcc") is not None:
            tally.coherency += scored["coherency"]
            tally.complexity += scored["complexity"]
            tally.adcc += scored["adcc"]
            tally.coherency_forward_passes += scored["coherency_forward_passes"]
            tally.coherency_backward_passes += scored["coherency_backward_passes"]
        if scored["deletion"] is not None:
            tally.deletion_curves.append(torch.tensor(scored["deletion"], dtype=torch.float64))
            tally.insertion_curves.append(torch.tensor(scored["insertion"], dtype=torch.float64))
            tally.fractions = scored["fractions"]
        tallies.rows += _image_rows(name, batch, record, y, o, scored)


def _image_rows(name: str, batch: Sequence[Sample], record: dict, y: torch.Tensor, o: torch.Tensor, scored: dict) -> list[dict]:
    """One method's rows of the per-image CSV for one unit."""
    drops, signed = metrics.average_drop_per_image(y, o), metrics.confidence_drop_per_image(y, o)
    curves = scored["deletion"] is not None
    n = len(batch)
    return [
        {
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
            "deletion": scored["deletion_auc"][i] if curves else None,
            "insertion": scored["insertion_auc"][i] if curves else None,
            "seconds": scored["seconds"],
            "forward_passes": scored["forward_passes"] / n,
            "backward_passes": scored["backward_passes"] / n,
            "adcc": scored["adcc"][i] if scored.get("adcc") is not None else None,
            "coherency": scored["coherency"][i] if scored.get("adcc") is not None else None,
            "complexity": scored["complexity"][i] if scored.get("adcc") is not None else None,
        }
        for i, sample in enumerate(batch)
    ]


def _tally_pairs(tallies: Tallies, name: str, samples: Sequence[Sample], records: Sequence[dict]) -> None:
    """One method's shares over every pair unit, in unit order, into its tally and rows."""
    tally = tallies.methods[name]
    number = 0
    for record in records:
        shares = record["methods"][name]
        tally.left_shares += shares["left"]
        tally.right_shares += shares["right"]
        for (i, j), left, right in zip(record["pairs"], shares["left"], shares["right"], strict=True):
            tallies.pair_rows.append({"pair": number, "left_file": samples[i].file, "right_file": samples[j].file,
                                      "method": name, "left_share": left, "right_share": right, "share": (left + right) / 2})
            number += 1
