"""Choose Cluster-CAM's defaults and presets on the *tuning* part only (docs/benchmarks.md, "Protocol").

Reads only the tuning part of the evaluation folders (:func:`clustercam.bench.data.split_of`), with
the embedded EfficientNet-Lite0 at ``bn2`` and the predicted class as the target. Every
configuration is scored by

- average drop ↓ and increase in confidence ↑ (faithfulness; :mod:`clustercam.metrics`),
- pair share ↑ (class-discriminativeness: two images of different labels side by side, each
  image's class explained on the pair, the share of heatmap mass on the correct half),

against our Grad-CAM on the same images and pairs. The clusters and masked passes do not depend on
β or on how the cluster maps are combined, so those are re-applied to one explanation per
clustering (no network work); only the scoring of each heatmap costs a pass.

Stage 1 (screening, ``--screen`` images and ``--screen-pairs`` pairs of the tuning part):

  a. K-means, Q ∈ {3, 6}: every combination (difference = eq. 22, weighted, multibase, gated) ×
     normalisation (max, minmax, none) × output scaling (relu, minmax) × β ∈ {0.5, …, 1};
  b. K-means, Q ∈ 2…8: every combination × normalisation (max, minmax) × relu × β, with the
     silhouette and Calinski–Harabasz scores of each image's clustering (does either predict a
     good Q?);
  c. the paper-literal mode (difference, none, minmax) at Q = 6 for β ∈ {0, 0.1, …, 1};
  d. spectral clustering, Q ∈ {3, 6}: similarity (euclidean, ssim, correlation) × rows
     normalised or not, with difference and weighted (max/relu) × β.

Stage 2 (the decision, every tuning image and every tuning pair): the best candidates of stage 1
are scored again, each with paired bootstrap 95 % intervals of its difference to Grad-CAM, and the
rule of docs/benchmarks.md picks the default and the presets. Writes ``tuning.json`` (every figure,
the settings, the choice), ``stage1.csv``, ``stage2.csv`` and ``pareto.png`` into ``--out``.

    python benchmarks/sweep_defaults.py --out docs/benchmarks/tuning
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import platform
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from _common import ROOT
from tqdm import tqdm

import clustercam
from clustercam import metrics
from clustercam.bench.data import TUNING, draw_pairs, load_square, read_labels
from clustercam.clustering import cluster_quality
from clustercam.maps import masked_probabilities
from clustercam.methods.cluster import Cognition
from clustercam.stats import paired_bootstrap

DATA = [ROOT.parent / "shared" / "eval" / "imagenet-samples", ROOT.parent / "shared" / "eval" / "ilsvrc-val-650"]
BETAS = [0.5, 0.6, 0.7, 0.8, 0.9, 1.0]
ALL_BETAS = [round(0.1 * i, 1) for i in range(11)]
COMBINATIONS = ("difference", "weighted", "multibase", "gated")
PAIR_SLACK = 0.03  # the rule's pair-share tolerance for the default
FAITHFUL_PAIR_SLACK = 0.10  # the faithful preset must stay this close to Grad-CAM's pair share


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


def load_data(spec, samples, pair_count: int | None) -> Data:
    squares = [load_square(s.path, spec.input_size) for s in samples]
    images = spec.to_tensor(squares)
    with torch.no_grad():  # targets are used by gradient methods too: no inference tensors
        targets = torch.cat([spec.predict(images[i : i + 16]).argmax(1) for i in range(0, len(images), 16)])
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


def options_of(row: dict) -> dict:
    """ClusterCAM keyword options of a record (clustering and cognition)."""
    return {**clustering_of(row), "beta": row["beta"], "normalization": row["normalization"],
            "output": row["output"], "combination": row["combination"]}


def make_factory(spec, row: dict):
    options = clustering_of(row)
    return lambda: clustercam.ClusterCAM(spec, **options)


def quality_entry(scores: dict, cognitions: list[Cognition]) -> dict:
    """One Q's cluster-quality scores and heatmap figures, as :func:`analyse_auto_q` reads them."""
    return {"images": scores["quality"], "pairs": scores["pair_quality"], "o": scores["o"], "pairs_share": scores["pairs"],
            "cognitions": cognitions}


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


def apply_rule(rows: list[dict], gradcam: dict) -> dict:
    """The rule of docs/protocol.md, written before the reporting part was read.

    Rules 1-5 over every stage-2 candidate; rule 6 (``spectral``) applies rules 1-3 to the
    spectral candidates alone.
    """
    choice = _rules(rows, gradcam)
    spectral = _rules([r for r in rows if r["clustering"] == "spectral"], gradcam)
    choice["spectral"] = spectral["balanced"] or spectral["faithful"]
    return choice


def qualifies(row: dict, gradcam: dict) -> bool:
    """Rule 1: more faithful than Grad-CAM (interval below zero), ties it on increase at least,
    and a pair share within :data:`PAIR_SLACK` of Grad-CAM's."""
    return (row["d_average_drop"]["high"] < 0 and row["d_increase"]["high"] >= 0
            and row["pair_share"] >= gradcam["pair_share"] - PAIR_SLACK)


def _rules(rows: list[dict], gradcam: dict) -> dict:
    def passes(row):
        return row["q"] + 1

    candidates = [r for r in rows if r["preset_candidate"]]
    if not candidates:
        return {"balanced": None, "faithful": None, "discriminative": None, "paper": None, "default": None}
    eligible = [r for r in candidates if qualifies(r, gradcam)]
    discriminating = [r for r in candidates if r["pair_share"] >= gradcam["pair_share"] - FAITHFUL_PAIR_SLACK]
    faithful = min(discriminating or candidates, key=lambda r: (round(r["average_drop"], 2), -r["pair_share"], passes(r)))
    not_worse = [r for r in candidates if r["d_average_drop"]["low"] <= 0]
    discriminative = max(not_worse or candidates, key=lambda r: (round(r["pair_share"], 3), -r["average_drop"], -passes(r)))
    balanced = max(eligible, key=lambda r: (round(r["pair_share"], 3), -r["average_drop"], -passes(r))) if eligible else None
    paper = [r for r in rows if r.get("paper")]
    paper_best = min(paper, key=lambda r: r["average_drop"]) if paper else None
    return {"balanced": balanced, "faithful": faithful, "discriminative": discriminative, "paper": paper_best,
            "default": "balanced" if balanced else "faithful"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, nargs="+", default=DATA)
    parser.add_argument("--screen", type=int, default=240, help="tuning images in stage 1")
    parser.add_argument("--screen-pairs", type=int, default=100, help="tuning pairs in stage 1")
    parser.add_argument("--pairs", type=int, default=None, help="tuning pairs in stage 2 (default: all)")
    parser.add_argument("--limit", type=int, default=None, help="tuning images in stage 2 (default: all)")
    parser.add_argument("--finalists", type=int, default=4, help="per combination, stage-1 configurations taken to stage 2")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks" / "tuning")
    parser.add_argument("--stage1", type=Path, default=None,
                        help="reuse this stage-1 CSV (same screen) instead of screening again; the cluster-quality "
                             "analysis is then rerun after stage 2 with the combinations at β 0.8 and 1 only")
    args = parser.parse_args()
    started = time.time()
    torch.manual_seed(0)
    spec = clustercam.load_model("efficientnet_lite0", device="cpu")
    spec.model.to(memory_format=torch.channels_last)  # same logits within 1e-5, ~1.5x faster on a CPU
    samples = read_labels(args.data, split=TUNING, classes=len(spec.categories))
    final = samples[: args.limit] if args.limit else samples
    screen = random.Random(0).sample(samples, min(args.screen, len(samples)))
    args.out.mkdir(parents=True, exist_ok=True)

    # ---- stage 1: screening
    data = load_data(spec, screen, args.screen_pairs)
    print(f"stage 1: {len(data.images)} images, {len(data.pair_inputs)} pairs", file=sys.stderr)
    with torch.inference_mode():
        y = torch.cat([spec.predict(data.images[i : i + 16]).gather(1, data.targets[i : i + 16, None]).squeeze(1)
                       for i in range(0, len(data.images), 16)]).double().numpy()
    gradcam = gradcam_scores(spec, data, args.batch_size)
    gradcam_summary = summary(y, gradcam["o"][:, 0], gradcam["pairs"][:, 0])
    stage1: list[dict] = []
    quality: dict[int, dict] = {}
    if args.stage1:
        stage1, auto_q = read_stage1(args.stage1), None  # auto_q is measured after stage 2 (below)
    else:
        for q in (3, 6):  # a
            cognitions = combos_grid(COMBINATIONS, ("max", "minmax", "none"), ("relu", "minmax"), BETAS)
            key = {"stage": "1a", "q": q, "clustering": "kmeans"}
            stage1 += records_of(key, score_config(spec, data, make_factory(spec, key), cognitions, args.batch_size, f"1a Q={q}"), cognitions, y)
        for q in range(2, 9):  # b
            cognitions = combos_grid(COMBINATIONS, ("max", "minmax"), ("relu",), BETAS)
            key = {"stage": "1b", "q": q, "clustering": "kmeans"}
            scores = score_config(spec, data, make_factory(spec, key), cognitions, args.batch_size, f"1b Q={q}", quality=True)
            quality[q] = quality_entry(scores, cognitions)
            stage1 += records_of(key, scores, cognitions, y)
        cognitions = combos_grid(("difference",), ("none",), ("minmax",), ALL_BETAS)  # c
        key = {"stage": "1c", "q": 6, "clustering": "kmeans", "paper": True}
        stage1 += records_of(key, score_config(spec, data, make_factory(spec, key), cognitions, args.batch_size, "1c paper"), cognitions, y)
        for q, similarity, rows_normalised in itertools.product((3, 6), ("euclidean", "ssim", "correlation"), (False, True)):  # d
            cognitions = combos_grid(("difference", "weighted"), ("max",), ("relu",), BETAS)
            key = {"stage": "1d", "q": q, "clustering": "spectral", "similarity": similarity, "normalize_rows": rows_normalised}
            desc = f"1d Q={q} {similarity} rows={rows_normalised}"
            stage1 += records_of(key, score_config(spec, data, make_factory(spec, key), cognitions, args.batch_size, desc), cognitions, y)
        auto_q = analyse_auto_q(quality, y, gradcam)
    write_csv(stage1, args.out / "stage1.csv")
    screen_data, screen_y = data, y

    # ---- stage 2: the decision on every tuning image and pair
    finalists = pick_finalists(stage1, gradcam_summary, args.finalists)
    data = load_data(spec, final, args.pairs)
    print(f"stage 2: {len(data.images)} images, {len(data.pair_inputs)} pairs, {len(finalists)} configurations", file=sys.stderr)
    with torch.inference_mode():
        y = torch.cat([spec.predict(data.images[i : i + 16]).gather(1, data.targets[i : i + 16, None]).squeeze(1)
                       for i in range(0, len(data.images), 16)]).double().numpy()
    gradcam = gradcam_scores(spec, data, args.batch_size)
    gradcam_summary2 = summary(y, gradcam["o"][:, 0], gradcam["pairs"][:, 0])
    stage2: list[dict] = []
    groups: dict[tuple, list[dict]] = {}
    for row in finalists:
        clustering_key = tuple(sorted(clustering_of(row).items()))
        groups.setdefault(clustering_key, []).append(row)
    for clustering_key, rows in groups.items():
        cognitions = [Cognition(r["beta"], r["normalization"], r["output"], r["combination"]) for r in rows]
        scores = score_config(spec, data, make_factory(spec, rows[0]), cognitions, args.batch_size, f"2 {dict(clustering_key)}")
        for m, row in enumerate(rows):
            keep = {k: v for k, v in row.items() if not k.startswith("_") and k not in ("average_drop", "increase", "pair_share")}
            stage2.append({**keep, "stage": "2", **summary(y, scores["o"][:, m], scores["pairs"][:, m]),
                           "_o": scores["o"][:, m], "_pairs": scores["pairs"][:, m]})
    stage2 = interval_rows(stage2, gradcam, y)
    choice = apply_rule(stage2, gradcam_summary2)
    write_csv(stage2, args.out / "stage2.csv")
    plot(stage1, gradcam_summary, args.out / "pareto.png")

    def save(auto_q):
        settings = {
            "data": [str(d) for d in args.data], "split": TUNING, "tuning_images": len(samples), "stage2_images": len(final), "screen_images": len(screen),
            "screen_pairs": len(screen_data.pair_inputs), "stage2_pairs": len(data.pair_inputs),
            "model": spec.name, "layer": spec.default_layer, "device": str(spec.device), "machine": platform.platform(),
            "processor": platform.processor() or platform.machine(), "torch": torch.__version__,
            "threads": torch.get_num_threads(), "seconds": round(time.time() - started, 1),
            "command": "python " + " ".join(sys.argv),
        }
        clean = [{k: v for k, v in r.items() if not k.startswith("_")} for r in stage1]
        (args.out / "tuning.json").write_text(json.dumps({
            "settings": settings, "gradcam_stage1": gradcam_summary, "gradcam_stage2": gradcam_summary2,
            "auto_q": auto_q, "choice": choice, "stage2": stage2, "stage1": clean}, indent=1, default=float))

    save(auto_q)
    if args.stage1:
        cognitions = combos_grid(COMBINATIONS, ("max",), ("relu",), (0.8, 1.0))
        for q in range(2, 9):
            key = {"q": q, "clustering": "kmeans"}
            scores = score_config(spec, screen_data, make_factory(spec, key), cognitions, args.batch_size, f"auto-Q Q={q}", quality=True)
            quality[q] = quality_entry(scores, cognitions)
        auto_q = analyse_auto_q(quality, screen_y, gradcam_summary)
        save(auto_q)
    print(json.dumps({"gradcam": gradcam_summary2, "choice": choice, "auto_q": auto_q}, indent=1, default=float))


def read_stage1(path: Path) -> list[dict]:
    """Stage-1 records from a ``stage1.csv`` written by an earlier run (figures only, no per-image data)."""
    def flag(text):
        return {"True": True, "False": False}.get(text)

    rows = []
    with path.open(newline="") as handle:
        for row in csv.DictReader(handle):
            rows.append({**row, "q": int(row["q"]), "beta": float(row["beta"]), "average_drop": float(row["average_drop"]),
                         "increase": float(row["increase"]), "pair_share": float(row["pair_share"]),
                         "paper": bool(flag(row.get("paper", ""))), "similarity": row.get("similarity") or None,
                         "normalize_rows": flag(row.get("normalize_rows", ""))})
    return rows


def pick_finalists(stage1: list[dict], gradcam: dict, per_combination: int) -> list[dict]:
    """Stage-1 configurations worth the full tuning part, marked ``preset_candidate``.

    For each combination and clustering: the most discriminative configurations among those at
    least as faithful as Grad-CAM on the screen, and the most faithful ones; the paper-literal
    β sweep; the best spectral configuration of each similarity.
    """
    chosen: dict[tuple, dict] = {}

    def add(row, candidate=True):
        key = (row["q"], row["clustering"], row.get("similarity"), row.get("normalize_rows"), row["combination"],
               row["normalization"], row["output"], row["beta"])
        chosen.setdefault(key, {**row, "preset_candidate": candidate})

    kmeans_rows = [r for r in stage1 if r["clustering"] == "kmeans" and not r.get("paper")]
    for combination in COMBINATIONS:
        rows = [r for r in kmeans_rows if r["combination"] == combination]
        faithful = [r for r in rows if r["average_drop"] < gradcam["average_drop"]]
        for r in sorted(faithful, key=lambda r: -r["pair_share"])[:per_combination]:
            add(r)
        for r in sorted(rows, key=lambda r: r["average_drop"])[:2]:
            add(r)
    for r in [r for r in stage1 if r.get("paper")]:
        if r["beta"] >= 0.5:
            add(r, candidate=False)
    for similarity in ("euclidean", "ssim", "correlation"):
        rows = [r for r in stage1 if r.get("similarity") == similarity]
        faithful = [r for r in rows if r["average_drop"] < gradcam["average_drop"] + 2] or rows
        add(max(faithful, key=lambda r: r["pair_share"]))
    return list(chosen.values())


def analyse_auto_q(quality: dict[int, dict], y: np.ndarray, gradcam: dict) -> dict:
    """Does a cluster-quality score pick a good Q per image? (stage 1b data, tuning part only)."""
    qs = sorted(quality)
    cognitions = quality[qs[0]]["cognitions"]
    out = {}
    for criterion in ("silhouette", "calinski_harabasz"):
        chosen = np.array([qs[int(np.argmax([quality[q]["images"][i][criterion] for q in qs]))] for i in range(len(y))])
        chosen_pairs = np.array([qs[int(np.argmax([quality[q]["pairs"][i][criterion] for q in qs]))]
                                 for i in range(len(quality[qs[0]]["pairs"]))])
        rows = []
        for m, c in enumerate(cognitions):
            if c.normalization != "max":
                continue
            drops = {q: per_image(y, quality[q]["o"][:, m])["average_drop"] for q in qs}
            auto = np.array([drops[chosen[i]][i] for i in range(len(y))])
            auto_pairs = np.array([quality[chosen_pairs[i]]["pairs_share"][i, m] for i in range(len(chosen_pairs))])
            best_fixed = min(qs, key=lambda q: drops[q].mean())
            oracle = np.min(np.stack([drops[q] for q in qs]), axis=0)
            # rank correlation, per image, between the score and the average drop across Q
            rho = [spearman([quality[q]["images"][i][criterion] for q in qs], [drops[q][i] for q in qs]) for i in range(len(y))]
            rows.append({
                "combination": c.combination, "beta": c.beta, "auto_average_drop": float(auto.mean()),
                "auto_pair_share": float(auto_pairs.mean()), "best_fixed_q": best_fixed,
                "best_fixed_average_drop": float(drops[best_fixed].mean()),
                "best_fixed_pair_share": float(quality[best_fixed]["pairs_share"][:, m].mean()),
                "oracle_average_drop": float(oracle.mean()),
                "auto_minus_best_fixed": paired_bootstrap(auto, drops[best_fixed]).as_dict(),
                "median_spearman_score_vs_drop": float(np.nanmedian(rho)),
            })
        out[criterion] = {"chosen_q_counts": {int(q): int((chosen == q).sum()) for q in qs}, "rows": rows}
    return out


def spearman(a, b) -> float:
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    if np.std(ra) == 0 or np.std(rb) == 0:
        return float("nan")
    return float(np.corrcoef(ra, rb)[0, 1])


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


def plot(records: list[dict], gradcam: dict, path: Path) -> None:
    from matplotlib.figure import Figure

    figure = Figure(figsize=(8, 5.5), dpi=120, layout="constrained")
    axes = figure.add_subplot()
    markers = {"difference": "o", "weighted": "s", "multibase": "^", "gated": "D"}
    for combination, marker in markers.items():
        rows = [r for r in records if r["combination"] == combination and r["clustering"] == "kmeans" and not r.get("paper")]
        axes.scatter([r["pair_share"] for r in rows], [r["average_drop"] for r in rows], s=10, marker=marker, alpha=0.6,
                     label=f"K-means, {combination}")
    spectral = [r for r in records if r["clustering"] == "spectral"]
    axes.scatter([r["pair_share"] for r in spectral], [r["average_drop"] for r in spectral], s=10, c="#999999", label="spectral")
    paper = [r for r in records if r.get("paper")]
    axes.plot([r["pair_share"] for r in paper], [r["average_drop"] for r in paper], "k.-", lw=1, label="paper-literal, β 0→1")
    axes.scatter([gradcam["pair_share"]], [gradcam["average_drop"]], marker="*", s=200, c="tab:red", label="Grad-CAM")
    axes.axhline(gradcam["average_drop"], color="tab:red", lw=1, ls=":")
    axes.axvline(gradcam["pair_share"] - PAIR_SLACK, color="tab:red", lw=1, ls=":")
    axes.set_xlabel("pair share ↑ (class-discriminativeness)")
    axes.set_ylabel("average drop % ↓ (faithfulness)")
    axes.set_title("Cluster-CAM on the tuning part (screen): faithfulness vs discriminativeness")
    axes.set_ylim(0, min(100, max(r["average_drop"] for r in records) + 2))
    axes.legend(fontsize=7, loc="upper left")
    figure.savefig(path)


if __name__ == "__main__":
    main()
