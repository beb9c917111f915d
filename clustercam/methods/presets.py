"""Named Cluster-CAM configurations, each chosen on the tuning part by a rule written first.

How each was chosen is in ``docs/protocol.md``; their trade-offs on photographs the choice never
saw are in ``docs/benchmarks.md``. Every key of a preset is a :class:`~clustercam.ClusterCAM`
argument; options given beside a preset override it.

- ``eq22`` (**the default**; amendment 2, rule D): eq. 22 as the paper writes it,
  ``β·B − (1 − β)·S``, on cluster maps put on one scale (``normalization``), the negative part cut
  (``relu``). β moves the heatmap along the whole trade-off: β = 1 is the base alone (the most
  faithful end), lower β cuts more of the scissors away (more class-discriminative).
- ``spectral``: the default with spectral clustering (rule S's similarity).
- ``discriminative`` (rule 4): eq. 22 at the pair share closest to Grad-CAM's.
- ``gated`` (formerly ``faithful``, rule 3): a variant, not in the paper: the base kept where the
  scissors are weak, ``B ⊙ (1 − (1 − β)·S)``; very faithful, and β barely acts.
- ``weighted`` (formerly ``spectral``, rule 6): a variant, not in the paper: all cluster maps
  weighted by their scores, spectral clustering comparing maps by correlation.
- ``paper`` (rule 5): eq. 22 exactly as printed (raw cluster means, then min–max scaled), eq. 17's
  Euclidean similarity when spectral clustering is chosen.
- ``legacy``: the earlier Q = 3 defaults, for comparison.

**Spectral options.** Every preset names the similarity (and embedding row normalisation) used
when spectral clustering is chosen with it, so that picking "spectral" in any interface gives the
similarity that separated objects best on the tuning part (rule S); ``paper`` keeps eq. 17.

**Notes.** :data:`PRESET_NOTES` (one line per preset: its measured figures on the tuning part)
are generated from the tuning output by ``benchmarks/preset_notes.py`` into
``preset_notes.json`` beside this file; they are not typed by hand.
"""

from __future__ import annotations

import json
from pathlib import Path

#: Rule S (docs/protocol.md, amendment 2): what "spectral" means unless a preset says otherwise.
SPECTRAL_OPTIONS: dict = {"similarity": "correlation", "normalize_rows": True}
#: Eq. 17 as printed: the Euclidean distance of two maps in a Gaussian kernel, rows as they are.
PAPER_SPECTRAL_OPTIONS: dict = {"similarity": "euclidean", "normalize_rows": False}

#: Rule D's choice on the tuning part (docs/benchmarks/tuning-eq22/choice.json).
_EQ22 = {"q": 12, "beta": 0.8, "clustering": "kmeans", "normalization": "max", "output": "relu",
         "combination": "difference"}

#: name → ClusterCAM options (module docstring).
PRESETS: dict[str, dict] = {
    "eq22": {**_EQ22, **SPECTRAL_OPTIONS},
    "spectral": {**_EQ22, "clustering": "spectral", **SPECTRAL_OPTIONS},
    "discriminative": {"q": 8, "beta": 0.8, "clustering": "kmeans", "normalization": "minmax", "output": "relu",
                       "combination": "difference", **SPECTRAL_OPTIONS},
    "gated": {"q": 8, "beta": 0.8, "clustering": "kmeans", "normalization": "max", "output": "relu",
              "combination": "gated", **SPECTRAL_OPTIONS},
    "weighted": {"q": 6, "beta": 0.5, "clustering": "spectral", "normalization": "max", "output": "relu",
                 "combination": "weighted", "similarity": "correlation", "normalize_rows": True},
    "paper": {"q": 6, "beta": 0.5, "clustering": "kmeans", "normalization": "none", "output": "minmax",
              "combination": "difference", **PAPER_SPECTRAL_OPTIONS},
    "legacy": {"q": 3, "beta": 0.8, "clustering": "kmeans", "normalization": "max", "output": "relu",
               "combination": "difference", **SPECTRAL_OPTIONS},
}
#: Earlier names, still accepted: ``faithful`` computed the gated variant, ``spectral`` used to
#: name the weighted one (now ``spectral`` is the default with spectral clustering).
ALIASES: dict[str, str] = {"faithful": "gated"}
#: The preset :class:`~clustercam.ClusterCAM`, the CLI and the app follow when none is named.
DEFAULT_PRESET = "eq22"


def _load_figures() -> dict[str, dict]:
    path = Path(__file__).with_name("preset_notes.json")
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


#: Each preset's measured figures on the tuning part (``average_drop``, ``pair_share``, Grad-CAM's
#: under ``gradcam``, …), generated from the tuning output (module docstring).
PRESET_FIGURES: dict[str, dict] = _load_figures()
#: One line per preset, generated from the tuning output (module docstring).
PRESET_NOTES: dict[str, str] = {name: entry["note"] for name, entry in PRESET_FIGURES.items()}


def preset_name(preset: str | None) -> str:
    """The canonical name of ``preset`` (None: the default; old names through :data:`ALIASES`).

    Raises:
        ValueError: an unknown name (the message lists the presets).
    """
    if preset is None:
        return DEFAULT_PRESET
    if not isinstance(preset, str):
        raise ValueError(f"A preset is named by text; got {type(preset).__name__}. Choose from {', '.join(PRESETS)}.")
    name = ALIASES.get(preset, preset)
    if name not in PRESETS:
        raise ValueError(f"Unknown preset {preset!r}; choose from {', '.join(PRESETS)}.")
    return name


def preset_options(preset: str | None) -> dict:
    """A copy of the options of a named preset (``None``: the default)."""
    return dict(PRESETS[preset_name(preset)])
