"""Cluster-CAM explorer: a Gradio app over the :mod:`clustercam` library.

This file only assembles the page: the shared controls (:mod:`clustercamapp.controls`) and one
module per tab (:mod:`clustercamapp.tabs`), each building its own components and listeners. Run
``python app.py`` (``--model classifier.pt2 --labels classes.txt`` adds your own exported classifier
beside the zoo; ``GRADIO_SERVER_NAME`` / ``GRADIO_SERVER_PORT`` choose the address,
``CLUSTERCAM_APP_MAX_FILE_SIZE`` the upload limit, default ``20mb``).

Named API endpoints (``gradio_client``; a ``Client`` keeps its session, so /reweight and
/retarget act on that client's last /explain). Every network endpoint starts with the same
*settings block*: ``(image, model, layer, q, beta, clustering, n_eigenvectors, sigma, theta,
seed, target, preset, similarity, normalize_rows, colormap)``; ``target`` is "" (top-1), a class
index as text ("285") or a class name; ``n_eigenvectors`` 0 means Q − 1; trailing settings may
be left out (the page's defaults). The README's API table lists the outputs.

- ``/explain(*settings)``
- ``/reweight(beta)`` and ``/retarget(target)``: no forward pass
- ``/layers(model)`` → ``(default layer, layer rows)``
- ``/compare(*settings, methods)``
- ``/sweep_q(*settings)``, ``/sweep_layers(*settings, max_layers)``, ``/sweep_eigenvectors(*settings)``
- ``/lanes()`` → the study lane's state and limits (:mod:`clustercamapp.lanes`)
- ``/status()`` → compiled graphs per model, examples ready, uptime

Explain and its redraws and the studies (Compare, sweeps) are served in separate lanes; a study
states its cost before it runs and is refused above the server's budget (README, "Serving").
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# isort: off
# clustercam before torch: importing it points inductor's cache at clustercam's folder (torch fixes
# the folder when it is first imported; clustercam.environment.point_inductor_cache)
import clustercam  # noqa: F401
import gradio as gr
import torch

# isort: on

from clustercam import environment
from clustercam.zoo import DEFAULT_MODEL, available_models
from clustercamapp import engine, lanes, style
from clustercamapp.controls import Controls, build_controls
from clustercamapp.engine import RUNTIME, get_model
from clustercamapp.i18n import I18N, REMEMBER_LANGUAGE, T
from clustercamapp.memory import tune_allocator
from clustercamapp.scripts import ACCESSIBLE_GALLERIES, EXPLAIN_SHARED_LINK
from clustercamapp.tabs.compare import CompareTab
from clustercamapp.tabs.explain import ExplainTab, warm_examples
from clustercamapp.tabs.learn import LearnTab
from clustercamapp.tabs.sweeps import SweepsTab
from clustercamapp.tabs.walkthrough import WalkthroughTab

ASSETS = Path(__file__).resolve().parent / "assets"
MAX_FILE_SIZE: str = environment.read("CLUSTERCAM_APP_MAX_FILE_SIZE")
#: Browser and API sessions whose state the server keeps (the oldest go first).
SESSION_CAPACITY: int = environment.read("CLUSTERCAM_APP_SESSIONS")
#: Requests Gradio queues before refusing more.
QUEUE_SIZE: int = environment.read("CLUSTERCAM_APP_QUEUE_SIZE")


@dataclass
class Page:
    """The built page: the Blocks and its parts (tests call the tabs' handlers directly)."""

    demo: gr.Blocks
    controls: Controls
    explain: ExplainTab
    compare: CompareTab
    sweeps: SweepsTab
    learn: LearnTab
    walk: WalkthroughTab


def launch_options() -> dict[str, Any]:
    """``demo.launch`` arguments every launch uses (also the tests'): look, uploads, file access."""
    return {
        "theme": style.THEME,
        "css": style.CSS,
        "max_file_size": MAX_FILE_SIZE,
        "allowed_paths": [str(ASSETS)],
        "ssr_mode": False,
        "i18n": I18N,  # the page's strings in the browser's language (clustercamapp/locales)
        # Gradio keeps each session's copy of the page's components until this many newer
        # sessions came: memory bounded by a budget, not by the visitors an hour brings
        "state_session_capacity": SESSION_CAPACITY,
    }


def lanes_status() -> dict:
    """The study lane now: studies running and waiting, the limits and budgets, studies stopped."""
    return lanes.GATE.status()


def server_status() -> dict:
    """``{"models": {name: {"compiled": bool, ...}}, "examples_ready": bool, "uptime_s": float}``:
    each loaded model's compiled graphs (built, calls served by each path, errors, evicted cache
    artefacts), whether the example buttons answer from the cache, and the server's uptime."""
    return engine.status()


def build_page() -> Page:
    """Settings on the left; Explain / Compare / Sweeps / How it works on the right. The model
    chosen at first: the file the server was started with, else the embedded default."""
    zoo_default = DEFAULT_MODEL if DEFAULT_MODEL in available_models() else available_models()[0]
    default_model = next(iter(engine.FILES), zoo_default)
    spec = get_model(default_model)
    with gr.Blocks(title="Cluster-CAM explorer", delete_cache=(3600, 3600)) as demo:
        gr.Markdown(T("page.title"), elem_id="title")
        with gr.Row(equal_height=False):
            controls = build_controls(spec)
            with gr.Column(scale=7, min_width=320), gr.Tabs(elem_id="tabs", overflow_behavior="wrap"):  # every tab one tap away on a phone
                with gr.Tab(T("page.tab.explain"), elem_id="tab-explain"):
                    explain = ExplainTab(controls)
                with gr.Tab(T("page.tab.walk"), elem_id="tab-walk"):
                    walk = WalkthroughTab(controls)
                with gr.Tab(T("page.tab.compare"), elem_id="tab-compare"):
                    compare = CompareTab(controls)
                with gr.Tab(T("page.tab.sweeps"), elem_id="tab-sweeps"):
                    sweeps = SweepsTab(controls)
                with gr.Tab(T("page.tab.teach"), elem_id="tab-teach"):
                    learn = LearnTab(controls)
        demo.load(None, js=EXPLAIN_SHARED_LINK)
        demo.load(None, js=ACCESSIBLE_GALLERIES)
        demo.load(None, js=REMEMBER_LANGUAGE)
        gr.api(lanes_status, api_name="lanes")
        gr.api(server_status, api_name="status")
    demo.queue(max_size=QUEUE_SIZE, default_concurrency_limit=RUNTIME.concurrency)
    return Page(demo, controls, explain, compare, sweeps, learn, walk)


def build_demo() -> gr.Blocks:
    return build_page().demo


def command_line(argv: list[str]) -> argparse.Namespace:
    """``python app.py [--model classifier.pt2 --labels classes.txt]``."""
    parser = argparse.ArgumentParser(description="The Cluster-CAM explorer (a Gradio app).")
    parser.add_argument("--model", help="a classifier exported with torch.export.save (*.pt2), offered beside "
                                        "the zoo and chosen at first (a file you trust: it is code you run)")
    parser.add_argument("--labels", help="its class names, one per line, in the order of its logits")
    return parser.parse_args(argv)


tune_allocator()  # flat memory for a long-running server (see clustercamapp/memory.py)
if torch.cuda.is_available():  # once, before serving: fixed input sizes, let cuDNN pick its fastest kernels
    torch.backends.cudnn.benchmark = True
ARGUMENTS = command_line(sys.argv[1:]) if __name__ == "__main__" else None
if ARGUMENTS is not None and ARGUMENTS.model:
    try:
        engine.add_model_file(ARGUMENTS.model, ARGUMENTS.labels)
    except ValueError as error:  # no such file, not a classifier, labels that do not match it
        sys.exit(f"app.py: {error}")
page = build_page()
demo = page.demo

if __name__ == "__main__":
    warm_examples()  # the example buttons answer from the cache
    demo.launch(
        server_name=environment.read("GRADIO_SERVER_NAME"),
        server_port=environment.read("GRADIO_SERVER_PORT"),
        **launch_options(),
    )
