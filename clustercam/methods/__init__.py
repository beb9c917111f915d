"""CAM methods: Cluster-CAM and the baselines, all over :class:`~clustercam.methods.base.BaseCAM`."""

from .base import BaseCAM, CAMResult, Explanation
from .cluster import DEFAULT_BETA, DEFAULT_Q, ClusterCAM, ClusterCAMResult, ClusterExplanation

__all__ = [
    "DEFAULT_BETA",
    "DEFAULT_Q",
    "BaseCAM",
    "CAMResult",
    "ClusterCAM",
    "ClusterCAMResult",
    "ClusterExplanation",
    "Explanation",
]
