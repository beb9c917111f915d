"""A layer's output read as ``C`` feature maps on an ``h×w`` grid, whatever its layout.

Every method works on maps ``(B, C, h, w)``. A convolutional layer outputs them as they are; a
vision transformer's block outputs *tokens*, ``(B, P + h·w, C)``: ``P`` prefix tokens (the class
token, distillation or register tokens) and one token per patch of the ``h×w`` patch grid; a Swin
transformer's stages output ``(B, h, w, C)``. :class:`Layout` says which, and turns the output into
maps (:meth:`Layout.to_maps`) and maps back into the layer's own layout (:meth:`Layout.to_output`:
what Ablation-CAM and Recipro-CAM hand the rest of the network), the prefix tokens set aside and
put back as they were.

The grid of a token layer is taken from the model, not guessed from the count: the patch
embedding's patch size (timm's ``patch_embed.patch_size``, torchvision's ``patch_size``) divides the
input's height and width, and the model's own count of prefix tokens (timm's
``num_prefix_tokens``; torchvision's class token) must account for the rest. The layout is read
once per layer and input shape, in :func:`layout_of`, where one place knows transformers: no method
needs to.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

#: Modules whose 4-D output is channels-first even inside a channels-last (NHWC) model.
_CHANNELS_FIRST = (nn.Conv2d, nn.BatchNorm2d, nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)


@dataclass(frozen=True)
class Layout:
    """How one layer's output holds its maps.

    Attributes:
        kind: ``"maps"`` ``(B, C, h, w)``, ``"tokens"`` ``(B, P + h·w, C)`` or ``"nhwc"`` ``(B, h, w, C)``.
        grid: ``(h, w)`` of the token grid (tokens only).
        prefix: the tokens before the grid: class, distillation, register tokens (tokens only).
    """

    kind: str = "maps"
    grid: tuple[int, int] | None = None
    prefix: int = 0

    def to_maps(self, output: torch.Tensor) -> torch.Tensor:
        """``(B, C, h, w)`` maps of the layer's ``output``."""
        if self.kind == "maps":
            return output
        if self.kind == "nhwc":
            return output.permute(0, 3, 1, 2)
        height, width = self.grid
        patches = output[:, self.prefix :, :]
        return patches.transpose(1, 2).reshape(output.shape[0], output.shape[2], height, width)

    def to_output(self, maps: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """``maps`` ``(k, C, h, w)`` in the layer's own layout; a token layer's prefix tokens are those
        of ``like`` (the layer's output for one image), repeated for the ``k`` rows."""
        if self.kind == "maps":
            return maps
        if self.kind == "nhwc":
            return maps.permute(0, 2, 3, 1)
        tokens = maps.flatten(2).transpose(1, 2)
        prefix = like[:1, : self.prefix, :].expand(maps.shape[0], -1, -1).to(tokens.dtype)
        return torch.cat([prefix, tokens], dim=1)


MAPS = Layout()


def patch_grid(model: nn.Module, height: int, width: int) -> tuple[tuple[int, int], int] | None:
    """``((h, w), P)``: the patch grid of an input of ``height × width`` (0: the model's own image
    size) and the prefix tokens of a vision transformer (timm's or torchvision's), or None for a
    model without a patch embedding."""
    embed = getattr(model, "patch_embed", None)
    if embed is not None and getattr(embed, "patch_size", None) is not None:  # timm
        if not (height and width):
            height, width = _pair(getattr(embed, "img_size", None) or (0, 0))
        patch = embed.patch_size
        rows, columns = (patch, patch) if isinstance(patch, int) else tuple(patch)
        prefix = getattr(model, "num_prefix_tokens", None)
        if prefix is None:
            prefix = int(getattr(model, "cls_token", None) is not None) + int(getattr(model, "dist_token", None) is not None)
        return (height // rows, width // columns), int(prefix)
    patch = getattr(model, "patch_size", None)
    if isinstance(patch, int) and hasattr(model, "class_token"):  # torchvision's VisionTransformer
        if not (height and width):
            height, width = _pair(getattr(model, "image_size", 0))
        return (height // patch, width // patch), 1
    return None


def _pair(size: int | tuple[int, int] | list[int]) -> tuple[int, int]:
    return (int(size), int(size)) if isinstance(size, int) else (int(size[0]), int(size[1]))


def channels_last_model(model: nn.Module) -> bool:
    """Whether the model's blocks pass ``(B, h, w, C)`` tensors (timm's Swin: ``output_fmt``)."""
    return str(getattr(model, "output_fmt", "NCHW")).upper() == "NHWC"


def layout_of(model: nn.Module, module: nn.Module, output: object, height: int, width: int) -> Layout | None:
    """The layout of ``module``'s ``output`` in ``model`` for an input of ``height × width``, or None
    when the output holds no feature maps (not a tensor, a vector, one pixel, tokens without a
    patch grid, a token count the grid does not explain)."""
    if not isinstance(output, torch.Tensor):
        return None
    if output.dim() == 4:
        if channels_last_model(model) and not isinstance(module, _CHANNELS_FIRST):
            rows, columns = output.shape[1], output.shape[2]
            if rows * columns <= 1 or not _strided(height, width, rows, columns):
                return None  # e.g. a Swin block's attention (windows × heads × tokens × tokens)
            return Layout("nhwc")
        return MAPS if output.shape[2] * output.shape[3] > 1 else None
    if output.dim() == 3:
        found = patch_grid(model, height, width)
        if found is None:
            return None
        (rows, columns), prefix = found
        if rows * columns <= 1 or output.shape[1] != prefix + rows * columns:
            return None
        return Layout("tokens", (rows, columns), prefix)
    return None


def _strided(height: int, width: int, rows: int, columns: int) -> bool:
    """Whether a ``rows × columns`` grid is the input's ``height × width`` at one stride (0: unknown)."""
    if not (height and width):
        return True
    return height % rows == 0 and width % columns == 0 and height // rows == width // columns


def describe(output_shape: tuple[int, ...]) -> str:
    """An output's shape in words, for a refusal."""
    return "×".join(str(size) for size in output_shape)
