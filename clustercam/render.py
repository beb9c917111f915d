"""Pictures of explanations: overlays, cluster/mask tiles with captions, frames, score plots.

Base and scissors are framed green and red as in the paper's Fig. 3. Everything returns PIL
images (RGB) so that the CLI saves them and the app shows them without further conversion.
Plots use ``matplotlib.figure.Figure`` directly (never pyplot), so importing this module leaves the
user's matplotlib backend alone and is safe in server threads.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np
import torch
from matplotlib import colormaps
from PIL import Image, ImageDraw, ImageFont

BASE_COLOR = (0, 170, 70)
SCISSORS_COLOR = (220, 30, 30)
ArrayLike = np.ndarray | torch.Tensor


def to_numpy(values: ArrayLike) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        return values.detach().float().cpu().numpy()
    return np.asarray(values, dtype=np.float32)


def resize_heatmap(heatmap: ArrayLike, size: tuple[int, int]) -> np.ndarray:
    """A ``[0, 1]`` map resized (bilinear) to ``size = (width, height)``, float32, clipped to ``[0, 1]``."""
    values = np.clip(np.nan_to_num(to_numpy(heatmap)), 0.0, 1.0).astype(np.float32)
    if values.shape[::-1] == tuple(size):
        return values
    resized = Image.fromarray(values, mode="F").resize(size, Image.Resampling.BILINEAR)
    return np.clip(np.asarray(resized, dtype=np.float32), 0.0, 1.0)


def colorize(heatmap: ArrayLike, cmap: str = "jet") -> Image.Image:
    """A ``[0, 1]`` map as an RGB picture through a matplotlib colormap."""
    values = np.clip(np.nan_to_num(to_numpy(heatmap)), 0.0, 1.0)
    rgba = colormaps[cmap](values)
    return Image.fromarray((rgba[..., :3] * 255).round().astype(np.uint8))


def overlay(image: Image.Image, heatmap: ArrayLike, *, cmap: str = "jet", alpha: float = 0.5) -> Image.Image:
    """The heatmap, resized to the image and coloured, blended over it with opacity ``alpha``."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1]; got {alpha}.")
    base = image.convert("RGB")
    colored = colorize(resize_heatmap(heatmap, base.size), cmap)
    return Image.blend(base, colored, alpha)


def masked_image(image: Image.Image, mask: ArrayLike, baseline_color: Sequence[float]) -> Image.Image:
    """What the network saw for ``X ∘ H``: ``pixel·H + baseline·(1 − H)``.

    With ``baseline_color`` the preprocessing's mean colour (0–255) this is exactly the
    de-normalised masked tensor of :mod:`clustercam.maps`.
    """
    pixels = np.asarray(image.convert("RGB"), dtype=np.float32)
    weights = resize_heatmap(mask, image.size)[..., None]
    color = np.asarray(baseline_color, dtype=np.float32).reshape(1, 1, 3)
    return Image.fromarray(np.clip(pixels * weights + color * (1 - weights), 0, 255).round().astype(np.uint8))


def frame(image: Image.Image, color: tuple[int, int, int], width: int = 5) -> Image.Image:
    """The image with a coloured border drawn inside its edges."""
    framed = image.convert("RGB").copy()
    draw = ImageDraw.Draw(framed)
    for offset in range(width):
        draw.rectangle([offset, offset, framed.width - 1 - offset, framed.height - 1 - offset], outline=color)
    return framed


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow without FreeType
        return ImageFont.load_default()


def tile_sheet(
    images: Sequence[Image.Image],
    captions: Sequence[str],
    *,
    columns: int | None = None,
    tile_width: int = 200,
    title: str | None = None,
) -> Image.Image:
    """Images in a grid, each resized to ``tile_width`` with its caption underneath."""
    if not images or len(images) != len(captions):
        raise ValueError("tile_sheet needs as many captions as images, and at least one image.")
    columns = columns or min(len(images), 4)
    rows = -(-len(images) // columns)
    first = images[0]
    tile_height = max(1, round(first.height * tile_width / first.width))
    font = _font(max(11, tile_width // 14))
    line_height = font.getbbox("Ag")[3] + 6
    lines = max(caption.count("\n") + 1 for caption in captions)
    caption_height = line_height * lines + 4
    title_height = line_height + 8 if title else 0
    pad = 8
    sheet = Image.new(
        "RGB",
        (columns * (tile_width + pad) + pad, title_height + rows * (tile_height + caption_height + pad) + pad),
        "white",
    )
    draw = ImageDraw.Draw(sheet)
    if title:
        draw.text((pad, pad), title, fill="black", font=font)
    for index, (image, caption) in enumerate(zip(images, captions, strict=True)):
        row, column = divmod(index, columns)
        x = pad + column * (tile_width + pad)
        y = title_height + pad + row * (tile_height + caption_height + pad)
        sheet.paste(image.convert("RGB").resize((tile_width, tile_height), Image.Resampling.BILINEAR), (x, y))
        draw.multiline_text((x, y + tile_height + 3), caption, fill="black", font=font, spacing=4)
    return sheet


def cluster_captions(explanation) -> list[str]:
    """``cluster q · n maps`` and ``p = …``, plus BASE / SCISSORS, for each cluster."""
    captions = []
    for q, (size, score) in enumerate(zip(explanation.cluster_sizes, explanation.scores.tolist(), strict=True)):
        role = " · BASE" if q == explanation.base_index else " · SCISSORS" if q == explanation.scissors_index else ""
        captions.append(f"cluster {q} · {size} maps{role}\np = {score:.3f}")
    return captions


def _framed(tiles: list[Image.Image], explanation) -> list[Image.Image]:
    framed = list(tiles)
    width = max(3, tiles[0].width // 40)
    framed[explanation.scissors_index] = frame(tiles[explanation.scissors_index], SCISSORS_COLOR, width)
    framed[explanation.base_index] = frame(tiles[explanation.base_index], BASE_COLOR, width)
    return framed


def cluster_tiles(explanation, image_size: tuple[int, int], *, cmap: str = "viridis") -> list[Image.Image]:
    """Each cluster mean map ``F̃_q`` (eq. 18), scaled to ``[0, 1]``, coloured, base/scissors framed."""
    maps = explanation.masks  # F̃_q upsampled and min–max scaled: what was scored
    return _framed([colorize(resize_heatmap(m, image_size), cmap) for m in maps], explanation)


def masked_tiles(explanation, image: Image.Image, baseline_color: Sequence[float]) -> list[Image.Image]:
    """Each masked input ``X ∘ H_q`` as the network saw it, base/scissors framed."""
    return _framed([masked_image(image, m, baseline_color) for m in explanation.masks], explanation)


def cluster_sheet(explanation, image: Image.Image, *, title: str | None = None) -> Image.Image:
    """Tile sheet of the cluster maps with sizes and scores (the paper's Fig. 3, second row)."""
    return tile_sheet(cluster_tiles(explanation, image.size), cluster_captions(explanation), title=title)


def masked_sheet(explanation, image: Image.Image, baseline_color: Sequence[float], *, title: str | None = None) -> Image.Image:
    """Tile sheet of the masked inputs with their target scores (Fig. 3, third row)."""
    captions = [f"image × mask {q}\np = {score:.3f}" for q, score in enumerate(explanation.scores.tolist())]
    return tile_sheet(masked_tiles(explanation, image, baseline_color), captions, title=title)


def scores_plot(explanation, *, class_name: str = "target", width: float = 6.0, height: float = 2.6) -> Image.Image:
    """Bar chart of the ``Q`` scores ``y_q`` (eq. 19), base green, scissors red."""
    from matplotlib.figure import Figure

    scores = explanation.scores.tolist()
    colors = ["#9aa5b1"] * len(scores)
    colors[explanation.scissors_index] = "#dc1e1e"
    colors[explanation.base_index] = "#00aa46"
    figure = Figure(figsize=(width, height), dpi=100, layout="constrained")
    axes = figure.add_subplot()
    axes.bar(range(len(scores)), scores, color=colors)
    axes.set_xticks(range(len(scores)))
    axes.set_xlabel("cluster q")
    axes.set_ylabel(f"p({class_name} | X∘H_q)")
    axes.set_title("Scores of the masked inputs (green: base, red: scissors)", fontsize=10)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    buffer.seek(0)
    return Image.open(buffer).convert("RGB")
