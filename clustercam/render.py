"""Pictures of explanations: overlays, cluster/mask tiles with captions, frames, score plots.

Base and scissors are framed as in the paper's Fig. 3, but told apart by more than colour: the
base by a solid blue frame, the scissors by a dashed vermillion one (Okabe–Ito colours, distinct
under every common colour-vision deficiency; the paper's green and red look alike to one reader
in twelve). Heatmaps use the perceptually uniform ``viridis`` by default (``jet`` remains
available). Everything returns PIL images (RGB) so that the CLI saves them and the app shows them
without further conversion.
Plots use ``matplotlib.figure.Figure`` directly (never pyplot), so importing this module leaves the
user's matplotlib backend alone and is safe in server threads.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np
import torch
from matplotlib import colormaps
from PIL import Image, ImageDraw, ImageFont

#: Frame colours (Okabe–Ito blue and vermillion); the scissors frame is also dashed.
BASE_COLOR = (0, 114, 178)
SCISSORS_COLOR = (213, 94, 0)
#: The default colormap: perceptually uniform, readable in grey and with colour-vision deficiencies.
DEFAULT_CMAP = "viridis"
#: Colormaps offered by the CLI and the app (``jet`` for comparison with older CAM papers).
CMAPS = ("viridis", "inferno", "magma", "cividis", "turbo", "jet")
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


@functools.lru_cache(maxsize=16)
def colormap_lut(cmap: str) -> np.ndarray:
    """The 256 RGB colours of a matplotlib colormap as a ``(256, 3)`` uint8 lookup table."""
    colormap = colormaps[cmap].resampled(256)
    return (colormap(np.arange(256))[:, :3] * 255).round().astype(np.uint8)


def colorize(heatmap: ArrayLike, cmap: str = DEFAULT_CMAP) -> Image.Image:
    """A ``[0, 1]`` map as an RGB picture through a matplotlib colormap.

    A table lookup on the array (no matplotlib call per picture): value ``v`` takes colour
    ``min(⌊256·v⌋, 255)``, the same as matplotlib's own mapping of floats onto its 256 colours.
    """
    values = np.clip(np.nan_to_num(to_numpy(heatmap)), 0.0, 1.0)
    index = np.minimum((values * 256).astype(np.intp), 255)
    return Image.fromarray(colormap_lut(cmap)[index])


def overlay(image: Image.Image, heatmap: ArrayLike, *, cmap: str = DEFAULT_CMAP, alpha: float = 0.5) -> Image.Image:
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
    return _blend(pixels, resize_heatmap(mask, image.size), baseline_color)


def _blend(pixels: np.ndarray, weights: np.ndarray, baseline_color: Sequence[float]) -> Image.Image:
    """``pixels·w + baseline·(1 − w)`` for an ``(H, W, 3)`` float image and ``(H, W)`` weights."""
    weights = weights[..., None]
    color = np.asarray(baseline_color, dtype=np.float32).reshape(1, 1, 3)
    return Image.fromarray(np.clip(pixels * weights + color * (1 - weights), 0, 255).round().astype(np.uint8))


def frame(image: Image.Image, color: tuple[int, int, int], width: int = 5, *, dashed: bool = False) -> Image.Image:
    """The image with a coloured border drawn inside its edges (``dashed``: in dashes that start
    at each corner, so a frame is recognisable without its colour)."""
    framed = image.convert("RGB").copy()
    pixels = np.asarray(framed).copy()
    height, width_px = pixels.shape[:2]
    border = np.zeros((height, width_px), dtype=bool)
    border[:width, :] = border[-width:, :] = True
    border[:, :width] = border[:, -width:] = True
    if dashed:
        dash = max(4, 3 * width)
        rows, columns = np.indices((height, width_px))
        along = np.where((rows < width) | (rows >= height - width), columns, rows)  # position along the edge
        border &= (along // dash) % 2 == 0
    pixels[border] = color
    return Image.fromarray(pixels)


@functools.lru_cache(maxsize=16)
def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    """DejaVu Sans, which matplotlib ships (Greek letters and maths signs: β, ×, −), else Pillow's own."""
    from matplotlib import font_manager

    try:
        return ImageFont.truetype(font_manager.findfont("DejaVu Sans", fallback_to_default=True), size)
    except (OSError, ValueError):
        pass
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
    framed[explanation.scissors_index] = frame(tiles[explanation.scissors_index], SCISSORS_COLOR, width, dashed=True)
    framed[explanation.base_index] = frame(tiles[explanation.base_index], BASE_COLOR, width)
    return framed


def resized_masks(explanation, size: tuple[int, int]) -> list[np.ndarray]:
    """The ``Q`` masks ``H_q`` of an explanation resized to ``size = (width, height)``: computed once
    and shared by :func:`cluster_tiles` and :func:`masked_tiles` when both are drawn."""
    return [resize_heatmap(m, size) for m in explanation.masks]


def cluster_tiles(explanation, image_size: tuple[int, int], *, cmap: str = "viridis",
                  resized: list[np.ndarray] | None = None) -> list[Image.Image]:
    """Each cluster mean map ``F̃_q`` (eq. 18), scaled to ``[0, 1]``, coloured, base/scissors framed.
    ``resized``: :func:`resized_masks` at ``image_size``, when already made."""
    maps = resized if resized is not None else resized_masks(explanation, image_size)  # H_q: what was scored
    return _framed([colorize(m, cmap) for m in maps], explanation)


def masked_tiles(explanation, image: Image.Image, baseline_color: Sequence[float], *,
                 resized: list[np.ndarray] | None = None) -> list[Image.Image]:
    """Each masked input ``X ∘ H_q`` as the network saw it, base/scissors framed. ``resized``:
    :func:`resized_masks` at the image's size, when already made."""
    maps = resized if resized is not None else resized_masks(explanation, image.size)
    pixels = np.asarray(image.convert("RGB"), dtype=np.float32)  # once for the Q tiles
    return _framed([_blend(pixels, m, baseline_color) for m in maps], explanation)


def cluster_sheet(explanation, image: Image.Image, *, title: str | None = None) -> Image.Image:
    """Tile sheet of the cluster maps with sizes and scores (the paper's Fig. 3, second row)."""
    return tile_sheet(cluster_tiles(explanation, image.size), cluster_captions(explanation), title=title)


def masked_sheet(explanation, image: Image.Image, baseline_color: Sequence[float], *, title: str | None = None) -> Image.Image:
    """Tile sheet of the masked inputs with their target scores (Fig. 3, third row)."""
    captions = [f"image × mask {q}\np = {score:.3f}" for q, score in enumerate(explanation.scores.tolist())]
    return tile_sheet(masked_tiles(explanation, image, baseline_color), captions, title=title)


def scores_plot(explanation, *, class_name: str = "target", width: int = 640, height: int = 300) -> Image.Image:
    """Bar chart of the ``Q`` scores ``y_q`` (eq. 19), drawn with Pillow (no figure, a few ms).

    Each bar carries its value; the base bar is solid blue and labelled BASE, the scissors bar
    striped vermillion and labelled SCISSORS (told apart without colour). Every bar is at least
    two pixels high, so a score near zero (a typical scissors) stays visible.
    """
    scores = [float(score) for score in explanation.scores.tolist()]
    chart = Image.new("RGB", (int(width), int(height)), "white")
    draw = ImageDraw.Draw(chart)
    font, small = _font(15), _font(12)
    line = font.getbbox("Ag")[3]
    left, right, top, bottom = 16, int(width) - 12, 10 + 2 * line, int(height) - (3 * line + 14)
    draw.text((left, 4), f"p({class_name} | image masked by cluster q)", fill="black", font=font)
    draw.line([(left, bottom), (right, bottom)], fill="black", width=1)
    highest = max(max(scores), 1e-12)
    slot = (right - left) / max(1, len(scores))
    for q, score in enumerate(scores):
        x0, x1 = left + q * slot + slot * 0.18, left + (q + 1) * slot - slot * 0.18
        y0 = min(bottom - 2, bottom - (bottom - top) * score / highest)
        role = "BASE" if q == explanation.base_index else "SCISSORS" if q == explanation.scissors_index else ""
        color = BASE_COLOR if role == "BASE" else SCISSORS_COLOR if role == "SCISSORS" else (150, 160, 170)
        draw.rectangle([x0, y0, x1, bottom], fill=color if role != "SCISSORS" else "white", outline=color, width=2)
        if role == "SCISSORS":  # hatching: horizontal stripes inside the bar
            for y in range(int(bottom) - 3, int(y0), -4):
                draw.line([(x0, y), (x1, y)], fill=color, width=1)
        value = f"{score:.3f}" if score >= 0.001 else f"{score:.1e}"
        draw.text(((x0 + x1) / 2, y0 - 3), value, fill="black", font=small, anchor="md")
        draw.text(((x0 + x1) / 2, bottom + 4), str(q), fill="black", font=font, anchor="ma")
        if role:
            draw.text(((x0 + x1) / 2, bottom + 6 + line), role, fill="black", font=small, anchor="ma")
    draw.text(((left + right) / 2, int(height) - 4), "cluster q", fill="black", font=font, anchor="md")
    return chart


def tradeoff_plot(
    betas: Sequence[float], kept: Sequence[float], full: float, beta: float, kept_at_beta: float, *,
    class_name: str = "target", width: int = 360, height: int = 220,
) -> Image.Image:
    """What β costs and buys (:meth:`~clustercam.ClusterCAM.beta_tradeoff`), drawn with Pillow.

    The line is the explained class's probability on ``X ∘ H(β)`` across β; the dashed line its
    probability on the whole image ``X``; the dot and vertical line mark the current β with its
    value. High is faithful (the map keeps what the network needs); lower β cuts the scissors
    away: a sharper, more class-specific map, usually at some cost in kept probability.
    """
    points = sorted({round(float(b), 6): float(k) for b, k in zip(betas, kept, strict=True)}.items())
    chart = Image.new("RGB", (int(width), int(height)), "white")
    draw = ImageDraw.Draw(chart)
    font, small = _font(14), _font(12)
    line = font.getbbox("Ag")[3]
    left, right, top, bottom = 44, int(width) - 14, 12 + 2 * line, int(height) - (2 * line + 12)
    draw.text((6, 4), f"p({class_name} | image × heatmap)", fill="black", font=font)
    highest = max([full, kept_at_beta, *(k for _, k in points), 1e-6]) * 1.12
    highest = min(1.0, highest) if highest <= 1.0 else highest

    def xy(b: float, p: float) -> tuple[float, float]:
        return left + (right - left) * b, bottom - (bottom - top) * p / highest

    draw.line([(left, top), (left, bottom), (right, bottom)], fill="black", width=1)
    for value in (0.0, 0.5, 1.0):
        x, _ = xy(value, 0)
        draw.line([(x, bottom), (x, bottom + 4)], fill="black")
        draw.text((x, bottom + 5), f"{value:g}", fill="black", font=small, anchor="ma")
    for fraction in (0.0, 0.5, 1.0):
        p = highest / 1.12 * fraction if fraction else 0.0
        _, y = xy(0, p)
        draw.line([(left - 4, y), (left, y)], fill="black")
        draw.text((left - 6, y), f"{p:.2f}", fill="black", font=small, anchor="rm")
    draw.text(((left + right) / 2, int(height) - 4), "β (1 = base alone)", fill="black", font=small, anchor="md")
    _, y_full = xy(0, full)
    for x in range(left, right, 8):  # dashed: the whole image
        draw.line([(x, y_full), (min(x + 4, right), y_full)], fill=(90, 90, 90), width=1)
    draw.text((right, y_full - 2), "whole image", fill=(60, 60, 60), font=small, anchor="rd")
    if len(points) > 1:
        draw.line([xy(b, k) for b, k in points], fill=BASE_COLOR, width=2)
    for b, k in points:
        x, y = xy(b, k)
        draw.ellipse([x - 2, y - 2, x + 2, y + 2], fill=BASE_COLOR)
    x, y = xy(beta, kept_at_beta)
    draw.line([(x, top), (x, bottom)], fill=SCISSORS_COLOR, width=1)
    draw.ellipse([x - 5, y - 5, x + 5, y + 5], fill=SCISSORS_COLOR, outline="black")
    label = f"β {beta:.2f}: {kept_at_beta:.2f}"
    anchor = "ld" if x < (left + right) / 2 else "rd"
    draw.text((x + (7 if anchor == "ld" else -7), max(top + line, y - 6)), label, fill="black", font=font, anchor=anchor)
    return chart
