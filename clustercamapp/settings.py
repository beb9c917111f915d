"""The shared settings of every tab, parsed once: the page's controls → one :class:`Settings`.

Every network endpoint (``/explain``, ``/compare``, ``/sweep_*``) takes the same block of
inputs, in the order of :data:`SETTING_NAMES`, followed by its own (e.g. the methods of
``/compare``). :func:`takes_settings` gives a handler ``fn(settings, *own, progress)`` that public
signature, so Gradio's API page and ``gradio_client`` see named parameters, while the handler
reads one checked dataclass instead of repeating fifteen arguments.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from clustercam import render
from clustercam.clustering import SIMILARITIES
from clustercam.imaging import ImageError
from clustercam.methods.cognition import check_beta
from clustercam.methods.presets import PRESETS, preset_name
from clustercam.zoo import DEFAULT_MODEL, ModelSpec

from .common import PROGRESS, UserError
from .engine import get_model, resolve_layer_name

#: The settings block every network endpoint starts with, in order, with the API's defaults.
SETTING_DEFAULTS: dict[str, Any] = {
    "image": None,
    "model": DEFAULT_MODEL,
    "layer": "",
    "q": None,  # None: the preset's
    "beta": None,  # None: the preset's
    "clustering": "kmeans",
    "n_eigenvectors": 0,
    "sigma": 0.2,
    "theta": 0.0,
    "seed": 0,
    "target": "",
    "preset": "",
    "similarity": "",
    "normalize_rows": None,
    "colormap": render.DEFAULT_CMAP,
}
SETTING_NAMES = tuple(SETTING_DEFAULTS)


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


def check_preset(preset: str | None) -> str:
    """A preset's canonical name (empty: the default one; old names accepted), refused with the
    list when unknown."""
    return preset_name(preset or None)


def checked_beta(beta: float | None) -> float:
    """β of a redraw: a number in ``[0, 1]`` (None is a mistake here, not "the preset's")."""
    if beta is None:
        raise ValueError("β is missing; give a number between 0 and 1.")
    return check_beta(beta)


def check_colormap(colormap: str | None) -> str:
    if not colormap:
        return render.DEFAULT_CMAP
    if colormap not in render.CMAPS:
        raise ValueError(f"Unknown colormap {colormap!r}; choose from {', '.join(render.CMAPS)}.")
    return colormap


@dataclass(frozen=True)
class Settings:
    """What the user asked for, checked (a mistake raises ``ValueError`` with a message).

    Attributes:
        image: path of the uploaded file (None: nothing uploaded yet).
        model / layer: zoo name and layer name ("" = the model's default layer).
        beta: β of eq. 22 (redraw only).
        target: the class field as typed ("" = top-1; index as text or a class name).
        colormap: the heatmap colormap (redraw only).
        options: Cluster-CAM's constructor options (preset, Q, clustering, seed, spectral ones);
            with the model and layer, the key of the cached explanation.
        spectral: the spectral options of the page (K, σ, θ, similarity, row normalisation),
            in ``options`` only with spectral clustering.
    """

    image: str | None
    model: str
    layer: str
    beta: float
    target: str
    colormap: str
    options: dict[str, Any] = field(default_factory=dict)
    spectral: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def parse(cls, **values: Any) -> Settings:
        """From the controls' values (names of :data:`SETTING_NAMES`; missing ones take defaults)."""
        unknown = set(values) - set(SETTING_NAMES)
        if unknown:
            raise TypeError(f"Unknown settings: {', '.join(sorted(unknown))}.")
        v = {**SETTING_DEFAULTS, **{k: value for k, value in values.items() if value is not None}}
        preset = check_preset(v["preset"])
        chosen = PRESETS[preset]
        q = whole(v["q"] if v["q"] is not None else chosen["q"], "Q")
        beta_value = v["beta"] if v["beta"] is not None else chosen["beta"]
        clustering = v["clustering"] or chosen.get("clustering", "kmeans")
        if clustering not in ("kmeans", "spectral"):
            raise ValueError(f"Clustering must be 'kmeans' or 'spectral'; got {clustering!r}.")
        options: dict[str, Any] = {
            "preset": preset, "q": q, "clustering": clustering, "seed": whole(v["seed"], "The seed", 0),
        }
        spectral: dict[str, Any] = {"sigma": float(v["sigma"]), "theta": float(v["theta"])}
        k = whole(v["n_eigenvectors"], "K (eigenvectors)", 0)
        if k > 0:
            spectral["n_eigenvectors"] = k
        if v["similarity"]:
            if v["similarity"] not in SIMILARITIES:
                raise ValueError(f"The similarity must be one of {', '.join(SIMILARITIES)}; got {v['similarity']!r}.")
            spectral["similarity"] = v["similarity"]
        if v["normalize_rows"] is not None:
            spectral["normalize_rows"] = bool(v["normalize_rows"])
        if clustering == "spectral":
            options.update(spectral)
        return cls(
            image=v["image"] or None, model=str(v["model"]), layer=str(v["layer"] or ""),
            beta=check_beta(float(beta_value)), target=str(v["target"] or "").strip(),
            colormap=check_colormap(v["colormap"]), options=options, spectral=spectral,
        )

    def with_options(self, **changes: Any) -> Settings:
        """The same settings with some Cluster-CAM options changed (sweeps)."""
        return replace(self, options={**self.options, **changes})

    def as_spectral(self, **changes: Any) -> Settings:
        """The same settings with spectral clustering and the page's spectral options."""
        return self.with_options(clustering="spectral", **self.spectral, **changes)

    def spec(self) -> ModelSpec:
        """The model, loaded once (``ValueError`` for a name the app does not offer)."""
        return get_model(self.model)

    def layer_name(self, spec: ModelSpec) -> str:
        return resolve_layer_name(spec, self.layer)

    def target_index(self, spec: ModelSpec) -> int | None:
        """The class to explain (None: the top-1 prediction)."""
        return spec.class_index(self.target) if self.target else None

    def image_bytes(self) -> tuple[bytes, str]:
        """``(file bytes, name stem)`` of the uploaded image; the bytes go to
        :func:`clustercam.load_image` (size limit, EXIF, any mode) and are hashed for the cache."""
        if not self.image:
            raise UserError("No image yet: upload one (or paste, or use the webcam) or click an example.")
        file = Path(self.image)
        if not file.is_file():
            raise ImageError(f"No image file at {file.name}; please upload it again.")
        return file.read_bytes(), file.stem


def takes_settings(*own: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorate ``fn(settings, *own_values, progress=...)`` into a listener whose public
    signature is ``(image, model, …, colormap, *own, progress)`` (:data:`SETTING_NAMES`).

    Trailing settings an API caller leaves out take their defaults. ``own`` parameters must
    have defaults in ``fn`` when callers may leave them out.
    """

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        fn_parameters = inspect.signature(fn).parameters
        parameters = [
            inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=default)
            for name, default in SETTING_DEFAULTS.items()
        ]
        parameters += [
            fn_parameters[name].replace(kind=inspect.Parameter.POSITIONAL_OR_KEYWORD) for name in own
        ]
        parameters.append(inspect.Parameter("progress", inspect.Parameter.KEYWORD_ONLY, default=PROGRESS))
        signature = inspect.Signature(parameters)

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()
            values = dict(bound.arguments)
            progress = values.pop("progress")
            settings = Settings.parse(**{name: values.pop(name) for name in SETTING_NAMES})
            return fn(settings, *(values[name] for name in own), progress=progress)

        wrapper.__signature__ = signature  # type: ignore[attr-defined]
        return wrapper

    return decorate
