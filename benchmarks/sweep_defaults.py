"""Choose Cluster-CAM's defaults from evidence: sweep Q, β, the clustering and the normalisations.

On a labelled folder (default ``../shared/eval/imagenet-samples``) with the embedded model, for
every image the target is the predicted class, and each configuration's heatmaps are scored by

- average drop ↓ and increase in confidence ↑ (faithfulness, eq. 23; :mod:`clustercam.metrics`),
- pair share ↑ (class-discriminativeness: two images side by side, each class explained on the
  pair, the share of heatmap mass on the correct half).

Two stages keep it affordable on a CPU (the clusters and masked passes do not depend on β or on
the normalisations, so those are re-applied to cached results, eq. 22 only):

A. ``Q = 6``, K-means: every β ∈ {0, 0.1, …, 1} × normalisation of base/scissors
   (``minmax``, ``max``, ``none``) × output scaling (``relu``, ``minmax``);
B. the best normalisation/output of A: every ``Q`` ∈ 2…8 × clustering (K-means, spectral) × β.

Grad-CAM is scored on the same images and pairs as the bar to beat. The rule: among the
configurations with a lower average drop AND a higher increase than Grad-CAM, take the one with
the highest pair share (ties: lower average drop). Writes ``sweep.json``, ``sweep.csv`` and
``pareto.png`` to ``--out`` and prints the tables.

    python benchmarks/sweep_defaults.py --limit 200 --pairs 100 --out docs/benchmarks
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import platform
import sys
import time
from pathlib import Path

import torch
from _common import ROOT
from tqdm import tqdm

import clustercam
from clustercam import metrics
from clustercam.bench import choose_pairs, load_square, read_labels
from clustercam.maps import masked_probabilities
from clustercam.methods.cluster import cognition_heatmaps

BETAS = [round(0.1 * i, 1) for i in range(11)]
NORMALIZATIONS = ("minmax", "max", "none")
OUTPUTS = ("relu", "minmax")


def heatmap_grid(result, combos) -> torch.Tensor:
    """``(B, len(combos), H, W)`` heatmaps of one Cluster-CAM result under each (β, norm, output)."""
    return torch.stack(
        [
            cognition_heatmaps(result.masks, result.cluster_maps, result.base_index, result.scissors_index, beta, norm, out)
            for beta, norm, out in combos
        ],
        dim=1,
    )


def score_combos(spec, inputs, result, combos, batch_size) -> tuple[torch.Tensor, torch.Tensor]:
    """``(Y (B,), O (B, M))`` for the M heatmap variants of one result."""
    heatmaps = heatmap_grid(result, combos)
    probabilities = masked_probabilities(spec.model, inputs, heatmaps, batch_size=batch_size)
    o = probabilities.gather(2, result.targets.view(-1, 1, 1).expand(-1, len(combos), 1)).squeeze(2)
    return result.target_probabilities(), o


def pair_combos(result_left, result_right, combos, split) -> torch.Tensor:
    """``(P, M)`` pair shares: left class on the left half and right class on the right half."""
    left = metrics.half_shares(heatmap_grid(result_left, combos).flatten(0, 1), split.repeat_interleave(len(combos)))[0]
    right = metrics.half_shares(heatmap_grid(result_right, combos).flatten(0, 1), split.repeat_interleave(len(combos)))[1]
    return ((left + right) / 2).view(-1, len(combos))


def run_stage(spec, images, targets, pairs, configs, combos_of, batch_size, desc):
    """Scores for every (clustering config, combo): dict key → {"y", "o", "pairs"}."""
    rows: dict[tuple, dict[str, list]] = {}
    bar = tqdm(total=len(configs) * (len(images) + 1), desc=desc, file=sys.stderr)
    for q, clustering in configs:
        cam = clustercam.ClusterCAM(spec, q=q, clustering=clustering, batch_size=batch_size)
        combos = combos_of(q, clustering)
        for start in range(0, len(images), 16):
            x = images[start : start + 16]
            result = cam(x, targets[start : start + 16])
            y, o = score_combos(spec, x, result, combos, batch_size)
            for m, combo in enumerate(combos):
                entry = rows.setdefault((q, clustering, *combo), {"y": [], "o": [], "pairs": []})
                entry["y"].append(y.cpu())
                entry["o"].append(o[:, m].cpu())
            bar.update(len(x))
        pair_inputs, splits, left_t, right_t = pairs
        for start in range(0, len(pair_inputs), 8):
            rows_slice = slice(start, start + 8)
            left = cam(pair_inputs[rows_slice], left_t[rows_slice])
            right = left.retarget(right_t[rows_slice])
            shares = pair_combos(left, right, combos, splits[rows_slice])
            for m, combo in enumerate(combos):
                rows[(q, clustering, *combo)]["pairs"].append(shares[:, m].cpu())
        bar.update(1)
    bar.close()
    return {key: summarise(value) for key, value in rows.items()}


def summarise(value: dict[str, list]) -> dict[str, float]:
    y, o = torch.cat(value["y"]), torch.cat(value["o"])
    return {
        "average_drop": metrics.average_drop(y, o),
        "confidence_drop": metrics.confidence_drop(y, o),
        "increase": metrics.increase_in_confidence(y, o),
        "pair_share": float(torch.cat(value["pairs"]).mean()) if value["pairs"] else float("nan"),
    }


def gradcam_bar(spec, images, targets, pairs, batch_size) -> dict[str, float]:
    cam = clustercam.get_method("gradcam")(spec)
    ys, os_ = [], []
    for start in range(0, len(images), 16):
        x = images[start : start + 16]
        result = cam(x, targets[start : start + 16])
        y, o = metrics.explanation_scores(spec.model, x, result.heatmaps, result.targets, batch_size=batch_size,
                                          probabilities=result.target_probabilities())
        ys.append(y.cpu())
        os_.append(o.cpu())
    pair_inputs, splits, left_t, right_t = pairs
    shares = metrics.pair_share(lambda x, t: cam(x, t).heatmaps, pair_inputs, left_t, right_t, splits)
    return summarise({"y": ys, "o": os_, "pairs": [shares.per_pair]})


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of points not dominated in (pair share ↑, average drop ↓)."""
    front = []
    for i, (share, drop) in enumerate(points):
        if not any(s >= share and d <= drop and (s > share or d < drop) for s, d in points):
            front.append(i)
    return sorted(front, key=lambda i: points[i][0])


def plot(records: list[dict], gradcam: dict, chosen: dict, path: Path) -> None:
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7.5, 5), dpi=120, layout="constrained")
    axes = figure.add_subplot()
    for (norm, out), group in itertools.groupby(
        sorted((r for r in records if r["stage"] == "A"), key=lambda r: (r["normalization"], r["output"])),
        key=lambda r: (r["normalization"], r["output"]),
    ):
        group = sorted(group, key=lambda r: r["beta"])
        axes.plot([r["pair_share"] for r in group], [r["average_drop"] for r in group], "o-", ms=3, lw=1,
                  label=f"Q=6 K-means, {norm}/{out} (β 0→1)")
    stage_b = [r for r in records if r["stage"] == "B"]
    axes.scatter([r["pair_share"] for r in stage_b], [r["average_drop"] for r in stage_b], s=8, c="#bbbbbb",
                 label="stage B: Q 2–8 × K-means/spectral × β", zorder=0)
    points = [(r["pair_share"], r["average_drop"]) for r in records]
    front = pareto_front(points)
    axes.plot([points[i][0] for i in front], [points[i][1] for i in front], "k--", lw=1, label="Pareto front")
    axes.axhline(gradcam["average_drop"], color="tab:red", lw=1, ls=":", label="Grad-CAM average drop")
    axes.scatter([gradcam["pair_share"]], [gradcam["average_drop"]], marker="s", c="tab:red", label="Grad-CAM")
    axes.scatter([chosen["pair_share"]], [chosen["average_drop"]], marker="*", s=220, c="gold", edgecolors="k",
                 label=f"chosen: Q={chosen['q']} {chosen['clustering']} β={chosen['beta']} {chosen['normalization']}/{chosen['output']}")
    axes.set_xlabel("pair share ↑ (class-discriminativeness)")
    axes.set_ylabel("average drop % ↓ (faithfulness)")
    axes.set_title("Cluster-CAM: faithfulness vs class-discriminativeness")
    axes.legend(fontsize=7, loc="best")
    figure.savefig(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "eval" / "imagenet-samples")
    parser.add_argument("--limit", type=int, default=200)
    parser.add_argument("--pairs", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--device", default=None)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks")
    args = parser.parse_args()
    started = time.time()

    spec = clustercam.load_model("efficientnet_lite0", device=args.device)
    samples = read_labels(args.data, limit=args.limit)
    squares = [load_square(s.path, spec.input_size) for s in samples]
    images = spec.to_tensor(squares)
    targets = spec.predict(images).argmax(1)
    chosen_pairs = choose_pairs(targets.tolist(), args.pairs)
    pair_inputs, splits = metrics.make_pairs(spec, [squares[i] for i, _ in chosen_pairs], [squares[j] for _, j in chosen_pairs])
    pairs = (pair_inputs, torch.tensor(splits), targets[[i for i, _ in chosen_pairs]], targets[[j for _, j in chosen_pairs]])

    gradcam = gradcam_bar(spec, images, targets, pairs, args.batch_size)
    stage_a = run_stage(spec, images, targets, pairs, [(6, "kmeans")],
                        lambda q, c: list(itertools.product(BETAS, NORMALIZATIONS, OUTPUTS)), args.batch_size, "stage A")
    records = [{"stage": "A", "q": k[0], "clustering": k[1], "beta": k[2], "normalization": k[3], "output": k[4], **v}
               for k, v in stage_a.items()]

    def beats_gradcam(r: dict) -> bool:
        return r["average_drop"] < gradcam["average_drop"] and r["increase"] > gradcam["increase"]

    def best(candidates: list[dict]) -> dict:
        eligible = [r for r in candidates if beats_gradcam(r)] or candidates
        return max(eligible, key=lambda r: (round(r["pair_share"], 3), -r["average_drop"]))

    best_a = best(records)
    norm, out = best_a["normalization"], best_a["output"]
    configs_b = [(q, c) for q in range(2, 9) for c in ("kmeans", "spectral")]
    stage_b = run_stage(spec, images, targets, pairs, configs_b, lambda q, c: [(b, norm, out) for b in BETAS],
                        args.batch_size, "stage B")
    records += [{"stage": "B", "q": k[0], "clustering": k[1], "beta": k[2], "normalization": k[3], "output": k[4], **v}
                for k, v in stage_b.items()]
    chosen = best(records)

    args.out.mkdir(parents=True, exist_ok=True)
    with open(args.out / "sweep.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(records[0]))
        writer.writeheader()
        writer.writerows(records)
    plot(records, gradcam, chosen, args.out / "pareto.png")
    settings = {
        "data": str(args.data), "images": len(samples), "pairs": len(chosen_pairs), "model": spec.name,
        "layer": spec.default_layer, "device": str(spec.device), "machine": platform.platform(),
        "processor": platform.processor() or platform.machine(), "torch": torch.__version__,
        "threads": torch.get_num_threads(), "seconds": round(time.time() - started, 1),
    }
    (args.out / "sweep.json").write_text(json.dumps({"settings": settings, "gradcam": gradcam, "chosen": chosen,
                                                     "best_stage_a": best_a, "records": records}, indent=1))

    print(f"\n{len(samples)} images, {len(chosen_pairs)} pairs, {settings['seconds']} s")
    print(f"Grad-CAM: average drop {gradcam['average_drop']:.2f}, increase {gradcam['increase']:.1f}, pair share {gradcam['pair_share']:.3f}")
    print("\n| stage | Q | clustering | β | normalization | output | avg drop ↓ | increase ↑ | pair share ↑ | beats Grad-CAM |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in [*sorted(records, key=lambda r: -r["pair_share"])[:25], chosen]:
        print(f"| {r['stage']} | {r['q']} | {r['clustering']} | {r['beta']} | {r['normalization']} | {r['output']} | "
              f"{r['average_drop']:.2f} | {r['increase']:.1f} | {r['pair_share']:.3f} | {'yes' if beats_gradcam(r) else 'no'} |")
    print(f"\nchosen: {chosen}")


if __name__ == "__main__":
    main()
