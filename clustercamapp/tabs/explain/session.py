"""What the server remembers of one visitor's explanation between events (the tab's ``gr.State``).

Frozen: each event returns a new session (:meth:`ExplainSession.but`), so two messages of one
request, or two events of one visitor, never change a session another is reading.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ... import drawing


@dataclass(frozen=True)
class Written:
    """One part drawn for the view on screen: the outputs' values (``{output name: value}``) and
    the files that go into the zip."""

    values: Mapping[str, Any]
    files: tuple[str, ...] = ()


@dataclass(frozen=True)
class Bundle:
    """The zip of a view, to be written when the details (where it is offered) are opened:
    where, from which files, its ``summary.json``, and the downloads offered beside it."""

    path: str
    files: tuple[str, ...]
    summary: Mapping[str, Any]
    beside: tuple[str, ...]


@dataclass(frozen=True)
class StepOne:
    """What the page's step 1 measured, for step 2's summary (one request, to the visitor)."""

    seconds: float
    passes: int
    cached: bool
    explanation_seconds: float


@dataclass(frozen=True)
class ExplainSession:
    """One visitor's explanation on screen.

    Attributes:
        key: the cached explanation's key (:data:`clustercamapp.engine.RESULTS`).
        target: the class shown (None: the top-1 prediction).
        beta: β of eq. 22.
        colormap: the heatmaps' colormap.
        written: each part as last drawn for this view (:mod:`.outputs`); later events reuse its
            files (the zip holds every part's, the downloads offer the heatmap's).
        bundle: the zip waiting for the details to open (None: written, or nothing to write).
        step_one: step 1's figures while step 2 has not run.
    """

    key: str
    target: int | None
    beta: float
    colormap: str
    written: Mapping[str, Written] = field(default_factory=dict)
    bundle: Bundle | None = None
    step_one: StepOne | None = None

    def but(self, **changes: Any) -> ExplainSession:
        """A copy with ``changes``."""
        return dataclasses.replace(self, **changes)

    def view(self, language: str) -> drawing.View:
        return drawing.View(self.target, self.beta, self.colormap, language)

    def with_written(self, written: Mapping[str, Written]) -> ExplainSession:
        return self.but(written={**self.written, **written})
