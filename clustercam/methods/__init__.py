"""CAM methods: Cluster-CAM and the baselines, all over :class:`~clustercam.methods.base.BaseCAM`.

:data:`METHODS` maps the names used by the CLI, the benchmark and the app to the classes.
"""

from __future__ import annotations

from .ablation import AblationCAM
from .base import BaseCAM, CAMResult, Explanation
from .cluster import (
    DEFAULT_BETA,
    DEFAULT_Q,
    BetaTradeoff,
    ClusterCAM,
    ClusterCAMResult,
    ClusterExplanation,
)
from .gradient import GradCAM, GradCAMPlusPlus, SmoothGradCAMPlusPlus, XGradCAM
from .group import GroupCAM
from .presets import DEFAULT_PRESET, PRESET_NOTES, PRESETS, preset_options
from .reciprocam import ReciproCAM
from .score import ScoreCAM

#: name → class; every class takes ``(model, layer=None, *, batch_size=..., **options)``.
METHODS: dict[str, type[BaseCAM]] = {
    "clustercam": ClusterCAM,
    "gradcam": GradCAM,
    "gradcam++": GradCAMPlusPlus,
    "smoothgradcam++": SmoothGradCAMPlusPlus,
    "xgradcam": XGradCAM,
    "ablationcam": AblationCAM,
    "scorecam": ScoreCAM,
    "groupcam": GroupCAM,
    "reciprocam": ReciproCAM,
}


def get_method(name: str) -> type[BaseCAM]:
    """The class registered as ``name`` (case-insensitive; ``-`` and ``_`` ignored)."""
    key = name.lower().replace("-", "").replace("_", "")
    for registered, cls in METHODS.items():
        if registered.replace("-", "").replace("_", "") == key:
            return cls
    raise ValueError(f"Unknown method '{name}'. Choose from: {', '.join(METHODS)}.")


__all__ = [
    "DEFAULT_BETA",
    "DEFAULT_PRESET",
    "DEFAULT_Q",
    "METHODS",
    "PRESETS",
    "PRESET_NOTES",
    "AblationCAM",
    "BaseCAM",
    "BetaTradeoff",
    "CAMResult",
    "ClusterCAM",
    "ClusterCAMResult",
    "ClusterExplanation",
    "Explanation",
    "GradCAM",
    "GradCAMPlusPlus",
    "GroupCAM",
    "ReciproCAM",
    "ScoreCAM",
    "SmoothGradCAMPlusPlus",
    "XGradCAM",
    "get_method",
    "preset_options",
]
