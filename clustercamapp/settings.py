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

from .checks import expect_choice, expect_flag, expect_number, expect_text, expect_whole, refused
from .common import PROGRESS, UserError
from .engine import get_model, resolve_layer_name
from .i18n import say

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


def check_preset(preset: Any) -> str:
    """A preset's canonical name (empty: the default one; old names accepted), refused with the
    list when unknown."""
    text = expect_text(preset, "preset")
    try:
        return preset_name(text or None)
    except ValueError as error:
        raise refused("preset", preset, str(error)) from None


def checked_beta(beta: Any) -> float:
    """β of a redraw: a number in ``[0, 1]`` (None is a mistake here, not "the preset's")."""
    return check_beta(expect_number(beta, "beta", minimum=0.0, maximum=1.0))


def check_colormap(colormap: Any) -> str:
    return expect_choice(colormap, "colormap", render.CMAPS, empty=True) or render.DEFAULT_CMAP


def check_target(target: Any) -> str:
    """The class field: "" (top-1), a class index (a whole number or its text) or a class name."""
    if isinstance(target, int) and not isinstance(target, bool):
        return str(target)
    return expect_text(target, "target")


#: Largest seed (torch generators take 64 bits; a person never needs more than this).
MAX_SEED = 2**31 - 1


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
        """From the controls' values (names of :data:`SETTING_NAMES`; missing ones take defaults).
        Every value is checked by kind: a mistake raises ``ValueError`` naming the parameter and
        what it accepts (:mod:`clustercamapp.checks`)."""
        unknown = set(values) - set(SETTING_NAMES)
        if unknown:
            raise TypeError(f"Unknown settings: {', '.join(sorted(unknown))}.")
        v = {**SETTING_DEFAULTS, **{k: value for k, value in values.items() if value is not None}}
        preset = check_preset(v["preset"])
        chosen = PRESETS[preset]
        q = expect_whole(v["q"] if v["q"] is not None else chosen["q"], "q", minimum=2)
        beta = expect_number(v["beta"] if v["beta"] is not None else chosen["beta"], "beta", minimum=0.0, maximum=1.0)
        clustering = expect_choice(v["clustering"], "clustering", ("kmeans", "spectral"), empty=True)
        clustering = clustering or chosen.get("clustering", "kmeans")
        options: dict[str, Any] = {
            "preset": preset, "q": q, "clustering": clustering,
            "seed": expect_whole(v["seed"], "seed", minimum=0, maximum=MAX_SEED),
        }
        spectral: dict[str, Any] = {
            "sigma": expect_number(v["sigma"], "sigma", positive=True),
            "theta": expect_number(v["theta"], "theta", minimum=0.0, maximum=1.0),
        }
        k = expect_whole(v["n_eigenvectors"], "n_eigenvectors", minimum=0, maximum=4096)
        if k > 0:
            spectral["n_eigenvectors"] = k
        similarity = expect_choice(v["similarity"], "similarity", SIMILARITIES, empty=True)
        if similarity:
            spectral["similarity"] = similarity
        rows = expect_flag(v["normalize_rows"], "normalize_rows")
        if rows is not None:
            spectral["normalize_rows"] = rows
        if clustering == "spectral":
            options.update(spectral)
        image = v["image"]
        if image is not None and not isinstance(image, str):
            raise refused("image", image)
        return cls(
            image=image or None, model=expect_text(v["model"], "model", empty=False), layer=expect_text(v["layer"], "layer"),
            beta=check_beta(beta), target=check_target(v["target"]), colormap=check_colormap(v["colormap"]),
            options=options, spectral=spectral,
        )

    def with_options(self, **changes: Any) -> Settings:
        """The same settings with some Cluster-CAM options changed (sweeps)."""
        return replace(self, options={**self.options, **changes})

    def as_spectral(self, **changes: Any) -> Settings:
        """The same settings with spectral clustering and the page's spectral options."""
        return self.with_options(clustering="spectral", **self.spectral, **changes)

    def spec(self) -> ModelSpec:
        """The model, loaded once (``ValueError`` naming the parameter for a name the app does not offer)."""
        try:
            return get_model(self.model)
        except ValueError as error:
            raise refused("model", self.model, str(error)) from None

    def layer_name(self, spec: ModelSpec) -> str:
        try:
            return resolve_layer_name(spec, self.layer)
        except ValueError as error:
            raise refused("layer", self.layer, str(error)) from None

    def target_index(self, spec: ModelSpec) -> int | None:
        """The class to explain (None: the top-1 prediction)."""
        return class_of(spec, self.target)

    def image_bytes(self) -> tuple[bytes, str]:
        """``(file bytes, name stem)`` of the uploaded image; the bytes go to
        :func:`clustercam.load_image` (size limit, EXIF, any mode) and are hashed for the cache."""
        if not self.image:
            raise UserError(say("errors.no_image"))
        file = Path(self.image)
        if not file.is_file():
            raise ImageError(say("errors.no_file", name=file.name))
        return file.read_bytes(), file.stem


def class_of(spec: ModelSpec, target: Any) -> int | None:
    """A class index from the class field ("" or None: the top-1 prediction), refused naming ``target``."""
    text = check_target(target)
    if not text:
        return None
    try:
        return spec.class_index(text)
    except ValueError as error:
        raise refused("target", target, str(error)) from None


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

        def call(*args: Any, **kwargs: Any) -> Any:
            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()
            values = dict(bound.arguments)
            progress = values.pop("progress")
            settings = Settings.parse(**{name: values.pop(name) for name in SETTING_NAMES})
            return fn(settings, *(values[name] for name in own), progress=progress)

        if inspect.isgeneratorfunction(fn):  # Gradio streams a generator's messages: stay one

            @functools.wraps(fn)
            def wrapper(*args: Any, **kwargs: Any) -> Any:
                yield from call(*args, **kwargs)

        else:

            @functools.wraps(fn)
            def wrapper(*args: Any, **kwargs: Any) -> Any:
                return call(*args, **kwargs)

        wrapper.__signature__ = signature  # type: ignore[attr-defined]
        return wrapper

    return decorate


def listener_arguments(listener: Callable[..., Any], args: tuple, kwargs: dict) -> tuple[Settings, dict[str, Any]]:
    """``(settings, own values)`` of a call to a :func:`takes_settings` listener, parsed as the
    listener parses them (for a ZeroGPU task's duration, computed from the same arguments)."""
    bound = inspect.signature(listener).bind(*args, **kwargs)
    bound.apply_defaults()
    values = {name: value for name, value in bound.arguments.items() if name != "progress"}
    return Settings.parse(**{name: values.pop(name) for name in SETTING_NAMES}), values
