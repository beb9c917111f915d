"""Wrong kinds of values sent to every parameter of every named endpoint, one parameter at a time.

Each value is either accepted (the call succeeds) or refused with a readable ``AppError`` that
names the parameter (``"q: expects a whole number of clusters, 2 or more; got [1, 2]."``): never
Gradio's opaque "upstream" message, never Python internals, whether the value is refused by
Gradio's own preprocessing or by the handler. The server keeps serving throughout.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from PIL import Image

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError

from clustercamapp.settings import SETTING_NAMES

from .conftest import ASSETS, free_port

pytestmark = pytest.mark.slow

#: Values of the wrong kind (for most parameters) and out of range.
WRONG = ([1, 2], {"k": 1}, "word", -1, 1e9, 2.5)
#: Signs of a message that was not written for a person.
INTERNALS = ("upstream", "Traceback", "unhashable", "object has no attribute", "NoneType", "not subscriptable",
             "argument must be", "invalid literal")


@pytest.fixture(scope="module")
def server_url() -> Iterator[str]:
    import app

    _, url, _ = app.demo.launch(
        server_name="127.0.0.1", server_port=free_port(), prevent_thread_lock=True, quiet=True, **app.launch_options()
    )
    try:
        yield url
    finally:
        app.demo.close()


@pytest.fixture(scope="module")
def small_image(tmp_path_factory) -> str:
    """A 64×64 photograph: accepted calls stay cheap."""
    path = tmp_path_factory.mktemp("fuzz") / "small.jpg"
    Image.open(ASSETS / "chelsea.jpg").convert("RGB").resize((64, 64)).save(path)
    return str(path)


def settings(image: str, **changes) -> dict:
    good = {"image": handle_file(image), "model": "efficientnet_lite0", "layer": "", "q": 2, "beta": 0.9, "clustering": "kmeans",
            "n_eigenvectors": 0, "sigma": 0.2, "theta": 0.0, "seed": 0, "target": "", "preset": "", "similarity": "",
            "normalize_rows": False, "colormap": "viridis"}
    return {**good, **changes}


def outcome(client: Client, api_name: str, arguments: dict) -> str | None:
    """None when the call succeeded, else the message it was refused with."""
    try:
        client.submit(api_name=api_name, **arguments).result(timeout=300)
    except AppError as error:
        return str(error)
    return None


def check(client: Client, api_name: str, base: dict, name: str, problems: list[str], values=WRONG) -> set:
    """Send each value as ``name``; a refusal must name the parameter in words meant for a person.
    Returns the values that were refused."""
    refused = set()
    for value in values:
        message = outcome(client, api_name, {**base, name: value})
        if message is None:
            continue
        refused.add(repr(value))
        if f"{name}:" not in message or any(sign in message for sign in INTERNALS):
            problems.append(f"{api_name} {name}={value!r}: {message[:160]}")
    return refused


def new_client(url: str) -> Client:
    return Client(url, verbose=False, analytics_enabled=False, httpx_kwargs={"timeout": 120})


@pytest.fixture(scope="module")
def explain_refusals(server_url, small_image) -> tuple[dict[str, set], list[str]]:
    """/explain with every wrong value of every settings parameter: which it refused, and any refusal
    that did not name its parameter."""
    refused, problems = {}, []
    for name in SETTING_NAMES:
        refused[name] = check(new_client(server_url), "/explain", settings(small_image), name, problems)
    return refused, problems


def test_explain_refuses_wrong_kinds_by_name(explain_refusals, server_url, small_image):
    refused, problems = explain_refusals
    assert not problems, "\n".join(problems)
    # every parameter refuses at least the values of the wrong kind
    assert all(refused[name] for name in SETTING_NAMES), refused
    assert outcome(new_client(server_url), "/explain", settings(small_image)) is None  # still serving


@pytest.mark.parametrize(("api_name", "own"), [
    ("/compare", {"methods": ["gradcam"]}), ("/sweep_q", {}), ("/sweep_layers", {"max_layers": 2}), ("/sweep_eigenvectors", {}),
])
def test_every_study_refuses_what_explain_refuses_by_name(explain_refusals, server_url, small_image, api_name, own):
    """The studies read the same settings block: each value /explain refused is refused by name here
    too (the values /explain accepted would only make these studies run, at length)."""
    refused, _ = explain_refusals
    problems: list[str] = []
    for name in SETTING_NAMES:
        wanted = [value for value in WRONG if repr(value) in refused[name]]
        got = check(new_client(server_url), api_name, {**settings(small_image), **own}, name, problems, wanted)
        if got != set(map(repr, wanted)):
            problems.append(f"{api_name} {name}: accepted {sorted(set(map(repr, wanted)) - got)} that /explain refuses")
    for name in own:
        check(new_client(server_url), api_name, {**settings(small_image), **own}, name, problems)
    assert not problems, "\n".join(problems)


def test_redraws_and_layers_refuse_wrong_kinds_by_name(server_url, small_image):
    problems: list[str] = []
    client = new_client(server_url)
    assert outcome(client, "/explain", settings(small_image)) is None
    check(client, "/reweight", {}, "beta", problems)
    check(client, "/retarget", {}, "target", problems)
    check(client, "/layers", {}, "model", problems)
    assert not problems, "\n".join(problems)
