"""Reading user images safely and sizing them for a network.

Every image a user hands us passes through :func:`load_image`: it refuses non-images, truncated
files and decompression bombs with an :class:`ImageError` (a ``ValueError`` with a message fit for
a person), honours the EXIF orientation, takes the first frame of animations and converts any
mode (grayscale, palette, RGBA, CMYK, 16-bit, float) to 8-bit RGB.
"""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from . import environment

#: Largest image accepted, in pixels (width × height); ``CLUSTERCAM_MAX_PIXELS`` overrides it.
DEFAULT_MAX_PIXELS = environment.read("CLUSTERCAM_MAX_PIXELS")
#: Widest aspect ratio kept when resizing for a network; wider images are squeezed to it.
DEFAULT_MAX_ASPECT = 3.0

ImageSource = str | os.PathLike | bytes | BinaryIO | Image.Image | np.ndarray


class ImageError(ValueError):
    """An input that is not a usable image; the message says why in plain words."""


def load_image(source: ImageSource, *, max_pixels: int | None = None) -> Image.Image:
    """Open ``source`` as an 8-bit RGB image, refusing anything unsafe or unreadable.

    Args:
        source: a path, raw bytes, a binary file object, a PIL image or an ``H×W`` / ``H×W×C``
            array (uint8, or float in [0, 1]).
        max_pixels: largest accepted width × height (default :data:`DEFAULT_MAX_PIXELS`); checked
            from the header, before any pixel is decoded.

    Raises:
        ImageError: not an image, truncated or corrupt, too large, or zero-sized.
    """
    limit = DEFAULT_MAX_PIXELS if max_pixels is None else max_pixels
    if isinstance(source, np.ndarray):
        return to_rgb(_array_to_image(source))
    image = source if isinstance(source, Image.Image) else _open(source, limit)
    width, height = image.size
    if width < 1 or height < 1:
        raise ImageError("The image is empty (zero width or height).")
    if width * height > limit:
        raise ImageError(
            f"The image is {width}×{height} = {width * height / 1e6:.1f} megapixels; "
            f"the limit is {limit / 1e6:.0f} megapixels. Please use a smaller image."
        )
    try:
        if getattr(image, "n_frames", 1) > 1:
            image.seek(0)  # animated GIF/WebP/APNG: explain the first frame
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image.load()
            image = ImageOps.exif_transpose(image) or image
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        raise ImageError(f"The image file is truncated or corrupt ({error}).") from error
    return to_rgb(image)


def _open(source: str | os.PathLike | bytes | BinaryIO, limit: int) -> Image.Image:
    if isinstance(source, bytes):
        source = io.BytesIO(source)
    elif isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.is_file():
            raise ImageError(f"No image file at {path}.")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            return Image.open(source)
    except UnidentifiedImageError as error:
        raise ImageError("This file is not an image that can be read (PNG, JPEG, WebP, GIF, BMP, TIFF, …).") from error
    except Image.DecompressionBombError as error:
        raise ImageError(
            f"The image is far over the limit of {limit / 1e6:.0f} megapixels (refused as a possible "
            "decompression bomb). Please use a smaller image."
        ) from error
    except OSError as error:
        raise ImageError(f"The image file is truncated or corrupt ({error}).") from error


def _array_to_image(array: np.ndarray) -> Image.Image:
    if array.ndim not in (2, 3) or array.size == 0:
        raise ImageError(f"Expected an H×W or H×W×C image array, got shape {array.shape}.")
    if array.dtype != np.uint8:
        values = np.nan_to_num(array.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
        scale = 255.0 if values.max(initial=0.0) <= 1.0 else 1.0
        array = np.clip(values * scale, 0, 255).astype(np.uint8)
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim == 3 and array.shape[2] not in (3, 4):
        raise ImageError(f"Expected 1, 3 or 4 colour channels, got {array.shape[2]}.")
    return Image.fromarray(array)


def to_rgb(image: Image.Image) -> Image.Image:
    """Convert any PIL mode to 8-bit RGB; transparency is composited onto white."""
    if image.mode == "RGB":
        return image
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        values = np.asarray(image, dtype=np.float64)
        values = np.nan_to_num(values, nan=0.0, posinf=0.0, neginf=0.0)
        peak = values.max(initial=0.0)
        if image.mode == "F" and peak <= 1.0:
            values = values * 255.0
        elif peak > 255.0:
            values = values / 257.0  # 16-bit range onto 8 bits
        return Image.fromarray(np.clip(values, 0, 255).astype(np.uint8)).convert("RGB")
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(canvas, rgba).convert("RGB")
    return image.convert("RGB")


def check_has_content(image: Image.Image, *, tolerance: int = 2) -> Image.Image:
    """Refuse a flat image (one colour, up to ``tolerance`` levels of noise): it has nothing to explain.

    Such an input makes every feature map near-constant and every masked input equal to the
    image itself, so any heatmap drawn from it would be noise.
    """
    small = image.convert("RGB")
    small.thumbnail((64, 64))
    pixels = np.asarray(small, dtype=np.int16)
    if int(pixels.max()) - int(pixels.min()) <= tolerance:
        raise ImageError(
            "The image is a single flat colour: there is nothing in it for the network to recognise "
            "or for an explanation to point at. Please use a photograph."
        )
    return image


def network_size(
    width: int,
    height: int,
    shorter_side: int,
    *,
    max_aspect: float = DEFAULT_MAX_ASPECT,
    multiple: int = 32,
) -> tuple[int, int]:
    """Input size (width, height) for a network: shorter side ``shorter_side``, aspect kept.

    The aspect ratio is clamped to ``max_aspect`` (a 4000×3 strip becomes 672×224, not
    298,667×224) and the longer side is rounded to a multiple of ``multiple`` (the network's
    stride), so that the feature grid covers the input exactly.
    """
    if width < 1 or height < 1:
        raise ImageError("The image is empty (zero width or height).")
    aspect = min(max(width, height) / min(width, height), max_aspect)
    longer = max(multiple, round(shorter_side * aspect / multiple) * multiple)
    return (longer, shorter_side) if width >= height else (shorter_side, longer)


#: Photographs' usual proportions (width:height, landscape): 4:3 (most cameras and phones), 3:2 as
#: ImageNet's 500×333 photographs have it (a longer side of 352 at the network) and exactly (320),
#: 16:9 (wide screens) and the near-square 8:7 (500×416 … 500×465 and other crops between 1.07
#: and 1.21, a longer side of 256). With the square, 98 % of 500 ImageNet photographs
#: (``../shared/eval/imagenet-samples``) have one of these shapes at the network (93 % without
#: 8:7; the other 2 % are wider than 16:9).
COMMON_ASPECTS: tuple[tuple[int, int], ...] = ((4, 3), (500, 333), (3, 2), (16, 9), (8, 7))


def common_shapes(shorter_side: int) -> list[tuple[int, int]]:
    """The input shapes ``(height, width)`` most photographs get from :func:`network_size`: the
    square first, then each of :data:`COMMON_ASPECTS` landscape and portrait (compiled graphs are
    built for these, so that a typical upload runs compiled)."""
    shapes = [(shorter_side, shorter_side)]
    for width, height in COMMON_ASPECTS:
        for w, h in ((width, height), (height, width)):
            columns, rows = network_size(w * 100, h * 100, shorter_side)
            shapes.append((rows, columns))
    return list(dict.fromkeys(shapes))


def resize_for_network(
    image: Image.Image, shorter_side: int, *, max_aspect: float = DEFAULT_MAX_ASPECT
) -> Image.Image:
    """Resize ``image`` (RGB) to :func:`network_size`, with antialiasing."""
    size = network_size(image.width, image.height, shorter_side, max_aspect=max_aspect)
    if size == image.size:
        return image
    return image.resize(size, Image.Resampling.BILINEAR, reducing_gap=3.0)


def side_by_side(left: Image.Image, right: Image.Image, height: int | None = None) -> Image.Image:
    """Two images next to each other at the same height (the two-object pictures)."""
    height = height or min(left.height, right.height)
    parts = [
        image.convert("RGB").resize(
            (max(1, round(image.width * height / image.height)), height), Image.Resampling.BILINEAR
        )
        for image in (left, right)
    ]
    canvas = Image.new("RGB", (parts[0].width + parts[1].width, height))
    canvas.paste(parts[0], (0, 0))
    canvas.paste(parts[1], (parts[0].width, 0))
    return canvas
