"""The tuning part's tables of amendment 2 for docs/benchmarks.md, from ``tune_eq22.py``'s output.

Prints markdown: Grad-CAM on the tuning part, the candidates of rule D at the chosen Q and
normalisation across β (and the best β of every other Q), each with the paired 95 % intervals of
its differences to Grad-CAM, the rule's choice, and the six spectral candidates of rule S. Reads
no image.

    python benchmarks/tuning_eq22_report.py docs/benchmarks/tuning-eq22/tuning.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from tune_eq22 import qualifies


def interval(d: dict, digits: int) -> str:
    return f"{d['estimate']:+.{digits}f} [{d['low']:+.{digits}f}, {d['high']:+.{digits}f}]"


def row(name: str, r: dict, gradcam: dict, mark: bool = True) -> str:
    ok = "yes" if qualifies(r, gradcam) else "no"
    return (f"| {name} | {r['q'] + 1} | {r['average_drop']:.2f} | {interval(r['d_average_drop'], 2)} | {r['increase']:.1f} | "
            f"{interval(r['d_increase'], 1)} | {r['pair_share']:.3f} | {interval(r['d_pair_share'], 3)} |" + (f" {ok} |" if mark else ""))


HEADER = ("| configuration | passes | average drop % ↓ | Δ vs Grad-CAM [95 %] | increase % ↑ | Δ [95 %] | pair share ↑ | Δ [95 %] |",
          "|---|---:|---:|---|---:|---|---:|---|")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("tuning", type=Path)
    args = parser.parse_args()
    data = json.loads(args.tuning.read_text())
    settings, gradcam, rows, default = data["settings"], data["gradcam"], data["candidates"], data["default"]
    print(f"Grad-CAM on the tuning part ({settings['images']} photographs, {settings['pairs']} pairs): average drop "
          f"**{gradcam['average_drop']:.2f} %**, increase **{gradcam['increase']:.1f} %**, pair share **{gradcam['pair_share']:.3f}**.\n")
    print(f"Rule D's candidates at the chosen Q = {default['q']} and `{default['normalization']}` normalisation, across β:\n")
    print(HEADER[0] + " rule D |")
    print(HEADER[1] + ":---:|")
    line = sorted((r for r in rows if r["q"] == default["q"] and r["normalization"] == default["normalization"]), key=lambda r: r["beta"])
    for r in line:
        chosen = " **(chosen)**" if r["beta"] == default["beta"] else ""
        print(row(f"K-means Q {r['q']}, eq. 22 {r['normalization']}/relu, β {r['beta']:g}{chosen}", r, gradcam))
    print("\nEvery Q and normalisation at its best qualifying β (highest pair share), or its lowest average drop where none qualifies:\n")
    print(HEADER[0] + " rule D |")
    print(HEADER[1] + ":---:|")
    for q in sorted({r["q"] for r in rows}):
        for normalization in sorted({r["normalization"] for r in rows}):
            group = [r for r in rows if r["q"] == q and r["normalization"] == normalization]
            good = [r for r in group if qualifies(r, gradcam)]
            best = max(good, key=lambda r: (round(r["pair_share"], 2), -r["average_drop"])) if good else min(group, key=lambda r: r["average_drop"])
            print(row(f"K-means Q {q}, eq. 22 {normalization}/relu, β {best['beta']:g}", best, gradcam))
    qualifying = sum(qualifies(r, gradcam) for r in rows)
    print(f"\n{qualifying} of {len(rows)} candidates qualify. The choice: `{json.dumps(data['choice']['eq22'])}` "
          f"(qualifies: {data['choice']['eq22_qualifies']}).\n")
    screen = data["gradcam_screen"]
    print(f"Rule S: spectral clustering at the default's Q, normalisation and β, on all {settings['pairs']} tuning pairs "
          f"and the {settings['screen_images']}-photograph screen (Grad-CAM there: average drop {screen['average_drop']:.2f} %, "
          f"pair share {screen['pair_share']:.3f}):\n")
    print(HEADER[0])
    print(HEADER[1])
    for r in sorted(data["spectral"], key=lambda r: -r["pair_share"]):
        rows_normalised = ", rows normalised" if r["normalize_rows"] in (True, "True") else ""
        print(row(f"spectral ({r['similarity']}{rows_normalised})", r, screen, mark=False))
    print(f"\nThe choice: `{json.dumps(data['choice']['spectral_options'])}`.")
    print(f"\n(Measured in {settings['seconds'] / 3600:.1f} h on {settings['processor']}, {settings['threads']} threads, "
          f"torch {settings['torch']}: `{settings['command']}`.)")


if __name__ == "__main__":
    main()
