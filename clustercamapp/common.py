"""What every handler shares: turning user mistakes into readable ``gr.Error`` toasts."""

from __future__ import annotations

import functools
import html
from collections.abc import Callable
from typing import Any, TypeVar

import gradio as gr
import torch

from clustercam.imaging import ImageError
from clustercam.zoo import WeightsUnavailableError

F = TypeVar("F", bound=Callable[..., Any])
#: The default of every handler's ``progress`` parameter. Gradio recognises it by its type and
#: passes a fresh tracker per event; called directly (tests), it does nothing.
PROGRESS = gr.Progress()

class UserError(ValueError):
    """A mistake of the person using the page (no image yet, no method ticked, …)."""


def error_message(message: str) -> gr.Error:
    """A ``gr.Error`` that stays until the user closes it, its text escaped.

    Gradio renders an error's message as HTML: a library message such as ``<urlopen error
    [Errno -3] …>`` would lose its bracketed part (and the advice after it) to the HTML parser.
    """
    return gr.Error(html.escape(message, quote=False), duration=None)


def user_errors(fn: F) -> F:
    """Re-raise the library's user-facing errors as readable ``gr.Error`` (:func:`error_message`).

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
            raise error_message(str(error)) from error
        except torch.OutOfMemoryError as error:
            raise error_message(
                "The device ran out of memory for this request; try a smaller image, a smaller Q or "
                "fewer methods at once."
            ) from error

    return wrapper  # type: ignore[return-value]
