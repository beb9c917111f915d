"""Which component each part of an explanation fills: the one table of the Explain tab's outputs.

A *part* is what one stage of the Explain path draws and writes together (:mod:`.stages`):

- ``maps``: the heatmap over the image and alone (changes with the class, β and the colormap);
- ``roles``: the base and scissors maps eq. 22 mixes (the class and the colormap);
- ``note``: the sentence under β when β's effect needs explaining (the class and β);
- ``top5``: the predicted top-5 as quick class choices (the class);
- ``details``: the cluster tiles, masked images, score chart and table, the class pickers (the class);
- ``curve``: the class kept on the masked image across β, chart and words (the class and β);
- ``summary``: the summary (JSON and words), the ``.npy`` heatmap and the zip (every view).

Every list of components a listener needs is derived from :data:`OUTPUTS` and :data:`STEPS`:
adding an output to Explain is one row here, its component in the layout and its value in the
stage that writes its part.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import gradio as gr


@dataclass(frozen=True)
class Fill:
    """One output: the part that fills it, and what it shows before any explanation (a value, or a
    function making one per event: component updates must not be made while the page is built)."""

    part: str
    empty: Any = None

    def cleared(self) -> Any:
        return self.empty() if callable(self.empty) else self.empty


def _no_choices() -> Any:
    return gr.Radio(choices=[], value=None)


#: The outputs of ``/explain`` in the API's order (the first nine as before), each with its part.
OUTPUTS: dict[str, Fill] = {
    "overlay": Fill("maps"),
    "heatmap": Fill("maps"),
    "clusters": Fill("details", []),
    "masked": Fill("details", []),
    "scores_table": Fill("details"),
    "summary": Fill("summary"),
    "downloads": Fill("summary"),
    "summary_md": Fill("summary", ""),
    "top5": Fill("top5", _no_choices),
    "base_map": Fill("roles"),
    "scissors_map": Fill("roles"),
    "scores_chart": Fill("details"),
    "beta_note": Fill("note", ""),
    "target": Fill("details", ""),
    "class_a": Fill("details"),
    "class_b": Fill("details"),
    "tradeoff_md": Fill("curve", ""),
    "tradeoff_chart": Fill("curve"),
}
PARTS = frozenset(fill.part for fill in OUTPUTS.values())

#: The parts each action draws. The page's Explain is two chained events: ``first`` (what is in view
#: after the click, the network work before it) and ``rest``; ``/explain`` sends both, in two
#: messages. β redraws what β changes; the colormap also the two maps; another class everything.
STEPS: dict[str, frozenset[str]] = {
    "first": frozenset({"maps", "roles", "note", "top5"}),
    "rest": frozenset({"details", "curve", "summary"}),
    "beta": frozenset({"maps", "note", "curve", "summary"}),
    "colormap": frozenset({"maps", "roles", "note", "curve", "summary"}),
    "class": PARTS,
}
assert STEPS["first"] | STEPS["rest"] == PARTS and not STEPS["first"] & STEPS["rest"]

#: Two endpoints answer in an order of their own, kept since they were published (the others
#: follow :data:`OUTPUTS`): ``/explain_first`` and ``/reweight`` (also the colormap's listener).
API_ORDERS: dict[str, tuple[str, ...]] = {
    "first": ("overlay", "heatmap", "beta_note", "base_map", "scissors_map", "top5"),
    "colormap": ("overlay", "heatmap", "summary", "downloads", "summary_md", "beta_note", "base_map", "scissors_map",
                 "tradeoff_md", "tradeoff_chart"),
}


def names(parts: Iterable[str]) -> list[str]:
    """The outputs filled by ``parts``, in the table's order."""
    wanted = set(parts)
    unknown = wanted - PARTS
    if unknown:
        raise ValueError(f"Unknown parts {sorted(unknown)}; the Explain tab has {sorted(PARTS)}.")
    return [name for name, fill in OUTPUTS.items() if fill.part in wanted]


for _step, _order in API_ORDERS.items():  # the same outputs as the step's parts fill, in another order
    assert sorted(_order) == sorted(names(STEPS[_step])), _step


def components(owner: Any, step: str, *also: Any) -> list[Any]:
    """The components ``step`` fills (attributes of ``owner`` by the outputs' names) in its
    listener's API order, then ``also``."""
    order = API_ORDERS.get(step) or names(STEPS[step])
    return [getattr(owner, name) for name in order] + list(also)


def to_components(owner: Any, values: dict[str, Any]) -> dict[Any, Any]:
    """``{output name: value}`` as Gradio wants it: ``{component: value}``."""
    return {getattr(owner, name): value for name, value in values.items()}


def check_layout(owner: Any) -> None:
    """Every output of the table has its component on ``owner`` (a missing one fails at build time,
    not at the first click)."""
    missing = [name for name in OUTPUTS if not hasattr(owner, name)]
    if missing:
        raise AttributeError(f"The Explain tab's layout has no component for {', '.join(missing)}.")
