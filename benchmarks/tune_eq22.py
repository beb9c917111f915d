"""Choose the default eq.-22 configuration on the *tuning* part (docs/protocol.md, amendment 2).

Every candidate is scored on the whole tuning part (all photographs, all tuning pairs), with
paired bootstrap 95 % intervals of its differences to our Grad-CAM:

- **rule D** (the default, preset ``eq22``): K-means, eq. 22 (``difference``), output ``relu``,
  normalisation ``max`` or ``minmax``, Q ∈ 6…12, β ∈ 0.800…1.000 in steps of 0.025 (126
  configurations; one clustering per image and Q, each β and normalisation re-applied to it with
  no network work, one masked pass per configuration and image to score it);
- **rule S** (the similarity a user gets by picking "Spectral"): spectral clustering at the
  default's Q, normalisation and β with similarity ∈ {euclidean, ssim, correlation} × rows
  normalised or not, on every tuning pair (pair share) and on the 240-photograph screen of
  stage 1 (average drop).

Writes ``tuning.json`` (settings, Grad-CAM, every candidate with its intervals, the choice),
``candidates.csv``, ``spectral.csv``, ``choice.json`` and ``beta.png`` (the chosen Q and
normalisation across β) into ``--out``. Each clustering's scores are kept in ``--cache``, so a
stopped run resumes where it stopped.

    python benchmarks/tune_eq22.py --out docs/benchmarks/tuning-eq22
"""

from __future__ import annotations

import argparse
import itertools
import json
import platform
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch
from _common import ROOT
from _tuning import (
    DATA,
    Data,
    combos_grid,
    gradcam_scores,
    interval_rows,
    load_data,
    load_images,
    make_factory,
    preset_entry,
    records_of,
    score_config,
    summary,
    target_probabilities,
    write_csv,
)

import clustercam
from clustercam.bench.data import TUNING, read_labels

BETAS = [round(0.8 + 0.025 * i, 3) for i in range(9)]
QS = list(range(6, 13))
NORMALIZATIONS = ("max", "minmax")
SIMILARITIES = ("euclidean", "ssim", "correlation")
PAIR_SLACK = 0.03  # rule D (b)
SCREEN = 240  # rule S's photographs: stage 1's screen (random.Random(0).sample of the tuning part)


def cached_scores(cache: Path, name: str, compute) -> dict:
    """``compute()`` once: its arrays are kept in ``cache/name.npz`` for a resumed run."""
    path = cache / f"{name}.npz"
    if path.exists():
        with np.load(path) as stored:
            return {key: stored[key] for key in stored.files}
    scores = compute()
    cache.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".tmp.npz")
    np.savez(partial, o=scores["o"], pairs=scores["pairs"])
    partial.replace(path)
    return scores


def qualifies(row: dict, gradcam: dict) -> bool:
    """Rule D: (a) average drop below Grad-CAM's with the interval below zero; (b) pair share at
    least Grad-CAM's minus :data:`PAIR_SLACK`."""
    return row["d_average_drop"]["high"] < 0 and row["pair_share"] >= gradcam["pair_share"] - PAIR_SLACK


def rule_d(rows: list[dict], gradcam: dict) -> tuple[dict, bool]:
    """The default and whether it qualifies (docs/protocol.md, amendment 2)."""
    eligible = [r for r in rows if qualifies(r, gradcam)]
    if eligible:
        return max(eligible, key=lambda r: (round(r["pair_share"], 2), -r["average_drop"], -r["q"], r["beta"])), True
    faithful = [r for r in rows if r["d_average_drop"]["high"] < 0] or rows
    return max(faithful, key=lambda r: (round(r["pair_share"], 3), -r["average_drop"])), False


def rule_s(rows: list[dict]) -> dict:
    return max(rows, key=lambda r: (round(r["pair_share"], 3), -r["average_drop"]))


def plot_beta(rows: list[dict], chosen: dict, gradcam: dict, path: Path) -> None:
    """Average drop and pair share across β for the chosen Q and normalisation, with intervals."""
    from matplotlib.figure import Figure

    line = sorted((r for r in rows if r["q"] == chosen["q"] and r["normalization"] == chosen["normalization"]),
                  key=lambda r: r["beta"])
    betas = [r["beta"] for r in line]
    figure = Figure(figsize=(8, 3.6), dpi=120, layout="constrained")
    drop, share = figure.subplots(1, 2)
    low = [gradcam["average_drop"] + r["d_average_drop"]["low"] for r in line]
    high = [gradcam["average_drop"] + r["d_average_drop"]["high"] for r in line]
    drop.fill_between(betas, low, high, alpha=0.25, color="tab:blue", label="95 % interval (vs Grad-CAM)")
    drop.plot(betas, [r["average_drop"] for r in line], "o-", color="tab:blue", label="Cluster-CAM, eq. 22")
    drop.axhline(gradcam["average_drop"], color="tab:red", ls=":", label="Grad-CAM")
    drop.set_xlabel("β")
    drop.set_ylabel("average drop % ↓ (faithfulness)")
    drop.legend(fontsize=7)
    share.plot(betas, [r["pair_share"] for r in line], "o-", color="tab:green", label="Cluster-CAM, eq. 22")
    share.axhline(gradcam["pair_share"], color="tab:red", ls=":", label="Grad-CAM")
    share.axhline(gradcam["pair_share"] - PAIR_SLACK, color="tab:red", ls="--", lw=0.8, label="Grad-CAM − 0.03")
    share.set_xlabel("β")
    share.set_ylabel("pair share ↑ (class-discriminative)")
    share.legend(fontsize=7)
    for axes in (drop, share):
        axes.axvline(chosen["beta"], color="0.5", lw=0.8)
    figure.suptitle(f"One knob on the tuning part: K-means, Q = {chosen['q']}, eq. 22 with {chosen['normalization']}/relu",
                    fontsize=10)
    figure.savefig(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, nargs="+", default=DATA)
    parser.add_argument("--limit", type=int, default=None, help="tuning photographs (default: all; a smaller run is a trial, not the rule)")
    parser.add_argument("--pairs", type=int, default=None, help="tuning pairs (default: all)")
    parser.add_argument("--screen", type=int, default=SCREEN, help="rule S's photographs (stage 1's screen)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks" / "tuning-eq22")
    parser.add_argument("--cache", type=Path, default=ROOT / "runs" / "tune-eq22", help="per-clustering scores, for resuming")
    args = parser.parse_args()
    started = time.time()
    torch.manual_seed(0)
    spec = clustercam.load_model("efficientnet_lite0", device="cpu")
    spec.model.to(memory_format=torch.channels_last)
    samples = read_labels(args.data, split=TUNING, classes=len(spec.categories))
    chosen_samples = samples[: args.limit] if args.limit else samples
    screen = random.Random(0).sample(samples, min(args.screen, len(samples)))
    args.out.mkdir(parents=True, exist_ok=True)
    tag = f"n{len(chosen_samples)}-p{args.pairs if args.pairs is not None else 'all'}"
    cache = args.cache / tag

    data = load_data(spec, chosen_samples, args.pairs)
    print(f"rule D: {len(data.images)} photographs, {len(data.pair_inputs)} pairs, "
          f"{len(QS) * len(NORMALIZATIONS) * len(BETAS)} configurations", file=sys.stderr)
    y = target_probabilities(spec, data.images, data.targets)
    gradcam = cached_scores(cache, "gradcam", lambda: gradcam_scores(spec, data, args.batch_size))
    gradcam_summary = summary(y, gradcam["o"][:, 0], gradcam["pairs"][:, 0])
    cognitions = combos_grid(("difference",), NORMALIZATIONS, ("relu",), BETAS)
    rows: list[dict] = []
    for q in QS:
        key = {"q": q, "clustering": "kmeans"}
        scores = cached_scores(cache, f"kmeans-q{q}", lambda key=key, q=q: score_config(
            spec, data, make_factory(spec, key), cognitions, args.batch_size, f"D Q={q}"))
        rows += records_of(key, scores, cognitions, y)
        print(f"  Q={q} done ({time.time() - started:.0f} s)", file=sys.stderr)
    rows = interval_rows(rows, gradcam, y)
    default, default_qualifies = rule_d(rows, gradcam_summary)
    write_csv(rows, args.out / "candidates.csv")
    plot_beta(rows, default, gradcam_summary, args.out / "beta.png")

    # ---- rule S: spectral similarities at the default's Q and cognition
    _, screen_images, screen_targets = load_images(spec, screen)
    screen_y = target_probabilities(spec, screen_images, screen_targets)
    spectral_data = Data(screen_images, screen_targets, data.pair_inputs, data.splits, data.left, data.right)
    screen_gradcam = cached_scores(cache, f"gradcam-screen{len(screen)}", lambda: gradcam_scores(spec, spectral_data, args.batch_size))
    cognition = combos_grid(("difference",), (default["normalization"],), ("relu",), (default["beta"],))
    spectral_rows = []
    for similarity, normalize_rows in itertools.product(SIMILARITIES, (False, True)):
        key = {"q": default["q"], "clustering": "spectral", "similarity": similarity, "normalize_rows": normalize_rows}
        name = f"spectral-q{default['q']}-{similarity}-rows{int(normalize_rows)}-{default['normalization']}-b{default['beta']}-s{len(screen)}"
        scores = cached_scores(cache, name, lambda key=key, name=name: score_config(
            spec, spectral_data, make_factory(spec, key), cognition, args.batch_size, name))
        spectral_rows += records_of(key, scores, cognition, screen_y)
        print(f"  {name} done ({time.time() - started:.0f} s)", file=sys.stderr)
    spectral_rows = interval_rows(spectral_rows, screen_gradcam, screen_y)
    spectral = rule_s(spectral_rows)
    write_csv(spectral_rows, args.out / "spectral.csv")

    choice = {"eq22": preset_entry(default), "eq22_qualifies": default_qualifies,
              "spectral_options": {"similarity": spectral["similarity"], "normalize_rows": bool(spectral["normalize_rows"])}}
    (args.out / "choice.json").write_text(json.dumps(choice, indent=1) + "\n")
    settings = {
        "data": [str(d) for d in args.data], "split": TUNING, "images": len(chosen_samples), "pairs": len(data.pair_inputs),
        "screen_images": len(screen), "model": spec.name, "layer": spec.default_layer, "device": str(spec.device),
        "machine": platform.platform(), "processor": platform.processor() or platform.machine(),
        "torch": torch.__version__, "threads": torch.get_num_threads(), "seconds": round(time.time() - started, 1),
        "command": "python " + " ".join(sys.argv),
    }
    clean = [{k: v for k, v in r.items() if not k.startswith("_")} for r in rows]
    (args.out / "tuning.json").write_text(json.dumps({
        "settings": settings, "gradcam": gradcam_summary, "gradcam_screen": summary(screen_y, screen_gradcam["o"][:, 0], screen_gradcam["pairs"][:, 0]),
        "choice": choice, "default": {k: v for k, v in default.items() if not k.startswith("_")},
        "candidates": clean, "spectral": spectral_rows}, indent=1, default=float) + "\n")
    print(json.dumps({"gradcam": gradcam_summary, "choice": choice}, indent=1, default=float))


if __name__ == "__main__":
    main()
