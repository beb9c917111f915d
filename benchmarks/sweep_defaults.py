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
The scoring it shares with ``tune_eq22.py`` is in ``_tuning.py``.

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
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from _common import ROOT
from _tuning import (
    DATA,
    Data,
    clustering_of,
    combos_grid,
    gradcam_scores,
    interval_rows,
    load_data,
    make_factory,
    per_image,
    records_of,
    score_config,
    summary,
    target_probabilities,
    write_csv,
)

import clustercam
from clustercam.bench.data import TUNING, read_labels
from clustercam.methods.cluster import Cognition
from clustercam.stats import paired_bootstrap
from clustercam.zoo import ModelSpec

BETAS = [0.5, 0.6, 0.7, 0.8, 0.9, 1.0]
ALL_BETAS = [round(0.1 * i, 1) for i in range(11)]
COMBINATIONS = ("difference", "weighted", "multibase", "gated")
PAIR_SLACK = 0.03  # the rule's pair-share tolerance for the default
FAITHFUL_PAIR_SLACK = 0.10  # the faithful preset must stay this close to Grad-CAM's pair share


def quality_entry(scores: dict, cognitions: list[Cognition]) -> dict:
    """One Q's cluster-quality scores and heatmap figures, as :func:`analyse_auto_q` reads them."""
    return {"images": scores["quality"], "pairs": scores["pair_quality"], "o": scores["o"], "pairs_share": scores["pairs"],
            "cognitions": cognitions}


#: The preset each rule's pick is offered as (``clustercam/methods/presets.py``): docs/protocol.md
#: names the rules after the presets' first names. Rule 1's ``balanced`` found no candidate and
#: became no preset; since amendment 2 the default is ``eq22``, chosen by ``tune_eq22.py`` (rule D).
PRESET_OF_RULE = {"faithful": "gated", "discriminative": "discriminative", "paper": "paper", "spectral": "weighted"}


def apply_rule(rows: list[dict], gradcam: dict) -> dict:
    """The rule of docs/protocol.md, written before the reporting part was read: each rule's pick
    (a stage-2 row, or None), under the rule's name in docs/protocol.md.

    Rules 1 and 3-5 over every stage-2 candidate; rule 6 (``spectral``) applies rules 1-3 to the
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
    """Rules 1 (``balanced``) and 3-5 (``faithful``, ``discriminative``, ``paper``) over ``rows``."""
    def passes(row):
        return row["q"] + 1

    candidates = [r for r in rows if r["preset_candidate"]]
    if not candidates:
        return {"balanced": None, "faithful": None, "discriminative": None, "paper": None}
    eligible = [r for r in candidates if qualifies(r, gradcam)]
    discriminating = [r for r in candidates if r["pair_share"] >= gradcam["pair_share"] - FAITHFUL_PAIR_SLACK]
    faithful = min(discriminating or candidates, key=lambda r: (round(r["average_drop"], 2), -r["pair_share"], passes(r)))
    not_worse = [r for r in candidates if r["d_average_drop"]["low"] <= 0]
    discriminative = max(not_worse or candidates, key=lambda r: (round(r["pair_share"], 3), -r["average_drop"], -passes(r)))
    balanced = max(eligible, key=lambda r: (round(r["pair_share"], 3), -r["average_drop"], -passes(r))) if eligible else None
    paper = [r for r in rows if r.get("paper")]
    paper_best = min(paper, key=lambda r: r["average_drop"]) if paper else None
    return {"balanced": balanced, "faithful": faithful, "discriminative": discriminative, "paper": paper_best}


def parse_arguments() -> argparse.Namespace:
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
    return parser.parse_args()


@dataclass
class Sweep:
    """What every stage reads: the command's arguments, the model and the tuning part."""

    args: argparse.Namespace
    spec: ModelSpec
    samples: list  # every photograph of the tuning part
    screen: list  # stage 1's
    final: list  # stage 2's
    started: float


def start(args: argparse.Namespace) -> Sweep:
    """Load the model and the tuning part; draw stage 1's screen."""
    started = time.time()
    torch.manual_seed(0)
    spec = clustercam.load_model("efficientnet_lite0", device="cpu")
    spec.model.to(memory_format=torch.channels_last)  # same logits within 1e-5, ~1.5x faster on a CPU
    samples = read_labels(args.data, split=TUNING, classes=len(spec.categories))
    final = samples[: args.limit] if args.limit else samples
    screen = random.Random(0).sample(samples, min(args.screen, len(samples)))
    args.out.mkdir(parents=True, exist_ok=True)
    return Sweep(args, spec, samples, screen, final, started)


@dataclass
class Stage:
    """One stage's photographs and pairs, their Y, and Grad-CAM's scores on them."""

    data: Data
    y: np.ndarray
    gradcam: dict
    gradcam_summary: dict


def prepare_stage(sweep: Sweep, samples: list, pair_count: int | None, name: str, extra: str = "") -> Stage:
    data = load_data(sweep.spec, samples, pair_count)
    print(f"{name}: {len(data.images)} images, {len(data.pair_inputs)} pairs{extra}", file=sys.stderr)
    y = target_probabilities(sweep.spec, data.images, data.targets)
    gradcam = gradcam_scores(sweep.spec, data, sweep.args.batch_size)
    return Stage(data, y, gradcam, summary(y, gradcam["o"][:, 0], gradcam["pairs"][:, 0]))


def screen_configurations(sweep: Sweep, stage: Stage) -> tuple[list[dict], dict[int, dict]]:
    """Stage 1 a-d (module docstring) on the screen: every record, and 1b's cluster quality by Q."""
    records: list[dict] = []
    quality: dict[int, dict] = {}

    def score(key: dict, cognitions: list[Cognition], desc: str, with_quality: bool = False) -> dict:
        scores = score_config(sweep.spec, stage.data, make_factory(sweep.spec, key), cognitions, sweep.args.batch_size,
                              desc, quality=with_quality)
        records.extend(records_of(key, scores, cognitions, stage.y))
        return scores

    for q in (3, 6):  # a
        cognitions = combos_grid(COMBINATIONS, ("max", "minmax", "none"), ("relu", "minmax"), BETAS)
        score({"stage": "1a", "q": q, "clustering": "kmeans"}, cognitions, f"1a Q={q}")
    for q in range(2, 9):  # b
        cognitions = combos_grid(COMBINATIONS, ("max", "minmax"), ("relu",), BETAS)
        scores = score({"stage": "1b", "q": q, "clustering": "kmeans"}, cognitions, f"1b Q={q}", with_quality=True)
        quality[q] = quality_entry(scores, cognitions)
    cognitions = combos_grid(("difference",), ("none",), ("minmax",), ALL_BETAS)  # c
    score({"stage": "1c", "q": 6, "clustering": "kmeans", "paper": True}, cognitions, "1c paper")
    for q, similarity, rows_normalised in itertools.product((3, 6), ("euclidean", "ssim", "correlation"), (False, True)):  # d
        cognitions = combos_grid(("difference", "weighted"), ("max",), ("relu",), BETAS)
        key = {"stage": "1d", "q": q, "clustering": "spectral", "similarity": similarity, "normalize_rows": rows_normalised}
        score(key, cognitions, f"1d Q={q} {similarity} rows={rows_normalised}")
    return records, quality


def score_finalists(sweep: Sweep, stage: Stage, finalists: list[dict]) -> list[dict]:
    """Stage 2: every finalist again on every tuning photograph and pair, one clustering per
    group of finalists, with paired intervals of its differences to Grad-CAM."""
    groups: dict[tuple, list[dict]] = {}
    for row in finalists:
        groups.setdefault(tuple(sorted(clustering_of(row).items())), []).append(row)
    stage2: list[dict] = []
    for clustering_key, rows in groups.items():
        cognitions = [Cognition(r["beta"], r["normalization"], r["output"], r["combination"]) for r in rows]
        scores = score_config(sweep.spec, stage.data, make_factory(sweep.spec, rows[0]), cognitions, sweep.args.batch_size,
                              f"2 {dict(clustering_key)}")
        for m, row in enumerate(rows):
            keep = {k: v for k, v in row.items() if not k.startswith("_") and k not in ("average_drop", "increase", "pair_share")}
            stage2.append({**keep, "stage": "2", **summary(stage.y, scores["o"][:, m], scores["pairs"][:, m]),
                           "_o": scores["o"][:, m], "_pairs": scores["pairs"][:, m]})
    return interval_rows(stage2, stage.gradcam, stage.y)


def measure_auto_q(sweep: Sweep, stage: Stage) -> dict:
    """The cluster-quality analysis on the screen, when stage 1 was read back (``--stage1``):
    every combination at β 0.8 and 1, Q = 2…8."""
    cognitions = combos_grid(COMBINATIONS, ("max",), ("relu",), (0.8, 1.0))
    quality: dict[int, dict] = {}
    for q in range(2, 9):
        key = {"q": q, "clustering": "kmeans"}
        scores = score_config(sweep.spec, stage.data, make_factory(sweep.spec, key), cognitions, sweep.args.batch_size,
                              f"auto-Q Q={q}", quality=True)
        quality[q] = quality_entry(scores, cognitions)
    return analyse_auto_q(quality, stage.y, stage.gradcam_summary)


def save_tuning(sweep: Sweep, first: Stage, second: Stage, results: dict) -> None:
    """``tuning.json``: the settings, Grad-CAM on both stages and ``results`` (auto-Q, the choice, the records)."""
    args, spec = sweep.args, sweep.spec
    settings = {
        "data": [str(d) for d in args.data], "split": TUNING, "tuning_images": len(sweep.samples),
        "stage2_images": len(sweep.final), "screen_images": len(sweep.screen),
        "screen_pairs": len(first.data.pair_inputs), "stage2_pairs": len(second.data.pair_inputs),
        "model": spec.name, "layer": spec.default_layer, "device": str(spec.device), "machine": platform.platform(),
        "processor": platform.processor() or platform.machine(), "torch": torch.__version__,
        "threads": torch.get_num_threads(), "seconds": round(time.time() - sweep.started, 1),
        "command": "python " + " ".join(sys.argv),
    }
    (args.out / "tuning.json").write_text(json.dumps({
        "settings": settings, "gradcam_stage1": first.gradcam_summary, "gradcam_stage2": second.gradcam_summary,
        **results}, indent=1, default=float))


def main() -> None:
    sweep = start(parse_arguments())
    args = sweep.args
    first = prepare_stage(sweep, sweep.screen, args.screen_pairs, "stage 1")  # ---- stage 1: screening
    if args.stage1:
        stage1, auto_q = read_stage1(args.stage1), None  # auto_q is measured after stage 2 (below)
    else:
        stage1, quality = screen_configurations(sweep, first)
        auto_q = analyse_auto_q(quality, first.y, first.gradcam)
    write_csv(stage1, args.out / "stage1.csv")

    finalists = pick_finalists(stage1, first.gradcam_summary, args.finalists)  # ---- stage 2: the decision
    second = prepare_stage(sweep, sweep.final, args.pairs, "stage 2", f", {len(finalists)} configurations")
    stage2 = score_finalists(sweep, second, finalists)
    choice = apply_rule(stage2, second.gradcam_summary)
    write_csv(stage2, args.out / "stage2.csv")
    plot(stage1, first.gradcam_summary, args.out / "pareto.png")

    clean = [{k: v for k, v in r.items() if not k.startswith("_")} for r in stage1]
    results = {"auto_q": auto_q, "choice": choice, "stage2": stage2, "stage1": clean}
    save_tuning(sweep, first, second, results)
    if args.stage1:
        results["auto_q"] = measure_auto_q(sweep, first)
        save_tuning(sweep, first, second, results)
    print(json.dumps({"gradcam": second.gradcam_summary, "choice": choice, "auto_q": results["auto_q"]}, indent=1,
                     default=float))


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
