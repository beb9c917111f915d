"""Serving machinery, by concern:

- :mod:`~clustercamapp.engine.models` — the models the explorer serves (each loaded once, a lock per
  model, compiled graphs built in the background) and ``/status``;
- :mod:`~clustercamapp.engine.cache` — the explanation cache (:data:`RESULTS`): one explanation per
  image, model, layer and clustering options, redrawn for any class and β with no forward pass;
- :mod:`~clustercamapp.engine.tasks` — the network work as tasks (in this process, or one
  ``@spaces.GPU`` task per request on ZeroGPU);
- :mod:`~clustercamapp.engine.runtime` — the explain lane at run time (:data:`RUNTIME`: requests in
  flight, the heap trim once it falls quiet, torch threads, background priority).

Settings from the environment are read and checked by :mod:`clustercam.environment`.
"""

from .cache import (
    DISPLAY_SIDE,
    RESULTS,
    TILE_SIDE,
    TRADEOFF_BETAS,
    CachedExplanation,
    ResultCache,
    cache_key,
    explain_cached,
    image_digest,
)
from .models import (
    EXAMPLES_READY,
    FILES,
    LOADED,
    add_model_file,
    get_model,
    model_choices,
    model_lock,
    resolve_layer_name,
    status,
)
from .runtime import RUNTIME, Runtime, forward_images, torch_threads
from .tasks import Computed, compute_explanation, explanation_passes, measure_kept

__all__ = [
    "DISPLAY_SIDE",
    "EXAMPLES_READY",
    "FILES",
    "LOADED",
    "RESULTS",
    "RUNTIME",
    "TILE_SIDE",
    "TRADEOFF_BETAS",
    "CachedExplanation",
    "Computed",
    "ResultCache",
    "Runtime",
    "add_model_file",
    "cache_key",
    "compute_explanation",
    "explain_cached",
    "explanation_passes",
    "forward_images",
    "get_model",
    "image_digest",
    "measure_kept",
    "model_choices",
    "model_lock",
    "resolve_layer_name",
    "status",
    "torch_threads",
]
