"""The benchmark's second stage: run this rank's units, image units first, then pair units.

A unit's record (every method's per-image or per-pair figures) is read back from the
:class:`~clustercam.bench.records.RecordStore` when an earlier run wrote it, and otherwise
computed and written as soon as it is done, so that a stopped run resumes where it stopped.
Units go to ranks as :meth:`~clustercam.bench.distributed.Ranks.mine` shares them out.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from .. import metrics
from ..zoo import ModelSpec
from .data import Sample, SquareImages, load_square
from .distributed import Ranks
from .plan import Plan
from .records import RecordStore


@dataclass
class UnitRecords:
    """This rank's records and what the run of its units measured."""

    image_units: list[list[int]]  # every rank's units (indices into the samples)
    images: dict[int, dict]  # unit index → record: this rank's units (every rank's after gathering)
    pair_units: list[list[tuple[int, int]]]
    pairs: dict[int, dict]  # likewise
    images_computed: int  # on every rank together
    seconds: float  # this rank's wall time over its image units
    pairs_same_target: int  # pairs drawn but left out: both images have one target

    def run_settings(self, world: int) -> dict:
        """What the report's settings add after the run (Table 2's throughput, the pairs used)."""
        computed, seconds = self.images_computed, self.seconds
        return {
            "ranks": world,
            "images_computed": computed,
            "images_per_second": round(computed / seconds, 3) if computed and seconds > 0 else None,
            "pairs": sum(len(unit) for unit in self.pair_units),
            "pairs_same_target": self.pairs_same_target,
        }


def run_units(plan: Plan, store: RecordStore, ranks: Ranks) -> UnitRecords:
    """Every unit of this rank: read back from ``store`` or computed (and saved there)."""
    image_units = plan.image_units()
    images, computed, seconds = _run_image_units(plan, store, ranks, image_units)
    targets = _share_targets(ranks, image_units, images, len(plan.samples))
    usable = [(i, j) for i, j in plan.pairs if targets[i] != targets[j]]
    size = plan.settings.batch_size
    pair_units = [usable[i : i + size] for i in range(0, len(usable), size)]
    pairs = _run_pair_units(plan, store, ranks, pair_units, targets)
    return UnitRecords(image_units, images, pair_units, pairs, computed, seconds, len(plan.pairs) - len(usable))


def _run_image_units(plan: Plan, store: RecordStore, ranks: Ranks, units: Sequence[list[int]]) -> tuple[dict, int, float]:
    """This rank's image units: ``(records, images computed on every rank, seconds here)``."""
    settings, spec, cams = plan.settings, plan.spec, plan.cams
    records: dict[int, dict] = {}  # read back from an earlier run, or computed now
    todo = []
    for index, unit in ranks.mine(units):
        found = store.load("images", index)
        if found is None:
            todo.append((index, unit))
        else:
            records[index] = found
    bar = tqdm(total=len(todo) * len(cams), desc=f"bench rank {ranks.rank}" if ranks.world > 1 else "bench",
               unit="step", file=sys.stderr, disable=not settings.progress)
    try:
        if settings.warmup and todo:
            _warm_up(plan, plan.samples[todo[0][1][0]])
        loader = torch.utils.data.DataLoader(
            SquareImages(plan.samples, spec.input_size), batch_sampler=[unit for _, unit in todo],
            num_workers=settings.workers, persistent_workers=False,
        )
        started = time.perf_counter()
        for (index, unit), pixels in zip(todo, loader, strict=True):
            records[index] = _image_record(plan, [plan.samples[i] for i in unit], spec.from_pixels(pixels), bar)
            store.save("images", index, records[index])
        ranks.barrier()
        seconds = time.perf_counter() - started
    finally:
        bar.close()
    computed = sum(ranks.share(sum(len(unit) for _, unit in todo)))
    return records, computed, seconds


def _warm_up(plan: Plan, sample: Sample) -> None:
    """Explain one image once with every method, untimed."""
    first = plan.spec.to_tensor([load_square(sample.path, plan.spec.input_size)])
    for cam in plan.cams.values():
        cam(first)


def _share_targets(ranks: Ranks, units: Sequence[Sequence[int]], records: Mapping[int, dict], count: int) -> list[int]:
    """Every image's target on every rank: each needs them all to know which pairs are usable."""
    targets = [0] * count
    for shard in ranks.share({index: record["targets"] for index, record in records.items()}):
        for index, shard_targets in shard.items():
            for position, value in zip(units[index], shard_targets, strict=True):
                targets[position] = value
    return targets


def _run_pair_units(plan: Plan, store: RecordStore, ranks: Ranks, units: Sequence[list[tuple[int, int]]],
                    targets: Sequence[int]) -> dict[int, dict]:
    """This rank's pair units, read back or computed."""
    records: dict[int, dict] = {}
    for index, chosen in ranks.mine(units):
        records[index] = store.load("pairs", index)
        if records[index] is None:
            records[index] = _pair_record(plan, targets, chosen)
            store.save("pairs", index, records[index])
    return records


def _synchronize(device: torch.device) -> None:
    """Wait for queued GPU work, so that a method's time includes its kernels."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.inference_mode()
def _probabilities(spec: ModelSpec, inputs: torch.Tensor, batch_size: int) -> torch.Tensor:
    return torch.cat([
        spec.model(inputs[i : i + batch_size]).float().softmax(dim=1) for i in range(0, inputs.shape[0], batch_size)
    ])


def _image_record(plan: Plan, batch: Sequence[Sample], inputs: torch.Tensor, bar) -> dict:
    """One unit's record: the batch's targets and probabilities, then every method's figures."""
    settings = plan.settings
    probabilities = _probabilities(plan.spec, inputs, settings.forward_batch_size)
    predicted = probabilities.argmax(dim=1)
    labels = torch.tensor([sample.label for sample in batch], device=predicted.device)
    targets = predicted if settings.target == "predicted" else labels
    y = probabilities.gather(1, targets[:, None]).squeeze(1)
    record = {"files": [sample.file for sample in batch], "targets": targets.tolist(), "predicted": predicted.tolist(),
              "y": y.double().cpu().tolist(), "methods": {}}
    for name, cam in plan.cams.items():
        record["methods"][name] = _score_batch(cam, plan.spec, inputs, targets, y, settings.n_steps,
                                               settings.forward_batch_size, settings.adcc)
        bar.update()
    return record


def _score_batch(cam, spec: ModelSpec, inputs: torch.Tensor, targets: torch.Tensor, y: torch.Tensor, n_steps: int,
                 forward_batch_size: int, adcc: bool = False) -> dict:
    """One method on one batch: its heatmaps' scores, curves, ADCC (its coherency explains the masked
    images once more: those passes are recorded apart), time and passes."""
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
    parts = metrics.adcc(cam, spec.model, inputs, result.heatmaps, targets, batch_size=forward_batch_size,
                         probabilities=y, kept=o) if adcc else None
    return {
        "o": o.double().cpu().tolist(),
        "coherency": parts.coherency.tolist() if parts else None,
        "complexity": parts.complexity.tolist() if parts else None,
        "adcc": parts.adcc.tolist() if parts else None,
        "coherency_forward_passes": parts.forward_passes if parts else None,
        "coherency_backward_passes": parts.backward_passes if parts else None,
        "deletion": curves["deletion"].probabilities.double().cpu().tolist() if curves else None,
        "insertion": curves["insertion"].probabilities.double().cpu().tolist() if curves else None,
        "deletion_auc": curves["deletion"].auc.double().cpu().tolist() if curves else None,
        "insertion_auc": curves["insertion"].auc.double().cpu().tolist() if curves else None,
        "fractions": curves["deletion"].fractions.double().cpu().tolist() if curves else None,
        "seconds": seconds / inputs.shape[0],
        "forward_passes": result.forward_passes,
        "backward_passes": result.backward_passes,
    }


def _pair_record(plan: Plan, targets: Sequence[int], chosen: Sequence[tuple[int, int]]) -> dict:
    """One unit of pairs: every method's share of its heatmap on each half."""
    spec, samples = plan.spec, plan.samples
    lefts = [load_square(samples[i].path, spec.input_size) for i, _ in chosen]
    rights = [load_square(samples[j].path, spec.input_size) for _, j in chosen]
    inputs, splits = metrics.make_pairs(spec, lefts, rights)
    left_targets = torch.tensor([targets[i] for i, _ in chosen])
    right_targets = torch.tensor([targets[j] for _, j in chosen])
    record: dict = {"pairs": [list(pair) for pair in chosen], "methods": {}}
    for name, cam in plan.cams.items():
        shares = metrics.pair_share(
            lambda x, t, cam=cam: cam(x, t).heatmaps, inputs, left_targets, right_targets, splits,
            batch_size=plan.settings.batch_size,
        )
        record["methods"][name] = {"left": shares.left.tolist(), "right": shares.right.tolist()}
    return record
