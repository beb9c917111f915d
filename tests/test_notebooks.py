"""The teaching notebooks (notebooks/*.ipynb): stored without outputs, written with the public API
only, and (slow) they run top to bottom offline and show what their text says they show."""

from __future__ import annotations

import ast
import importlib
import os
import re
import time

import pytest

from .conftest import ROOT

NOTEBOOKS = ROOT / "notebooks"
STEP_BY_STEP = NOTEBOOKS / "cluster_cam_step_by_step.ipynb"
ANSWERS = NOTEBOOKS / "cluster_cam_answers.ipynb"
#: The modules a notebook may import from clustercam (their public names only).
PUBLIC_MODULES = {
    "clustercam", "clustercam.render", "clustercam.clustering", "clustercam.maps",
    "clustercam.methods", "clustercam.metrics", "clustercam.imaging",
}
COLAB_INSTALL = '%pip install -q "clustercam[app] @ git+https://github.com/clustercam/clustercam"'
#: The kernel runs like the tests: offline, eager networks (no minute-long compilation).
KERNEL_ENV = {"GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1", "CLUSTERCAM_COMPILE": "0"}
CELL_TIMEOUT_S = 300


def require(module: str):
    """Import a notebook tool; missing, it fails in CI (requirements-dev.txt installs it) and skips elsewhere."""
    try:
        return importlib.import_module(module)
    except ImportError:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{module} is missing; requirements-dev.txt installs it (nothing may be skipped in CI).")
        pytest.skip(f"{module} is not installed")


def read(path):
    return require("nbformat").read(path, as_version=4)


def code_cells(notebook) -> list[str]:
    return [cell.source for cell in notebook.cells if cell.cell_type == "code"]


def python_of(source: str) -> str:
    """A code cell as plain Python: IPython magics and shell lines become ``pass``."""
    return "\n".join(
        line[: len(line) - len(line.lstrip())] + "pass" if line.lstrip().startswith(("%", "!")) else line
        for line in source.splitlines()
    )


def test_both_notebooks_exist():
    assert STEP_BY_STEP.is_file() and ANSWERS.is_file()


@pytest.mark.parametrize("path", [STEP_BY_STEP, ANSWERS], ids=lambda p: p.stem)
def test_notebook_is_stored_without_outputs(path):
    notebook = read(path)
    require("nbformat").validate(notebook)
    for index, cell in enumerate(notebook.cells):
        if cell.cell_type == "code":
            assert cell.outputs == [], f"cell {index} has stored outputs: clear them before committing"
            assert cell.execution_count is None, f"cell {index} has an execution count"
        assert "attachments" not in cell or not cell.attachments, f"cell {index} carries attached pictures"


@pytest.mark.parametrize("path", [STEP_BY_STEP, ANSWERS], ids=lambda p: p.stem)
def test_notebook_installs_the_project_only_in_colab(path):
    first = code_cells(read(path))[0]
    assert '"google.colab" in sys.modules' in first
    assert COLAB_INSTALL in first
    body = ast.parse(python_of(first)).body
    assert all(isinstance(node, (ast.Import, ast.If)) for node in body), "the setup cell does something outside Colab"


@pytest.mark.parametrize("path", [STEP_BY_STEP, ANSWERS], ids=lambda p: p.stem)
def test_notebook_uses_only_the_public_api(path):
    """No private name (``_x``) anywhere, imports from public clustercam modules only, and every
    ``clustercam.X`` / ``module.X`` the notebook reads exists and is public (caught here, before a
    student runs into it)."""
    aliases: dict[str, str] = {"clustercam": "clustercam"}  # local name → clustercam module
    problems = []
    for index, source in enumerate(code_cells(read(path))):
        tree = ast.parse(python_of(source))
        for node in ast.walk(tree):
            where = f"cell {index}, line {getattr(node, 'lineno', '?')}"
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("clustercam"):
                if node.module not in PUBLIC_MODULES:
                    problems.append(f"{where}: import from {node.module}")
                module = importlib.import_module(node.module)
                for alias in node.names:
                    if f"{node.module}.{alias.name}" in PUBLIC_MODULES:  # a submodule
                        aliases[alias.asname or alias.name] = f"{node.module}.{alias.name}"
                    elif alias.name.startswith("_") or not hasattr(module, alias.name):
                        problems.append(f"{where}: {node.module}.{alias.name} is not a public name")
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.startswith("clustercam") and alias.name not in PUBLIC_MODULES:
                        problems.append(f"{where}: import {alias.name}")
            elif isinstance(node, ast.Attribute):
                if node.attr.startswith("_") and not (node.attr.startswith("__") and node.attr.endswith("__")):
                    problems.append(f"{where}: private attribute .{node.attr}")
                if isinstance(node.value, ast.Name) and node.value.id in aliases:
                    module = importlib.import_module(aliases[node.value.id])
                    if not hasattr(module, node.attr):
                        problems.append(f"{where}: {aliases[node.value.id]}.{node.attr} does not exist")
                    public = getattr(module, "__all__", None)
                    if aliases[node.value.id] == "clustercam" and public is not None and node.attr not in public \
                            and f"clustercam.{node.attr}" not in PUBLIC_MODULES:
                        problems.append(f"{where}: clustercam.{node.attr} is not in clustercam.__all__")
    assert not problems, "\n".join(problems)


# ----------------------------------------------------------------------------- running them


def execute(path):
    """Run a notebook top to bottom in a fresh kernel (cwd: notebooks/); the executed notebook
    and its wall time in seconds. A cell that raises fails the test with its traceback."""
    nbclient = require("nbclient")
    require("ipykernel")
    notebook = read(path)
    client = nbclient.NotebookClient(
        notebook, timeout=CELL_TIMEOUT_S, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOKS)}},
    )
    start = time.perf_counter()
    client.execute(env={**os.environ, **KERNEL_ENV})
    seconds = time.perf_counter() - start
    print(f"{path.name}: executed in {seconds:.0f} s")
    return notebook, seconds


def outputs(notebook) -> tuple[str, int]:
    """Everything the notebook printed, and how many pictures it showed."""
    text, pictures = [], 0
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            assert output.output_type != "error", f"{output.ename}: {output.evalue}"
            if output.output_type == "stream" and output.name == "stdout":
                text.append(output.text)
            elif output.output_type in ("display_data", "execute_result"):
                pictures += "image/png" in output.data
    return "".join(text), pictures


@pytest.mark.slow
def test_step_by_step_notebook_runs_and_shows_each_step():
    notebook, _ = execute(STEP_BY_STEP)
    text, pictures = outputs(notebook)
    assert pictures >= 12, f"only {pictures} pictures"
    # every step the notebook redoes by hand agrees with the library
    checks = re.findall(r"by hand = library: (True|False)", text)
    assert len(checks) >= 5 and set(checks) == {"True"}, checks
    assert "(eq. 22)" in text  # the formula the library reports computing
    # the two-object photograph: explaining the cat puts the heat on the left half ...
    shares = dict(re.findall(r"^(Egyptian cat|espresso)\s*: base = cluster \d+, scissors = cluster \d+, left-half share ([\d.]+)", text, re.M))
    assert float(shares["Egyptian cat"]) > 0.5
    # ... and across β the espresso's heat lies further right than the cat's, and leaves the cat at low β
    table = [tuple(map(float, row)) for row in re.findall(r"^\s*([01]\.\d)\s+([\d.]+)\s+([\d.]+)\s*$", text, re.M)]
    assert len(table) >= 5, text
    assert all(cup < cat for _, cat, cup in table)
    assert min(cup for _, _, cup in table) < 0.5
    assert len(re.findall(r"(Cluster-CAM|Grad-CAM|Recipro-CAM)\s*: average drop", text)) == 6


@pytest.mark.slow
def test_answers_notebook_runs_and_computes_each_answer():
    notebook, _ = execute(ANSWERS)
    text, pictures = outputs(notebook)
    assert pictures >= 6, f"only {pictures} pictures"
    assert len(re.findall(r"^Q = +\d+: +\d+ passes", text, re.M)) == 4
    leaves = re.search(r"largest β with less than half of the heat on the cat: (\S+)", text)
    assert leaves and leaves.group(1) != "none", text
    assert len(re.findall(r"^(bn2|blocks\.5|blocks\.4)\s+maps", text, re.M)) == 3
    # the similarity the library's spectral preset uses separates the two objects
    correlation = re.search(r"correlation: sizes.*\n.*left-half share: cat ([\d.]+), espresso ([\d.]+)", text)
    assert correlation and float(correlation.group(1)) > 0.5 > float(correlation.group(2)), text
    assert re.search(r"correlation with seed 0: \[1\.0", text)
    assert len(re.findall(r"average drop per photograph", text)) == 4
