"""What every handler shares: turning user mistakes into ``gr.Error``, reading inputs, ZeroGPU."""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import gradio as gr
import torch

from clustercam.clustering import SIMILARITIES
from clustercam.imaging import ImageError
from clustercam.methods.cluster import DEFAULT_PRESET, PRESETS, check_beta
from clustercam.zoo import ModelSpec, WeightsUnavailableError

F = TypeVar("F", bound=Callable[..., Any])
#: The default of every handler's ``progress`` parameter. Gradio recognises it by its type and
#: passes a fresh tracker per event; called directly (tests), it does nothing.
PROGRESS = gr.Progress()

try:  # optional ZeroGPU on Hugging Face Spaces: a GPU is attached only while a decorated call runs
    import spaces  # type: ignore[import-not-found]

    gpu: Callable[[F], F] = spaces.GPU
except ImportError:  # everywhere else: a no-op

    def gpu(fn: F) -> F:
        return fn


def user_errors(fn: F) -> F:
    """Re-raise the library's user-facing errors as ``gr.Error`` with the same message.

    ``ImageError`` (unreadable image), ``ValueError`` (bad Q, layer, class, degenerate maps, …),
    ``TypeError`` (bad option) and ``WeightsUnavailableError`` (no network for the weights) reach
    the page, or a ``gradio_client`` caller, as a readable error; the server keeps serving.
    """

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except gr.Error:
            raise
        except (ImageError, ValueError, TypeError, WeightsUnavailableError) as error:
            raise gr.Error(str(error)) from error
        except torch.OutOfMemoryError as error:
            raise gr.Error(
                "The device ran out of memory for this request; try a smaller image, a smaller Q or "
                "fewer methods at once."
            ) from error

    return wrapper  # type: ignore[return-value]


def read_image(path: str | None) -> tuple[bytes, str]:
    """``(file bytes, name stem)`` of the uploaded image (``gr.Image(type="filepath")``).

    The bytes go to :func:`clustercam.load_image` (size limit, EXIF, any mode) and are hashed
    for the cache.
    """
    if not path:
        raise gr.Error("No image yet: upload one (or paste, or use the webcam) or click an example.")
    file = Path(path)
    if not file.is_file():
        raise ImageError(f"No image file at {file.name}; please upload it again.")
    return file.read_bytes(), file.stem


def whole(value: float | int | str | None, what: str, minimum: int | None = None) -> int:
    """A slider's float (or an API caller's number) as an int, refusing fractions."""
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be a whole number; got {value!r}.") from None
    if not number.is_integer():
        raise ValueError(f"{what} must be a whole number; got {value}.")
    if minimum is not None and number < minimum:
        raise ValueError(f"{what} must be at least {minimum}; got {int(number)}.")
    return int(number)


def cluster_options(
    q: float,
    clustering: str,
    n_eigenvectors: float | None,
    sigma: float | None,
    theta: float | None,
    seed: float | None,
    preset: str | None = None,
    similarity: str | None = None,
    normalize_rows: bool | None = None,
) -> dict[str, Any]:
    """Cluster-CAM's constructor options from the page's controls (K = 0 means Q − 1).

    ``preset`` (empty: the library's default) sets how the scored cluster maps are combined;
    Q and the clustering given here override it.
    """
    if clustering not in ("kmeans", "spectral"):
        raise ValueError(f"Clustering must be 'kmeans' or 'spectral'; got {clustering!r}.")
    options: dict[str, Any] = {
        "preset": check_preset(preset),
        "q": whole(q, "Q"),
        "clustering": clustering,
        "seed": whole(seed if seed is not None else 0, "The seed", 0),
    }
    if clustering == "spectral":
        k = whole(n_eigenvectors if n_eigenvectors is not None else 0, "K (eigenvectors)", 0)
        if k > 0:
            options["n_eigenvectors"] = k
        if sigma is not None:
            options["sigma"] = float(sigma)
        if theta is not None:
            options["theta"] = float(theta)
        if similarity:
            if similarity not in SIMILARITIES:
                raise ValueError(f"The similarity must be one of {', '.join(SIMILARITIES)}; got {similarity!r}.")
            options["similarity"] = similarity
        if normalize_rows is not None:
            options["normalize_rows"] = bool(normalize_rows)
    return options


def check_preset(preset: str | None) -> str:
    """A preset name (empty: the default one), refused with the list when unknown."""
    if not preset:
        return DEFAULT_PRESET
    if preset not in PRESETS:
        raise ValueError(f"Unknown preset {preset!r}; choose from {', '.join(PRESETS)}.")
    return preset


def checked_beta(beta: float | None) -> float:
    if beta is None:
        raise ValueError("β is missing; give a number between 0 and 1.")
    return check_beta(beta)


def target_index(spec: ModelSpec, target: str | int | None) -> int | None:
    """A class index from the dropdown's value (index as text), a class name, or None (top-1)."""
    if target is None or (isinstance(target, str) and not target.strip()):
        return None
    return spec.class_index(target)
