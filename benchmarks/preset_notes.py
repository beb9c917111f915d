"""Write ``clustercam/methods/preset_notes.json``: each preset's measured line, from the tuning output.

The figures of a preset are read from the tuning run that chose it (docs/protocol.md): rules 3–6
of ``docs/benchmarks/tuning/tuning.json`` (stage 2 on the whole tuning part; ``legacy`` from the
stage-1 screen, the only stage that scored it) and amendment 2 of
``docs/benchmarks/tuning-eq22/tuning.json`` (``eq22`` on the whole tuning part; ``spectral`` on
all tuning pairs and the 240-photograph screen). Nothing here is typed by hand but the words
that say what each preset computes.

    python benchmarks/preset_notes.py
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from _common import ROOT

from clustercam.methods.presets import PRESETS

TUNING = ROOT / "docs" / "benchmarks" / "tuning" / "tuning.json"
EQ22 = ROOT / "docs" / "benchmarks" / "tuning-eq22" / "tuning.json"
OUT = ROOT / "clustercam" / "methods" / "preset_notes.json"
#: What each preset computes, in words (the figures follow from the tuning output).
WORDS = {
    "eq22": "eq. 22, the default",
    "spectral": "eq. 22 with spectral clustering",
    "discriminative": "eq. 22 at Grad-CAM's pair share",
    "gated": "a variant, not in the paper: base gated by the scissors, β barely acts",
    "weighted": "a variant, not in the paper: score-weighted clusters",
    "paper": "eq. 22 exactly as printed, raw cluster means",
    "legacy": "the earlier Q = 3 defaults",
}
KEYS = ("q", "beta", "clustering", "normalization", "output", "combination")


def matches(row: dict, options: dict) -> bool:
    keys = KEYS + (("similarity", "normalize_rows") if options["clustering"] == "spectral" else ())
    for key in keys:
        value = row.get(key)
        if key == "normalize_rows":
            value = value in (True, "True")
        if key in ("q",):
            value = int(value)
        if key == "beta":
            value = round(float(value), 3)
            if value != round(float(options[key]), 3):
                return False
            continue
        if value != options[key]:
            return False
    return True


def find(rows: list[dict], options: dict) -> dict | None:
    return next((row for row in rows if matches(row, options)), None)


def entry(name: str, row: dict, gradcam: dict, images: int, pairs: int, source: Path) -> dict:
    note = (f"{WORDS[name]} · tuning part: average drop {row['average_drop']:.1f} % (Grad-CAM "
            f"{gradcam['average_drop']:.1f} %), pair share {row['pair_share']:.2f} ({gradcam['pair_share']:.2f})")
    return {"note": note, "average_drop": round(row["average_drop"], 3), "increase": round(row["increase"], 2),
            "pair_share": round(row["pair_share"], 4), "gradcam": {k: round(v, 4) for k, v in gradcam.items()},
            "images": images, "pairs": pairs, "source": str(source.relative_to(ROOT))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    tuning, eq22 = json.loads(TUNING.read_text()), json.loads(EQ22.read_text())
    settings, eq_settings = tuning["settings"], eq22["settings"]
    notes = {}
    for name, options in PRESETS.items():
        if name == "eq22":
            row = find(eq22["candidates"], options)
            found = (row, eq22["gradcam"], eq_settings["images"], eq_settings["pairs"], EQ22)
        elif name == "spectral":
            row = find(eq22["spectral"], options)
            found = (row, eq22["gradcam_screen"], eq_settings["screen_images"], eq_settings["pairs"], EQ22)
        else:
            row = find(tuning["stage2"], options)
            found = (row, tuning["gradcam_stage2"], settings["stage2_images"], settings["stage2_pairs"], TUNING)
            if row is None:  # scored on the stage-1 screen only
                row = find(tuning["stage1"], options)
                found = (row, tuning["gradcam_stage1"], settings["screen_images"], settings["screen_pairs"], TUNING)
        if found[0] is None:
            raise SystemExit(f"No tuning figures for preset {name!r} ({options}); run the tuning scripts first.")
        notes[name] = entry(name, *found)
    args.out.write_text(json.dumps(notes, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    for name, item in notes.items():
        print(f"{name}: {item['note']}")


if __name__ == "__main__":
    main()
