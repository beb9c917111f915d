"""Every setting read from the environment, in one checked table (:data:`SETTINGS`).

The library and the app read their environment variables only through :func:`read`, which looks
the name up here and checks the value by its kind (a whole number in a range, a number, a flag, a
choice, a text or a folder): a mistyped value stops the program with a message that names the
variable and what it accepts, instead of a bare ``int()`` traceback or a value silently clamped.
The README's settings table lists the same names with the same defaults (a test compares them).

Nothing here imports torch: :func:`point_inductor_cache` must run before torch is first imported
(``import clustercam`` does it).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: Where clustercam keeps compiled packages and inductor's own files by default.
CACHE_HOME = Path.home() / ".cache" / "clustercam"
_TRUE = ("1", "true", "t", "yes", "on")
_FALSE = ("0", "false", "f", "no", "off")


class EnvironmentSettingError(ValueError):
    """An environment variable holds a value its setting does not accept."""


@dataclass(frozen=True)
class Setting:
    """One environment variable.

    Attributes:
        name: the variable.
        kind: ``"whole"``, ``"number"``, ``"flag"``, ``"choice"``, ``"text"`` or ``"folder"``.
        default: the value when the variable is unset or empty (None: decided where it is read,
            e.g. "automatic" or "1 on a CPU, 2 on a GPU"; the reader passes it).
        shown: the default as the README's table gives it.
        about: what it sets, as the README's table says it.
        minimum / maximum: the accepted range of a number.
        choices: the accepted values of a choice.
        scope: ``"library"`` (read by :mod:`clustercam`) or ``"app"`` (read by the explorer).
    """

    name: str
    kind: str
    default: Any
    shown: str
    about: str
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] = ()
    scope: str = "app"

    def parse(self, text: str) -> Any:
        """``text`` as this setting's value, or :class:`EnvironmentSettingError`."""
        parser: Callable[[str], Any] = getattr(self, f"_{self.kind}")
        return parser(text.strip())

    def _refuse(self, text: str, expects: str) -> EnvironmentSettingError:
        return EnvironmentSettingError(f"{self.name} expects {expects}; got {text!r}.")

    def _in_range(self, value: float, text: str, expects: str) -> float:
        low = self.minimum is not None and value < self.minimum
        high = self.maximum is not None and value > self.maximum
        if low or high:
            bounds = [f"at least {self.minimum:g}"] if self.minimum is not None else []
            bounds += [f"at most {self.maximum:g}"] if self.maximum is not None else []
            raise self._refuse(text, f"{expects}, {' and '.join(bounds)}")
        return value

    def _whole(self, text: str) -> int:
        try:
            value = int(text.replace("_", ""))
        except ValueError:
            raise self._refuse(text, "a whole number") from None
        return int(self._in_range(value, text, "a whole number"))

    def _number(self, text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise self._refuse(text, "a number") from None
        if value != value or value in (float("inf"), float("-inf")):
            raise self._refuse(text, "a finite number")
        return self._in_range(value, text, "a number")

    def _flag(self, text: str) -> bool:
        lowered = text.lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
        raise self._refuse(text, f"a flag ({' / '.join(_TRUE[:2])} or {' / '.join(_FALSE[:2])})")

    def _choice(self, text: str) -> str:
        if text not in self.choices:
            raise self._refuse(text, "one of " + ", ".join(repr(choice) for choice in self.choices))
        return text

    def _text(self, text: str) -> str:
        return text

    def _folder(self, text: str) -> Path:
        return Path(text).expanduser()


def _table(*settings: Setting) -> dict[str, Setting]:
    return {setting.name: setting for setting in settings}


def _library(*args: Any, **kwargs: Any) -> Setting:
    return Setting(*args, scope="library", **kwargs)


SETTINGS: dict[str, Setting] = _table(
    # ---- the library --------------------------------------------------------------------------
    _library("CLUSTERCAM_MAX_PIXELS", "whole", 40_000_000, "40,000,000",
             "largest image accepted, in pixels (width × height)", minimum=1),
    _library("CLUSTERCAM_COMPILE", "flag", True, "1", "compiled graphs (off on ZeroGPU)"),
    _library("CLUSTERCAM_CHANNELS_LAST", "flag", True, "1", "the channels-last memory layout"),
    _library("CLUSTERCAM_COMPILED_CHUNK", "whole", 4, "4",
             "images per call of a compiled graph (a batch runs in chunks of this many)", minimum=1),
    _library("CLUSTERCAM_COMPILE_DIR", "folder", CACHE_HOME, "`~/.cache/clustercam`", "compiled packages (`aoti/` in it)"),
    _library("CLUSTERCAM_COMPILE_NICE", "whole", 19, "19",
             "CPU priority (nice) of the process that builds a graph", minimum=0, maximum=19),
    _library("TORCHINDUCTOR_CACHE_DIR", "folder", CACHE_HOME / "inductor", "`~/.cache/clustercam/inductor`",
             "inductor's own files (set when `clustercam` is imported, before torch)"),
    _library("TORCHINDUCTOR_COMPILE_THREADS", "whole", 1, "1",
             "threads of the process that builds a graph", minimum=1),
    _library("SPACES_ZERO_GPU", "flag", False, "unset",
             "set by a ZeroGPU Space: network work in GPU tasks, no compiled graphs"),
    # ---- the explorer: serving -----------------------------------------------------------------
    Setting("GRADIO_SERVER_NAME", "text", "127.0.0.1", "127.0.0.1", "the address the explorer serves on"),
    Setting("GRADIO_SERVER_PORT", "whole", 7860, "7860", "its port", minimum=1, maximum=65535),
    Setting("CLUSTERCAM_APP_MAX_FILE_SIZE", "text", "20mb", "20mb", "the upload limit"),
    Setting("CLUSTERCAM_APP_CONCURRENCY", "whole", 2, "2", "explanations served at once (explain lane)", minimum=1),
    Setting("CLUSTERCAM_APP_TORCH_THREADS", "whole", None, "automatic",
            "torch threads of an explanation's network work", minimum=1),
    Setting("CLUSTERCAM_APP_QUEUE_SIZE", "whole", 64, "64", "requests Gradio queues before refusing", minimum=1),
    Setting("CLUSTERCAM_APP_CACHE_SIZE", "whole", 32, "32", "explanations kept for redraws", minimum=1),
    Setting("CLUSTERCAM_APP_CACHE_TTL", "number", 3600.0, "3600 s",
            "seconds an explanation stays usable after its last use", minimum=0),
    Setting("CLUSTERCAM_APP_SESSIONS", "whole", 200, "200",
            "sessions whose state the server keeps (memory bounded by this, not by visitors)", minimum=1),
    Setting("CLUSTERCAM_APP_TRIM_AFTER", "number", 2.0, "2 s",
            "quiet time of the explain lane before free memory goes back to the system", minimum=0),
    Setting("CLUSTERCAM_APP_COMPILE_SHAPES", "choice", "common", "`common`",
            "compiled input shapes: the square and the ten other shapes common photographs have (4:3, 500:333, 3:2, "
            "16:9, 8:7, either way up: eleven graphs, ~39 MB of RSS each, nine measured 350 MB), or `square` only",
            choices=("common", "square")),
    Setting("CLUSTERCAM_APP_BACKGROUND_NICE", "whole", 19, "19",
            "CPU priority (nice) of the compiling thread", minimum=0, maximum=19),
    # ---- the explorer: studies (Compare, sweeps) -----------------------------------------------
    Setting("CLUSTERCAM_APP_STUDY_CONCURRENCY", "whole", None, "1 / 2", "studies running at once", minimum=1),
    Setting("CLUSTERCAM_APP_STUDY_WAITING", "whole", 4, "4", "studies that may wait; more are refused as busy",
            minimum=0),
    Setting("CLUSTERCAM_APP_STUDY_THREADS", "whole", None, "1 / all", "torch threads of a study (0: all)", minimum=0),
    Setting("CLUSTERCAM_APP_STUDY_NICE", "whole", None, "19 / 0", "CPU priority (nice) of the study threads (Linux)",
            minimum=0, maximum=19),
    Setting("CLUSTERCAM_APP_STUDY_BATCH", "whole", None, "16 / 64",
            "images per masked pass of a study (memory peak; how soon it can stop)", minimum=1),
    Setting("CLUSTERCAM_APP_STUDY_BUDGET", "whole", None, "400 / 50,000", "network passes one study may cost",
            minimum=1),
    Setting("CLUSTERCAM_APP_SESSION_BUDGET", "whole", None, "10 × the study budget",
            "network passes of one session's studies per hour", minimum=1),
    # ---- the explorer on ZeroGPU ----------------------------------------------------------------
    Setting("CLUSTERCAM_APP_GPU_SECONDS_PER_PASS", "number", 0.01, "0.01",
            "ZeroGPU: seconds one image's pass is declared to take", minimum=0),
    Setting("CLUSTERCAM_APP_GPU_OVERHEAD", "number", 5.0, "5", "ZeroGPU: seconds every GPU task declares besides its passes",
            minimum=0),
    Setting("CLUSTERCAM_APP_GPU_MAX_SECONDS", "whole", 120, "120", "ZeroGPU: the longest a GPU task may declare",
            minimum=1),
)


def read(name: str, default: Any = None) -> Any:
    """The value of environment variable ``name`` (declared in :data:`SETTINGS`), checked; unset
    or empty: the table's default, else ``default`` (for defaults that depend on the machine)."""
    setting = SETTINGS[name]  # KeyError: every variable read is declared
    text = os.environ.get(name, "")
    if not text.strip():
        return setting.default if setting.default is not None else default
    return setting.parse(text)


def point_inductor_cache() -> str:
    """Point inductor's cache at clustercam's folder unless ``TORCHINDUCTOR_CACHE_DIR`` is set.
    Must run before torch is first imported (torch fixes the folder then): ``import clustercam``
    does it. Returns the folder in use."""
    return os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(SETTINGS["TORCHINDUCTOR_CACHE_DIR"].default))


def on_zero_gpu() -> bool:
    """Whether this process runs on a ZeroGPU Space (``SPACES_ZERO_GPU``, set by Hugging Face)."""
    return bool(read("SPACES_ZERO_GPU"))


def markdown_table(settings: dict[str, Setting] | None = None) -> str:
    """The settings as the README's table (one row per variable)."""
    rows = ["| environment variable | default (CPU / GPU) | what it sets |", "|---|---|---|"]
    rows += [f"| `{s.name}` | {s.shown} | {s.about} |" for s in (settings or SETTINGS).values()]
    return "\n".join(rows)
