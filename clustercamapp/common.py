"""What every handler shares: turning user mistakes into readable ``gr.Error`` toasts."""

from __future__ import annotations

import functools
import html
import inspect
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import gradio as gr
import torch

from clustercam.imaging import ImageError
from clustercam.zoo import WeightsUnavailableError

from .i18n import say

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

    @contextmanager
    def readable() -> Iterator[None]:
        try:
            yield
        except gr.Error:
            raise
        except (ImageError, ValueError, TypeError, WeightsUnavailableError) as error:
            raise error_message(str(error)) from error
        except torch.OutOfMemoryError as error:
            raise error_message(say("errors.out_of_memory")) from error

    if inspect.isgeneratorfunction(fn):  # a listener that answers in several messages stays one

        @functools.wraps(fn)
        def messages(*args: Any, **kwargs: Any) -> Any:
            with readable():
                yield from fn(*args, **kwargs)

        return messages  # type: ignore[return-value]

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with readable():
            return fn(*args, **kwargs)

    return wrapper  # type: ignore[return-value]
