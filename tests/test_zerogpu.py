"""What a ZeroGPU Space needs, tested on a CPU: the network work as pure tasks whose arguments and
results cross a process boundary by pickling, the duration each declares, compilation off there,
no tensor in a handler's outputs, session state that pickles, and the Space's card.

(The ``spaces`` package is installed with the test requirements: off ZeroGPU its decorator returns
the function unchanged, and the app runs as everywhere else.)
"""

from __future__ import annotations

import multiprocessing
import os
import pickle
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from packaging.requirements import Requirement
from packaging.version import Version

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import gradio as gr

from clustercamapp import engine, gpu
from clustercamapp.gpu import MAX_SECONDS, duration_for
from clustercamapp.settings import SETTING_NAMES

from .conftest import ASSETS, ROOT

MODEL = "efficientnet_lite0"
PAIR = str(ASSETS / "cat_and_coffee.jpg")


def tensors_in(value, seen=None) -> list[torch.Tensor]:
    """Every tensor reachable from a handler's output (containers, dataclasses, components)."""
    seen = set() if seen is None else seen
    if id(value) in seen:
        return []
    seen.add(id(value))
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, dict):
        return [t for key, item in value.items() for t in (*tensors_in(key, seen), *tensors_in(item, seen))]
    if isinstance(value, (list, tuple, set)):
        return [t for item in value for t in tensors_in(item, seen)]
    if isinstance(value, pd.DataFrame):
        return tensors_in(value.to_numpy().tolist(), seen)
    if isinstance(value, gr.components.Component):
        return tensors_in(getattr(value, "value", None), seen) + tensors_in(getattr(value, "choices", None), seen)
    if hasattr(value, "__dataclass_fields__"):
        return tensors_in(vars(value), seen)
    return []


def test_durations_follow_the_stated_passes():
    default = engine.explanation_passes({"preset": "eq22"}, engine.TRADEOFF_BETAS)
    assert default == 1 + 12 + 11
    assert engine.compute_explanation.gpu_duration(b"", MODEL, "bn2", {"preset": "eq22", "q": 12}, engine.TRADEOFF_BETAS) \
        == duration_for(default) == 6  # 5 s to attach the GPU, 24 passes at 10 ms
    assert engine.measure_kept.gpu_duration(MODEL, "bn2", {}, None, None, 285, [0.85]) == duration_for(1) == 6
    assert duration_for(10**9) == MAX_SECONDS


def test_study_durations_come_from_their_stated_cost():
    from clustercamapp.tabs import compare, sweeps

    settings = [None] * len(SETTING_NAMES)
    settings[0] = PAIR
    settings[SETTING_NAMES.index("model")] = MODEL
    settings[SETTING_NAMES.index("q")] = 6
    cost = compare.compare_passes(compare.Settings.parse(image=PAIR, model=MODEL, q=6), ["clustercam", "gradcam"])
    assert cost == (1 + 6 + 1) + (1 + 1 + 1)  # Cluster-CAM 1 + Q, Grad-CAM forward and backward, each scored once
    assert compare.compare_listener.gpu_duration(*settings, ["clustercam", "gradcam"]) == duration_for(cost)
    assert sweeps.sweep_q_listener.gpu_duration(*settings) == duration_for(sum(1 + q for q in sweeps.SWEEP_Q_VALUES))
    assert sweeps.sweep_layers_listener.gpu_duration(*settings, 4) == duration_for(4 * (1 + 6))
    assert compare.compare_listener.gpu_duration(*settings, "no such method") == duration_for(0)  # refused at once


def test_compilation_is_off_under_zerogpus_environment(monkeypatch):
    from clustercam.network import Network, compile_wanted

    monkeypatch.setenv("CLUSTERCAM_COMPILE", "1")
    assert compile_wanted()
    monkeypatch.setenv("SPACES_ZERO_GPU", "true")
    assert not compile_wanted()
    network = Network(torch.nn.Linear(2, 2))
    assert network.compile(["x"], background=True) is None and not network.compiled


def call_engine(name: str, *args):
    """In the worker process: the engine's task ``name`` (that process's own, unpatched module)."""
    return getattr(engine, name)(*args)


@pytest.fixture(scope="module")
def worker():
    """A separate Python process, as ZeroGPU's worker: every argument and result is pickled."""
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        yield pool


@pytest.fixture(scope="module")
def tab():
    import app

    return app.page.explain


def test_the_network_work_crosses_a_process_boundary_and_the_server_keeps_its_state(worker, tab, monkeypatch):
    """With every task run in another process (arguments and results pickled, nothing it changes
    visible here), Explain, an off-grid β and another class give the same heatmaps as in-process,
    and the redraws find the explanation in the server's cache."""
    calls = []

    def elsewhere(name):
        def run(*args):
            calls.append(name)
            pickle.dumps(args)  # what ZeroGPU sends
            return worker.submit(call_engine, name, *args).result(timeout=600)

        return run

    values = {"image": PAIR, "model": MODEL, "q": 5, "beta": 0.8, "seed": 3}
    local = tab.on_explain(*[values.get(name) for name in SETTING_NAMES])
    local_beta = np.load(tab.on_reweight(0.85, local[tab.session])[tab.downloads][2])
    engine.RESULTS.clear()
    monkeypatch.setattr(gpu, "ON_ZERO_GPU", True)  # tasks get the model's name, not the loaded spec
    monkeypatch.setattr(engine.tasks, "compute_explanation", elsewhere("compute_explanation"))
    monkeypatch.setattr(engine.tasks, "measure_kept", elsewhere("measure_kept"))
    remote = tab.on_explain(*[values.get(name) for name in SETTING_NAMES])
    session = remote[tab.session]
    pickle.loads(pickle.dumps(session))  # the session state pickles
    reweighted = tab.on_reweight(0.85, session)  # β off the curve's grid: one kept-confidence task
    other = remote[tab.summary]["predicted_top5"][1]["name"]  # a class whose curve is not known yet
    retargeted = tab.on_retarget(other, reweighted[tab.session])
    assert calls == ["compute_explanation", "measure_kept", "measure_kept"]
    np.testing.assert_allclose(np.load(remote[tab.downloads][2]), np.load(local[tab.downloads][2]), atol=1e-6)
    np.testing.assert_allclose(np.load(reweighted[tab.downloads][2]), local_beta, atol=1e-6)
    assert retargeted[tab.summary]["target"]["name"] == other
    assert remote[tab.summary]["confidence_kept"] == local[tab.summary]["confidence_kept"]
    for out in (remote, reweighted, retargeted):
        assert not tensors_in(list(out.values())), "a handler returned a tensor"


def test_a_computed_explanation_is_plain_cpu_data():
    computed = engine.compute_explanation((ASSETS / "chelsea.jpg").read_bytes(), MODEL, "bn2", {"q": 4}, (0.5, 1.0))
    restored = pickle.loads(pickle.dumps(computed))
    assert all(t.device.type == "cpu" for t in [*tensors_in(vars(restored.result)), restored.inputs])
    assert set(restored.kept) == {0.5, 1.0}


def test_the_zerogpu_card_and_its_requirements():
    text = (ROOT / "space" / "zerogpu" / "README.md").read_text()
    card = yaml.safe_load(text.split("---")[1])
    assert card["sdk"] == "gradio" and Version(card["sdk_version"]).major == Version(gr.__version__).major == 6
    assert str(card["python_version"]) in ("3.10", "3.12") and (ROOT / card["app_file"]).is_file()
    assert card["models"] and "zerogpu" in card["tags"]
    requirements = [Requirement(line) for line in (ROOT / "space" / "zerogpu" / "requirements.txt").read_text().splitlines()
                    if line.strip() and not line.startswith("#")]
    names = {requirement.name: requirement for requirement in requirements}
    assert "spaces" not in names and "gradio" not in names  # the Space provides both
    torch_pin = next(iter(names["torch"].specifier)).version
    assert Version("2.8") <= Version(torch_pin) < Version("2.12")  # what ZeroGPU supports
    top = {Requirement(line).name for line in (ROOT / "requirements.txt").read_text().splitlines()
           if line.strip() and not line.startswith("#")}
    assert top - {"gradio"} <= set(names)  # everything else the app needs


@pytest.mark.parametrize("kind", ["zerogpu", "docker"])
def test_prepare_assembles_a_space(tmp_path, kind):
    import runpy

    prepare = runpy.run_path(str(ROOT / "space" / "prepare.py"))["prepare"]
    out = tmp_path / kind
    written = prepare(kind, out)
    assert {"README.md", "requirements.txt", "app.py", "clustercam", "clustercamapp", "assets"} <= set(written)
    card = yaml.safe_load((out / "README.md").read_text().split("---")[1])
    assert card["sdk"] == ("gradio" if kind == "zerogpu" else "docker")
    assert (out / "assets" / "cat_and_coffee.jpg").is_file() and not list(out.rglob("__pycache__"))
    assert ("Dockerfile" in written) == (kind == "docker")
    with pytest.raises(ValueError, match="not empty"):
        prepare(kind, out)


def test_spaces_is_installed_and_its_decorator_leaves_the_app_as_it_is():
    spaces = pytest.importorskip("spaces") if not os.environ.get("CI") else __import__("spaces")
    assert not spaces.config.Config.zero_gpu
    assert engine.compute_explanation.__module__ == "clustercamapp.engine.tasks"  # not wrapped off ZeroGPU
    assert Path(spaces.__file__).exists()
