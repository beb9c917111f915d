"""What the tuning scripts share (``sweep_defaults.py``, ``tune_eq22.py``): the tuning part's
photographs and pairs, Cluster-CAM scored under many cognition settings from one clustering,
Grad-CAM on the same data, the figures of a configuration and its paired intervals to Grad-CAM.

Run the scripts from the repository root; this module is imported by them, not run.
"""

from __future__ import annotations

import csv
import itertools
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from _common import ROOT
from tqdm import tqdm

import clustercam
from clustercam import metrics
from clustercam.bench.data import draw_pairs, load_square
from clustercam.clustering import cluster_quality
from clustercam.maps import masked_probabilities
from clustercam.methods.cluster import Cognition
from clustercam.stats import paired_bootstrap

#: The evaluation folders (only their tuning part is read).
DATA = [ROOT.parent / "shared" / "eval" / "imagenet-samples", ROOT.parent / "shared" / "eval" / "ilsvrc-val-650"]


@dataclass
class Data:
    """Images of the tuning part as tensors, their targets, and pairs as network inputs."""

    images: torch.Tensor
    targets: torch.Tensor
    pair_inputs: torch.Tensor
    splits: torch.Tensor
    left: torch.Tensor
    right: torch.Tensor
    files: list[str] = field(default_factory=list)


def load_images(spec, samples) -> tuple[list, torch.Tensor, torch.Tensor]:
    """The photographs as squares (loaded as uploads are), as one input tensor, and their predicted classes."""
    squares = [load_square(s.path, spec.input_size) for s in samples]
    images = spec.to_tensor(squares)
    with torch.no_grad():  # targets are used by gradient methods too: no inference tensors
        targets = torch.cat([spec.predict(images[i : i + 16]).argmax(1) for i in range(0, len(images), 16)])
    return squares, images, targets


def target_probabilities(spec, images: torch.Tensor, targets: torch.Tensor) -> np.ndarray:
    """Y: each image's probability of its target class."""
    with torch.inference_mode():
        return torch.cat([
            spec.predict(images[i : i + 16]).gather(1, targets[i : i + 16, None]).squeeze(1)
            for i in range(0, len(images), 16)
        ]).double().numpy()


def load_data(spec, samples, pair_count: int | None) -> Data:
    """The photographs and the usable pairs among them (those of two different predicted classes)."""
    squares, images, targets = load_images(spec, samples)
    chosen = [(i, j) for i, j in draw_pairs([s.label for s in samples], pair_count) if targets[i] != targets[j]]
    pair_inputs, splits = metrics.make_pairs(spec, [squares[i] for i, _ in chosen], [squares[j] for _, j in chosen])
    return Data(images, targets, pair_inputs, torch.tensor(splits), targets[[i for i, _ in chosen]],
                targets[[j for _, j in chosen]], [s.file for s in samples])


def combos_grid(combinations, normalizations, outputs, betas) -> list[Cognition]:
    return [Cognition(b, n, o, c) for c, n, o, b in itertools.product(combinations, normalizations, outputs, betas)]


def heatmap_grid(result, cognitions: list[Cognition], scores=None) -> torch.Tensor:
    """``(B, M, H, W)``: one Cluster-CAM result's heatmaps under each cognition setting."""
    scores = result.scores if scores is None else scores
    return torch.stack([c.heatmaps(result.masks, result.cluster_maps, scores) for c in cognitions], dim=1)


def score_config(spec, data: Data, make_cam, cognitions, batch: int, desc: str, quality: bool = False) -> dict:
    """Per-image O ``(n, M)`` and per-pair shares ``(P, M)`` of one clustering under M cognitions."""
    cam = make_cam()
    o_rows, shares, qualities, pair_qualities = [], [], [], []
    for start in tqdm(range(0, len(data.images), batch), desc=desc, file=sys.stderr, leave=False):
        x, t = data.images[start : start + batch], data.targets[start : start + batch]
        result = cam(x, t)
        heatmaps = heatmap_grid(result, cognitions)
        probabilities = masked_probabilities(spec.model, x, heatmaps, batch_size=8)
        o_rows.append(probabilities.gather(2, t.view(-1, 1, 1).expand(-1, len(cognitions), 1)).squeeze(2).cpu())
        if quality:
            qualities += [cluster_quality(result.activations[i], result.labels[i]) for i in range(len(x))]
    for start in range(0, len(data.pair_inputs), 4):
        rows = slice(start, start + 4)
        left = cam(data.pair_inputs[rows], data.left[rows])
        right = left.retarget(data.right[rows])
        split = data.splits[rows].repeat_interleave(len(cognitions))
        lshare = metrics.half_shares(heatmap_grid(left, cognitions).flatten(0, 1), split)[0]
        rshare = metrics.half_shares(heatmap_grid(right, cognitions).flatten(0, 1), split)[1]
        shares.append(((lshare + rshare) / 2).view(-1, len(cognitions)).cpu())
        if quality:
            pair_qualities += [cluster_quality(left.activations[i], left.labels[i]) for i in range(left.labels.shape[0])]
    out = {"o": torch.cat(o_rows).double().numpy(), "pairs": torch.cat(shares).double().numpy()}
    if quality:
        out["quality"] = qualities
        out["pair_quality"] = pair_qualities
    return out


def gradcam_scores(spec, data: Data, batch: int) -> dict:
    cam = clustercam.get_method("gradcam")(spec)
    o = []
    for start in range(0, len(data.images), batch):
        x, t = data.images[start : start + batch], data.targets[start : start + batch]
        _, scores = metrics.explanation_scores(spec.model, x, cam(x, t).heatmaps, t, batch_size=8, probabilities=torch.ones(len(x)))
        o.append(scores.cpu())
    shares = metrics.pair_share(lambda x, t: cam(x, t).heatmaps, data.pair_inputs, data.left, data.right, data.splits, batch_size=4)
    return {"o": torch.cat(o).double().numpy()[:, None], "pairs": shares.per_pair.double().numpy()[:, None]}


def summary(y: np.ndarray, o: np.ndarray, pairs: np.ndarray) -> dict:
    return {
        "average_drop": float(metrics.average_drop_per_image(torch.from_numpy(y), torch.from_numpy(o)).mean()),
        "increase": float(100 * np.mean(o > y)),
        "pair_share": float(np.mean(pairs)),
    }


def per_image(y: np.ndarray, o: np.ndarray) -> dict[str, np.ndarray]:
    return {
        "average_drop": metrics.average_drop_per_image(torch.from_numpy(y), torch.from_numpy(o)).numpy(),
        "increase": 100.0 * (o > y),
    }


def records_of(key: dict, scores: dict, cognitions: list[Cognition], y: np.ndarray) -> list[dict]:
    rows = []
    for m, c in enumerate(cognitions):
        rows.append({**key, "combination": c.combination, "normalization": c.normalization, "output": c.output,
                     "beta": c.beta, **summary(y, scores["o"][:, m], scores["pairs"][:, m]), "_o": scores["o"][:, m],
                     "_pairs": scores["pairs"][:, m]})
    return rows


def clustering_of(row: dict) -> dict:
    """ClusterCAM keyword options of a record's clustering."""
    options = {"q": row["q"], "clustering": row["clustering"]}
    if row["clustering"] == "spectral":
        options.update(similarity=row["similarity"], normalize_rows=row["normalize_rows"])
    return options


def preset_entry(row: dict) -> dict:
    """A record as a ``PRESETS`` entry of ``clustercam/methods/presets.py`` (ClusterCAM keyword options)."""
    entry = {"q": row["q"], "beta": row["beta"], "clustering": row["clustering"], "normalization": row["normalization"],
             "output": row["output"], "combination": row["combination"]}
    if row["clustering"] == "spectral":
        entry.update(similarity=row["similarity"], normalize_rows=bool(row["normalize_rows"]))
    return entry


def make_factory(spec, row: dict):
    options = clustering_of(row)
    return lambda: clustercam.ClusterCAM(spec, **options)


def interval_rows(rows: list[dict], gradcam: dict, y: np.ndarray) -> list[dict]:
    """Stage-2 rows with paired bootstrap intervals of the differences to Grad-CAM."""
    base = per_image(y, gradcam["o"][:, 0])
    out = []
    for row in rows:
        mine = per_image(y, row["_o"])
        drop = paired_bootstrap(mine["average_drop"], base["average_drop"])
        increase = paired_bootstrap(mine["increase"], base["increase"])
        pair = paired_bootstrap(row["_pairs"], gradcam["pairs"][:, 0])
        out.append({**{k: v for k, v in row.items() if not k.startswith("_")},
                    "d_average_drop": drop.as_dict(), "d_increase": increase.as_dict(), "d_pair_share": pair.as_dict()})
    return out


def write_csv(rows: list[dict], path: Path) -> None:
    flat = []
    for row in rows:
        item = {}
        for k, v in row.items():
            if k.startswith("_"):
                continue
            if isinstance(v, dict):
                item.update({f"{k}_{kk}": vv for kk, vv in v.items()})
            else:
                item[k] = v
        flat.append(item)
    fields = list(dict.fromkeys(k for item in flat for k in item))
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        writer.writerows(flat)
