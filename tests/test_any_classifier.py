"""Any classifier: a researcher's own network (clustercam.from_module), an exported program file,
and vision transformers (timm's ViT, DeiT, Swin; torchvision's ViT), with randomly initialised
weights: the mechanics (grids, class and register tokens, Swin's layout, every method, the layer
list, the app and the CLI with such a model). The quality of the maps needs downloaded weights
and is not measured here."""

from __future__ import annotations

import copy
import json
import re
import zipfile
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
import torchvision
from torch import nn

import clustercam
from clustercam.hooks import LayerCapture, hook_count
from clustercam.maps import minmax
from clustercam.methods import METHODS
from clustercam.methods.reciprocam import ReciproCAM
from clustercam.tail import Tail

from .conftest import ASSETS, ROOT

CHELSEA = ASSETS / "chelsea.jpg"
#: Every method with options that keep it quick on a CPU.
QUICK = {"smoothgradcam++": {"n_samples": 2}, "scorecam": {"batch_size": 128}, "ablationcam": {"batch_size": 128}}


def classes(count: int) -> list[str]:
    return [f"thing {index}" for index in range(count)]


@pytest.fixture(scope="module")
def own_cnn():
    torch.manual_seed(0)
    return clustercam.from_module(torchvision.models.resnet18(num_classes=10), classes(10), input_size=64,
                                  device="cpu")


@pytest.fixture(scope="module")
def deit():
    torch.manual_seed(0)
    return clustercam.load_model("timm/deit_tiny_patch16_224", device="cpu", pretrained=False)


# ---- your own network -------------------------------------------------------------------------


def test_your_own_network_is_made_ready_like_the_zoos(own_cnn):
    model = own_cnn.model
    assert not model.training and not any(p.requires_grad for p in model.parameters())
    assert not any(getattr(m, "inplace", False) for m in model.modules())  # an in-place ReLU would overwrite maps
    assert own_cnn.default_layer == "layer4" and own_cnn.categories[3] == "thing 3"
    assert [info.name for info in own_cnn.layers()][-2:] == ["layer4.1", "layer4"] or own_cnn.layers()[-1].name == "layer4"
    assert own_cnn.input_shape is None and own_cnn.preprocess(CHELSEA).shape == (1, 3, 64, 96)


@pytest.mark.parametrize("method", list(METHODS))
def test_every_method_explains_your_own_network(own_cnn, method):
    x = own_cnn.preprocess(CHELSEA)
    options = {"q": 4} if method == "clustercam" else QUICK.get(method, {})
    result = clustercam.get_method(method)(own_cnn, **options)(x, 3)
    assert result.heatmaps.shape == (1, 64, 96) and torch.isfinite(result.heatmaps).all()
    assert int(result.targets[0]) == 3 and hook_count(own_cnn.model) == 0


def test_the_readme_shows_your_own_network_and_a_deit_in_three_lines_each(monkeypatch, tmp_path):
    """The README's two snippets run as printed (a random network for ``my_network``; DeiT with
    random weights: the download is what this machine cannot do)."""
    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    own = next(block for block in blocks if "from_module" in block)
    vit = next(block for block in blocks if "deit_tiny" in block)
    assert len([line for line in own.splitlines() if line.strip()]) == 3 == len([line for line in vit.splitlines() if line.strip()])
    my_network = torchvision.models.resnet18(num_classes=3).eval()
    scope = {"my_network": my_network, "my_class_names": ["cat", "dog", "bird"]}
    exec(own.replace("photo.jpg", str(CHELSEA)), scope)
    assert scope["result"].heatmaps.shape[-2:] == (224, 352)  # the short side at 224, both a multiple of 32
    original = clustercam.load_model
    monkeypatch.setattr(clustercam, "load_model", lambda *a, **k: original(*a, **{**k, "pretrained": False}))
    scope = {}
    exec(vit.replace("photo.jpg", str(CHELSEA)), scope)
    assert scope["result"].heatmaps.shape[-2:] == (224, 224)


def test_a_module_that_is_no_classifier_or_names_that_do_not_fit_are_refused():
    trunk = nn.Sequential(*list(torchvision.models.resnet18().children())[:-2])  # 4-D maps, no logits
    with pytest.raises(ValueError, match=r"not a classifier: it returned \(1, 512, 7, 7\)"):
        clustercam.from_module(trunk, device="cpu")
    with pytest.raises(ValueError, match="names 3 classes, but the network outputs 1000 logits"):
        clustercam.from_module(torchvision.models.resnet18(), classes(3), device="cpu")
    with pytest.raises(ValueError, match="no explainable layer 'layer9'"):
        clustercam.from_module(torchvision.models.resnet18(), layer="layer9", device="cpu")
    with pytest.raises(ValueError, match="did not take a 1 × 3 × 224 × 224 image batch"):
        clustercam.from_module(nn.Linear(4, 2), device="cpu")


# ---- an exported program file -------------------------------------------------------------------


def export(model: nn.Module, path: Path, size: int = 128, dynamic: bool = True) -> Path:
    batch = torch.export.Dim("batch", min=1, max=4096)
    program = torch.export.export(model.eval(), (torch.rand(2 if dynamic else 1, 3, size, size),),
                                  dynamic_shapes=({0: batch},) if dynamic else None)
    torch.export.save(program, str(path))
    return path


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    folder = tmp_path_factory.mktemp("exported")
    torch.manual_seed(1)
    model = torchvision.models.resnet18(num_classes=5).eval()
    (folder / "classes.txt").write_text("\n".join(classes(5)) + "\n\n")
    return export(copy.deepcopy(model), folder / "classifier.pt2"), folder / "classes.txt", model


def test_an_exported_file_keeps_its_layer_names_and_its_input_size(exported):
    path, labels, original = exported
    spec = clustercam.load_model(str(path), labels=str(labels), device="cpu")
    assert spec.name == "classifier.pt2" and spec.categories == tuple(classes(5)) and spec.input_shape == (128, 128)
    names = [info.name for info in spec.layers()]
    assert {"layer1", "layer4", "layer4.1.conv2"} <= set(names) and spec.default_layer == "layer4"
    kinds = {info.name: info.kind for info in spec.layers()}  # the classes it was exported from
    assert (kinds["layer4"], kinds["layer4.1.conv2"], kinds["layer1.0.bn1"]) == ("Sequential", "Conv2d", "BatchNorm2d")
    x = spec.preprocess(CHELSEA)  # a 451 × 300 photograph, resized to the program's one size
    assert x.shape == (1, 3, 128, 128)
    with torch.inference_mode():
        assert torch.allclose(spec.model(x), original(x.contiguous()), atol=1e-4)  # the program is the network
    for method in ("clustercam", "gradcam", "reciprocam", "ablationcam"):
        options = {"q": 3} if method == "clustercam" else QUICK.get(method, {})
        result = clustercam.get_method(method)(spec, "layer4", **options)(x)
        assert result.heatmaps.shape == (1, 128, 128) and torch.isfinite(result.heatmaps).all(), method
    assert ReciproCAM(spec, "layer4")(x).extras["tail_mode"] == "tail"  # the tail trick works on the program too


def test_exported_files_that_cannot_be_explained_say_why(exported, tmp_path):
    path, _, original = exported
    (tmp_path / "two.txt").write_text("a\nb\n")
    with pytest.raises(ValueError, match=r"The labels file two\.txt names 2 classes, but the network outputs 5 logits"):
        clustercam.load_model(str(path), labels=str(tmp_path / "two.txt"))
    static = export(copy.deepcopy(original), tmp_path / "static.pt2", dynamic=False)
    with pytest.raises(ValueError, match=r"exported for a batch of one size only.*Dim"):
        clustercam.load_model(str(static))
    trunk = nn.Sequential(*list(torchvision.models.resnet18().children())[:-2])
    with pytest.raises(ValueError, match="is not a classifier"):
        clustercam.load_model(str(export(trunk, tmp_path / "trunk.pt2")))
    (tmp_path / "junk.pt2").write_bytes(b"PK-not-really")
    with pytest.raises(ValueError, match=r"junk\.pt2 is not a torch\.export program"):
        clustercam.load_model(str(tmp_path / "junk.pt2"))
    with pytest.raises(ValueError, match="No exported model file at"):
        clustercam.load_model(str(tmp_path / "missing.pt2"))


def test_a_file_from_a_newer_torch_says_so(exported, tmp_path):
    """The program's serialisation schema as a newer torch would write it (major version raised,
    its torch_version named): the message names both torches, before torch's own generic error."""
    path, _, _ = exported
    newer = tmp_path / "newer.pt2"
    with zipfile.ZipFile(path) as source, zipfile.ZipFile(newer, "w") as target:
        for item in source.infolist():
            data = source.read(item.filename)
            if item.filename.endswith("models/model.json"):
                header = json.loads(data)
                header["schema_version"]["major"] += 1
                header["torch_version"] = "9.1.0"
                data = json.dumps(header).encode()
            target.writestr(item, data)
    with pytest.raises(ValueError, match=r"exported by torch 9\.1\.0, newer than this torch \(" + re.escape(torch.__version__)):
        clustercam.load_model(str(newer))
    assert clustercam.load_model(str(path), device="cpu").name == "classifier.pt2"  # the file it came from reads


def test_the_cli_explains_an_exported_file(exported, tmp_path, capsys):
    from clustercam.cli import main

    path, labels, _ = exported
    assert main(["explain", str(CHELSEA), "--model", str(path), "--labels", str(labels), "--q", "3",
                 "--out", str(tmp_path / "out"), "--no-quality"]) == 0
    heatmap = np.load(tmp_path / "out" / "heatmap.npy")
    assert heatmap.shape == (300, 451) and np.isfinite(heatmap).all()  # at the photograph's own size
    assert main(["layers", "--model", str(path), "--labels", str(labels)]) == 0
    assert "layer4 · " in capsys.readouterr().out


# ---- vision transformers -----------------------------------------------------------------------


def test_a_vit_layer_is_read_as_maps_on_its_patch_grid(deit):
    x = deit.preprocess(CHELSEA)
    assert x.shape == (1, 3, 224, 224)  # DeiT takes one size: the photograph is resized to it
    with LayerCapture(deit.model, "blocks.11.norm1", input_shape=(224, 224)) as capture, torch.inference_mode():
        deit.model(x)
        tokens, maps, layout = capture.output, capture.activations, capture.layout
    assert tokens.shape == (1, 1 + 14 * 14, 192) and maps.shape == (1, 192, 14, 14)
    assert layout.kind == "tokens" and layout.grid == (14, 14) and layout.prefix == 1
    assert torch.equal(maps[0, :, 2, 3], tokens[0, 1 + 2 * 14 + 3])  # patch (2, 3): row-major after the class token
    assert torch.equal(layout.to_output(maps, tokens), tokens)  # and back, the class token as it was
    names = [info.name for info in deit.layers()]
    # the last block is listed by its container's name (as ResNet's layer4 for layer4.1), and taken by either
    assert deit.default_layer == "blocks.11.norm1" and {f"blocks.{i}" for i in range(11)} | {"blocks", "norm"} <= set(names)
    assert clustercam.from_module(deit.model, layer="blocks.11", device="cpu").default_layer == "blocks.11"
    assert not any(name.endswith(("drop_path1", "attn_drop", "ls1")) for name in names)  # pass-throughs left out
    assert all(info.height == info.width == 14 for info in deit.layers() if info.name.startswith("blocks."))


def test_register_tokens_are_set_aside_by_the_models_own_count():
    torch.manual_seed(0)
    model = timm.create_model("vit_tiny_patch16_224", pretrained=False, reg_tokens=4, num_classes=7, depth=5).eval()
    spec = clustercam.from_module(model, device="cpu")
    with LayerCapture(spec.model, "blocks.3", input_shape=(224, 224)) as capture, torch.inference_mode():
        spec.model(spec.preprocess(CHELSEA))
        assert capture.output.shape == (1, 5 + 196, 192) and capture.layout.prefix == 5  # class + 4 registers
        assert torch.equal(capture.activations[0, :, 0, 0], capture.output[0, 5])
    result = clustercam.get_method("reciprocam")(spec, "blocks.3")(spec.preprocess(CHELSEA))
    assert result.extras["tail_mode"] == "tail" and result.forward_passes == 1 + 196 + 1


def test_swin_stages_are_read_as_maps_and_explained():
    torch.manual_seed(0)
    spec = clustercam.from_module(timm.create_model("swin_tiny_patch4_window7_224", pretrained=False).eval(), device="cpu")
    layers = {info.name: info for info in spec.layers()}
    assert (layers["layers"].channels, layers["layers"].height) == (768, 7) and layers["layers.0"].height == 56
    assert spec.default_layer == "norm" and {(layers[f"layers.{i}"].height) for i in range(3)} == {56, 28, 14}
    assert all(info.height in (56, 28, 14, 7) for info in layers.values())  # no attention maps (windows × heads)
    x = spec.preprocess(CHELSEA)
    for method in ("clustercam", "gradcam", "reciprocam", "ablationcam"):
        result = clustercam.get_method(method)(spec, "layers.3", **({"q": 3} if method == "clustercam" else QUICK.get(method, {})))(x)
        assert result.heatmaps.shape == (1, 224, 224) and torch.isfinite(result.heatmaps).all()


def test_torchvisions_vit_gets_its_grid_and_default_from_the_model():
    torch.manual_seed(0)
    spec = clustercam.from_module(torchvision.models.vit_b_16().eval(), device="cpu")
    assert spec.input_shape == (224, 224) and spec.default_layer == "encoder.layers.encoder_layer_11.ln_1"
    info = {layer.name: layer for layer in spec.layers()}[spec.default_layer]
    assert (info.channels, info.height, info.width) == (768, 14, 14)
    result = clustercam.get_method("gradcam")(spec)(spec.preprocess(CHELSEA))
    assert result.heatmaps.shape == (1, 224, 224) and torch.isfinite(result.heatmaps).all()


@pytest.mark.slow
@pytest.mark.parametrize("method", list(METHODS))
def test_every_method_explains_a_deit(deit, method):
    x = deit.preprocess(CHELSEA)
    options = {"q": 4} if method == "clustercam" else QUICK.get(method, {})
    result = clustercam.get_method(method)(deit, **options)(x)
    assert result.heatmaps.shape == (1, 224, 224) and torch.isfinite(result.heatmaps).all()
    forward, backward = clustercam.get_method(method).planned_passes(192, height=14, width=14, **options)
    assert result.backward_passes == backward and result.forward_passes <= forward
    assert hook_count(deit.model) == 0


def test_reciprocam_on_a_vit_keeps_the_class_token_and_its_tail_is_the_network(deit):
    x = deit.preprocess(CHELSEA)
    layer = deit.model.get_submodule("blocks.11.norm1")
    with LayerCapture(deit.model, layer, input_shape=(224, 224)) as capture, torch.inference_mode():
        logits = deit.model(x)
        tokens = capture.output.clone()
    with torch.inference_mode():
        again = Tail(deit.network, layer).logits(x, tokens)
    assert (again - logits).abs().max() <= 1e-5
    tail, full = ReciproCAM(deit, batch_size=50)(x), ReciproCAM(deit, mode="full", batch_size=50)(x)
    assert tail.extras["tail_mode"] == "tail" and (tail.heatmaps - full.heatmaps).abs().max() <= 1e-5
    assert tail.forward_passes == 1 + 196 + 1


def test_grad_cam_on_a_vit_agrees_with_pytorch_grad_cams_reshape_transform(deit):
    """pytorch-grad-cam's documented way for ViTs: tokens without the class token, reshaped to the
    14 × 14 grid. Both maps min–max scaled at the input size agree."""
    pgc = pytest.importorskip("pytorch_grad_cam")
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    def reshape(tokens: torch.Tensor) -> torch.Tensor:
        return tokens[:, 1:, :].reshape(tokens.shape[0], 14, 14, tokens.shape[2]).permute(0, 3, 1, 2)

    x = deit.preprocess(CHELSEA)
    ours = clustercam.get_method("gradcam")(deit)(x)
    model = copy.deepcopy(deit.model).requires_grad_(True).eval()
    with pgc.GradCAM(model, [model.blocks[-1].norm1], reshape_transform=reshape) as cam:
        theirs = cam(x.clone(), targets=[ClassifierOutputTarget(int(ours.targets[0]))])
    difference = (minmax(ours.heatmaps[0].double()) - minmax(torch.from_numpy(np.asarray(theirs[0], dtype=np.float64))))
    assert float(difference.abs().max()) <= 1e-3


# ---- the explorer -------------------------------------------------------------------------------


def page_values(**settings) -> list[object]:
    from clustercamapp.settings import SETTING_NAMES

    defaults = {"image": str(CHELSEA), "model": "efficientnet_lite0", "layer": "", "q": 4, "beta": 0.8,
                "clustering": "kmeans", "n_eigenvectors": 0, "sigma": 0.2, "theta": 0.0, "seed": 0, "target": "",
                "preset": "", "similarity": "", "normalize_rows": None, "colormap": "viridis"}
    merged = {**defaults, **settings}
    return [merged[name] for name in SETTING_NAMES]


def test_without_a_network_the_transformer_says_what_to_do(monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(clustercam.WeightsUnavailableError, match=r"timm/deit_tiny_patch16_224.*efficientnet_lite0"):
        clustercam.load_model("timm/deit_tiny_patch16_224", device="cpu")


def test_the_explorer_explains_a_deit_chosen_on_the_page(monkeypatch):
    """The page with the transformer chosen (random weights: the download is what this machine
    cannot do): its blocks in the layer menu, Explain, β, another class, Compare with Recipro-CAM."""
    import app
    from clustercamapp.tabs import compare as compare_tab

    original = timm.create_model
    monkeypatch.setattr(timm, "create_model", lambda name, pretrained=False, **options: original(name, pretrained=False, **options))
    page, name = app.page, "timm/deit_tiny_patch16_224"
    update = page.controls.choose_model(name, "efficientnet_lite0")
    layer = update[page.controls.layer]
    assert layer.value == "blocks.11.norm1" and ("blocks.11.norm1 · LayerNorm · 192×14×14", "blocks.11.norm1") in layer.choices
    tab = page.explain
    out = tab.on_explain(*page_values(model=name))
    summary = out[tab.summary]
    assert summary["model"] == name and summary["layer"] == "blocks.11.norm1" and summary["forward_passes"] == 5
    assert np.load(out[tab.downloads][2]).shape == (224, 224) and len(out[tab.clusters]) == 4
    assert tab.on_reweight(0.4, out[tab.session])[tab.summary]["beta"] == 0.4
    gallery, table = compare_tab.compare_listener(*page_values(model=name), ["clustercam", "gradcam", "reciprocam"])
    assert list(table["method"]) == ["Cluster-CAM", "Grad-CAM", "Recipro-CAM"] and len(gallery) == 4
    assert list(table["of which tail rows"]) == [0, 0, 196 + 1]


@pytest.mark.slow
def test_the_explorer_started_with_an_exported_file_explains_it(exported, tmp_path):
    """``python app.py --model classifier.pt2 --labels classes.txt``: offered first, explained
    through the API as any zoo model; a file that cannot be read stops the server with its reason."""
    import subprocess
    import sys

    from gradio_client import Client, handle_file

    from benchmarks.serving import serve_app

    path, labels, _ = exported
    with serve_app(log=tmp_path / "server.log", args=["--model", str(path), "--labels", str(labels)]) as server:
        client = Client(server.url, verbose=False, download_files=False)
        default, rows = client.predict("classifier.pt2", api_name="/layers")
        assert default == "layer4" and "layer4.1.conv2" in [row["name"] for row in rows]
        answer = client.predict(handle_file(str(CHELSEA)), "classifier.pt2", "", 3, api_name="/explain")
        summary = answer[5]
        assert summary["model"] == "classifier.pt2" and summary["target"]["name"].startswith("thing ")
    done = subprocess.run([sys.executable, "app.py", "--model", str(tmp_path / "missing.pt2")], cwd=ROOT,
                          capture_output=True, text=True, timeout=300, env={"PATH": "/usr/bin:/bin", "GRADIO_ANALYTICS_ENABLED": "False"})
    assert done.returncode != 0 and "app.py: No exported model file at" in done.stderr
