"""The tuning part's tables for docs/benchmarks.md, from the ``tuning.json`` of ``sweep_defaults.py``.

Applies the rule of docs/protocol.md (:func:`sweep_defaults.apply_rule`, rules 1-6) to the stage-2
rows and prints markdown: Grad-CAM on the tuning part, every stage-2 configuration with the
paired 95 % intervals of its differences to Grad-CAM, each rule's pick (as a ``PRESETS`` entry of
``clustercam/methods/presets.py``, with the preset it is offered as) and whether a cluster-quality
score picks a good Q per image. Reads no image.

    python benchmarks/tuning_report.py docs/benchmarks/tuning/tuning.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from _tuning import preset_entry
from sweep_defaults import PRESET_OF_RULE, apply_rule, qualifies

from clustercam.methods.presets import PRESETS


def label(row: dict) -> str:
    """A configuration in words, e.g. ``K-means Q 8, difference max/relu, β 0.8``."""
    if row["clustering"] == "spectral":
        rows = ", rows normalised" if row.get("normalize_rows") else ""
        clustering = f"spectral ({row['similarity']}{rows}) Q {row['q']}"
    else:
        clustering = f"K-means Q {row['q']}"
    return f"{clustering}, {row['combination']} {row['normalization']}/{row['output']}, β {row['beta']:g}"


def interval(d: dict, digits: int) -> str:
    return f"{d['estimate']:+.{digits}f} [{d['low']:+.{digits}f}, {d['high']:+.{digits}f}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("tuning", type=Path, help="tuning.json written by sweep_defaults.py")
    args = parser.parse_args()
    data = json.loads(args.tuning.read_text())
    settings, gradcam, rows = data["settings"], data["gradcam_stage2"], data["stage2"]
    choice = apply_rule(rows, gradcam)
    n_images, n_pairs = settings["stage2_images"], settings["stage2_pairs"]

    print(f"Grad-CAM on the tuning part ({n_images} photographs, {n_pairs} pairs): average drop "
          f"**{gradcam['average_drop']:.2f} %**, increase **{gradcam['increase']:.1f} %**, pair share "
          f"**{gradcam['pair_share']:.3f}**.\n")
    print("| configuration | passes | average drop % ↓ | Δ vs Grad-CAM [95 %] | increase % ↑ | Δ [95 %] | pair share ↑ | Δ [95 %] | rule 1 |")
    print("|---|---:|---:|---|---:|---|---:|---|:---:|")
    for row in sorted(rows, key=lambda r: (r["clustering"], r.get("paper", False), r["combination"], r["q"], r["beta"])):
        mark = "yes" if row["preset_candidate"] and qualifies(row, gradcam) else ("—" if not row["preset_candidate"] else "no")
        name = label(row) + (" (paper-literal)" if row.get("paper") else "")
        print(f"| {name} | {row['q'] + 1} | {row['average_drop']:.2f} | {interval(row['d_average_drop'], 2)} | "
              f"{row['increase']:.1f} | {interval(row['d_increase'], 1)} | {row['pair_share']:.3f} | "
              f"{interval(row['d_pair_share'], 3)} | {mark} |")

    unknown = set(PRESET_OF_RULE.values()) - set(PRESETS)
    if unknown:
        raise SystemExit(f"sweep_defaults.PRESET_OF_RULE names no preset: {', '.join(sorted(unknown))}")
    print("\nThe rule's choice (docs/protocol.md), and the preset each pick is offered as:\n")
    for name in ("balanced", "faithful", "discriminative", "paper", "spectral"):
        row = choice[name]
        offered = f" (preset `{PRESET_OF_RULE[name]}`)" if name in PRESET_OF_RULE else " (no preset)"
        print(f"- `{name}`{offered}: " + (f"{label(row)}; {json.dumps(preset_entry(row))}" if row else "none qualifies"))

    auto_q = data.get("auto_q")
    if auto_q:
        print("\nQ chosen per image by a cluster-quality score (K-means, Q = 2…8, the stage-1 screen):\n")
        print("| score | combination, β | Q picked (count per Q) | average drop, auto Q | best fixed Q: Q, average drop | auto − best fixed [95 %] | oracle | median Spearman(score, drop) |")
        print("|---|---|---|---:|---|---|---:|---:|")
        for criterion, result in auto_q.items():
            counts = ", ".join(f"{q}: {c}" for q, c in result["chosen_q_counts"].items() if c)
            for row in result["rows"]:
                print(f"| {criterion} | {row['combination']}, {row['beta']:g} | {counts} | {row['auto_average_drop']:.2f} | "
                      f"{row['best_fixed_q']}, {row['best_fixed_average_drop']:.2f} | {interval(row['auto_minus_best_fixed'], 2)} | "
                      f"{row['oracle_average_drop']:.2f} | {row['median_spearman_score_vs_drop']:+.2f} |")
    (args.tuning.parent / "choice.json").write_text(json.dumps(
        {name: (preset_entry(row) if isinstance(row, dict) else row) for name, row in choice.items()}, indent=1) + "\n")


if __name__ == "__main__":
    main()
