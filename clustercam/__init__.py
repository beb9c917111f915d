"""clustercam: Cluster-CAM and its baselines for explaining CNN image classifiers.

>>> import clustercam
>>> spec = clustercam.load_model()                    # embedded EfficientNet-Lite0, offline
>>> x = spec.preprocess("assets/chelsea.jpg")
>>> result = clustercam.ClusterCAM(spec, q=6)(x)      # default layer, predicted class
>>> result[0].heatmap.shape, result[0].base_index, result[0].scissors_index
"""

# ruff: noqa: E402 (the imports below follow the call that must come before torch's import)
from . import environment as _environment

# Inductor fixes its cache folder when torch is first imported: point it at clustercam's own
# folder first (the one place this default is set).
_environment.point_inductor_cache()

from .classifiers import from_module
from .clustering import kmeans, spectral_clustering
from .hooks import LayerCapture
from .imaging import ImageError, load_image
from .methods import (
    DEFAULT_BETA,
    DEFAULT_PRESET,
    DEFAULT_Q,
    METHODS,
    PRESET_NOTES,
    PRESETS,
    BaseCAM,
    BetaTradeoff,
    CAMResult,
    ClusterCAM,
    ClusterCAMResult,
    get_method,
    preset_options,
)
from .zoo import ModelSpec, WeightsUnavailableError, available_models, load_model

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_BETA",
    "DEFAULT_PRESET",
    "DEFAULT_Q",
    "METHODS",
    "PRESETS",
    "PRESET_NOTES",
    "BaseCAM",
    "BetaTradeoff",
    "CAMResult",
    "ClusterCAM",
    "ClusterCAMResult",
    "ImageError",
    "LayerCapture",
    "ModelSpec",
    "WeightsUnavailableError",
    "__version__",
    "available_models",
    "from_module",
    "get_method",
    "kmeans",
    "load_image",
    "load_model",
    "preset_options",
    "spectral_clustering",
]
