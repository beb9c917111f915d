"""Every value an endpoint receives, checked by kind, with a message that names the parameter.

Two places can refuse a value: Gradio's own preprocessing (an image that is not a file, a list
where a slider expects a number, a word outside a radio's choices) and our handlers. Gradio
answers the first with an opaque "upstream" error, or with a message that does not say which
parameter was wrong; :func:`named` wraps a component's preprocessing so that whatever it refuses
comes back as a ``gr.Error`` naming the parameter and what it accepts. The ``expect_*`` functions
do the same for the handlers' own checks (``ValueError``, which :func:`~clustercamapp.common.user_errors`
turns into a readable ``gr.Error``).
"""

from __future__ import annotations

import math
from typing import Any

import gradio as gr
import pydantic
from gradio.data_classes import ImageData

from .i18n import say

#: The parameters whose accepted values are said in words (keys ``checks.accepts.<name>``).
ACCEPTS = (
    "image", "model", "layer", "q", "beta", "clustering", "n_eigenvectors", "sigma", "theta", "seed", "target",
    "preset", "similarity", "normalize_rows", "colormap", "methods", "max_layers",
)


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def refused(name: str, value: Any, detail: str = "") -> ValueError:
    """The error for a value of the wrong kind: ``"q: expects a whole number ...; got [1, 2]."``
    (in the request's language; the parameter's name as the API spells it)."""
    accepts = say(f"checks.accepts.{name}" if name in ACCEPTS else "checks.accepts.other")
    extra = say("checks.detail", detail=detail) if detail else ""
    return ValueError(say("checks.refused", name=name, accepts=accepts, value=_shown(value), extra=extra))


#: Parameters whose empty text means "the default" (the preset's, the top-1 class, …): passed on
#: as "" even where the component's own choices do not list it.
EMPTY_MEANS_DEFAULT = {"layer", "clustering", "target", "preset", "similarity", "colormap"}


def named(component: gr.components.Component, name: str) -> gr.components.Component:
    """Make what ``component``'s preprocessing refuses a ``gr.Error`` naming ``name`` (in place:
    the method is replaced on this instance, as :func:`~clustercamapp.components.library_checked`
    does, so that Gradio writes no stub file for a subclass)."""
    default = component.preprocess

    def preprocess(payload: Any) -> Any:
        if name in EMPTY_MEANS_DEFAULT and payload == "":
            return ""
        try:
            return default(payload)
        except gr.Error as error:
            raise gr.Error(str(refused(name, payload, str(error.message))), duration=None) from error
        except Exception as error:
            raise gr.Error(str(refused(name, payload)), duration=None) from error

    component.preprocess = preprocess  # type: ignore[method-assign]
    return component


class CheckedImageData(ImageData):
    """``ImageData`` whose validation failure names the parameter (Gradio validates an image input
    against its data model before any preprocessing: a word or a list used to fail there opaquely).
    Same schema as ``ImageData``: API clients see no difference."""

    @classmethod
    def model_validate(cls, obj: Any, *args: Any, **kwargs: Any) -> ImageData:  # type: ignore[override]
        try:
            return ImageData.model_validate(obj, *args, **kwargs)
        except pydantic.ValidationError:
            raise gr.Error(str(refused("image", obj)), duration=None) from None

    @classmethod
    def model_json_schema(cls, *args: Any, **kwargs: Any) -> dict[str, Any]:  # type: ignore[override]
        return ImageData.model_json_schema(*args, **kwargs)


def named_image(image: gr.Image) -> gr.Image:
    """:func:`named` for an image input, its data-model validation included."""
    image.data_model = CheckedImageData  # type: ignore[assignment]
    return named(image, "image")


def expect_text(value: Any, name: str, *, empty: bool = True) -> str:
    """A text value (``None``: ``""``), stripped; numbers, lists, dicts and booleans are refused."""
    if value is None:
        value = ""
    if not isinstance(value, str):
        raise refused(name, value)
    value = value.strip()
    if not value and not empty:
        raise refused(name, value)
    return value


def expect_number(value: Any, name: str, *, minimum: float | None = None, maximum: float | None = None,
                  whole: bool = False, positive: bool = False) -> float:
    """A finite number (an int, a float, or text that reads as one) within the bounds given."""
    if isinstance(value, bool) or value is None:
        raise refused(name, value)
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            raise refused(name, value) from None
    if not isinstance(value, (int, float)):
        raise refused(name, value)
    number = float(value)
    if not math.isfinite(number):
        raise refused(name, value, say("checks.not_finite"))
    if whole and not number.is_integer():
        raise refused(name, value, say("checks.not_whole"))
    if positive and number <= 0:
        raise refused(name, value, say("checks.not_positive"))
    if minimum is not None and number < minimum:
        raise refused(name, value, say("checks.below", bound=f"{minimum:g}"))
    if maximum is not None and number > maximum:
        raise refused(name, value, say("checks.above", bound=f"{maximum:g}"))
    return number


def expect_whole(value: Any, name: str, *, minimum: int | None = None, maximum: int | None = None) -> int:
    return int(expect_number(value, name, minimum=minimum, maximum=maximum, whole=True))


def expect_flag(value: Any, name: str) -> bool | None:
    """``True``/``False`` (``None``: not given); anything else is refused."""
    if value is None or isinstance(value, bool):
        return value
    raise refused(name, value)


def expect_choice(value: Any, name: str, choices: tuple[str, ...] | list[str], *, empty: bool = False) -> str:
    text = expect_text(value, name)
    if (not text and empty) or text in choices:
        return text
    raise refused(name, value, say("checks.choose_from", choices=", ".join(choices)))
