"""Reading images safely: odd modes, orientation, animations, broken and oversized files."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from clustercam.imaging import ImageError, load_image, network_size, side_by_side


def encoded(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


@pytest.mark.parametrize("mode", ["L", "P", "RGBA", "LA", "CMYK", "I", "I;16", "F", "1"])
def test_every_mode_becomes_rgb(mode):
    source = Image.new("RGB", (40, 30), (200, 100, 50)).convert(mode) if mode not in ("I;16", "F", "I") else None
    if mode == "I;16":
        source = Image.fromarray(np.full((30, 40), 65535, dtype=np.uint16))
    if mode == "I":
        source = Image.fromarray(np.full((30, 40), 40000, dtype=np.int32))
    if mode == "F":
        source = Image.fromarray(np.full((30, 40), 0.5, dtype=np.float32))
    image = load_image(source)
    assert image.mode == "RGB" and image.size == (40, 30)
    pixels = np.asarray(image)
    assert pixels.min() >= 0 and pixels.max() <= 255
    if mode == "I;16":
        assert pixels.max() == 255  # full 16-bit range maps to full 8-bit range
    if mode == "F":
        assert abs(int(pixels[0, 0, 0]) - 128) <= 1


def test_transparent_pixels_are_composited_on_white():
    rgba = Image.new("RGBA", (4, 4), (255, 0, 0, 0))
    assert np.asarray(load_image(rgba))[0, 0].tolist() == [255, 255, 255]


def test_sixteen_bit_png_from_bytes():
    data = encoded(Image.fromarray((np.arange(64 * 64, dtype=np.uint16) * 16).reshape(64, 64)), "PNG")
    image = load_image(data)
    assert image.mode == "RGB" and np.asarray(image).max() > 200


def test_exif_orientation_is_honoured():
    image = Image.new("RGB", (60, 20), (0, 0, 255))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise on display
    rotated = load_image(encoded(image, "JPEG", exif=exif.tobytes()))
    assert rotated.size == (20, 60)


def test_animated_gif_gives_its_first_frame():
    frames = [Image.new("RGB", (16, 16), color) for color in ((255, 0, 0), (0, 255, 0))]
    data = io.BytesIO()
    frames[0].save(data, format="GIF", save_all=True, append_images=frames[1:], duration=50, loop=0)
    first = np.asarray(load_image(data.getvalue()))[8, 8]
    assert first[0] > 200 and first[1] < 50


def test_not_an_image():
    with pytest.raises(ImageError, match="not an image"):
        load_image(b"%PDF-1.4 definitely not a picture")


def test_truncated_jpeg():
    data = encoded(Image.effect_noise((256, 256), 64).convert("RGB"), "JPEG")
    with pytest.raises(ImageError, match="truncated or corrupt"):
        load_image(data[: len(data) // 3])


def test_pixel_limit_is_checked_before_decoding():
    # a 20000×20000 PNG header: 400 MP, refused without decoding its pixels
    bomb = encoded(Image.new("1", (20000, 20000)), "PNG")
    assert len(bomb) < 1_000_000
    with pytest.raises(ImageError, match="megapixels"):
        load_image(bomb)
    with pytest.raises(ImageError, match="limit is 1 megapixels"):
        load_image(Image.new("RGB", (1001, 1000)), max_pixels=1_000_000)


def test_missing_file(tmp_path):
    with pytest.raises(ImageError, match="No image file"):
        load_image(tmp_path / "nothing.png")


def test_arrays_are_accepted():
    assert load_image(np.zeros((5, 6, 3), dtype=np.uint8)).size == (6, 5)
    assert load_image(np.ones((5, 6), dtype=np.float32)).getpixel((0, 0)) == (255, 255, 255)
    with pytest.raises(ImageError, match="shape"):
        load_image(np.zeros((2, 3, 4, 5)))


@pytest.mark.parametrize(
    ("size", "expected"),
    [((4000, 3), (672, 224)), ((3, 4000), (224, 672)), ((1, 1), (224, 224)), ((640, 480), (288, 224)), ((451, 300), (352, 224))],
)
def test_network_size_bounds_aspect_and_rounds_to_the_stride(size, expected):
    assert network_size(*size, 224) == expected


def test_side_by_side():
    pair = side_by_side(Image.new("RGB", (30, 20), "red"), Image.new("RGB", (20, 40), "blue"))
    assert pair.size == (30 + 10, 20)
    assert pair.getpixel((0, 0)) == (255, 0, 0) and pair.getpixel((39, 0)) == (0, 0, 255)


@pytest.mark.parametrize("color", [(0, 0, 0), (127, 127, 127), (255, 255, 255)])
def test_flat_images_are_refused_with_a_reason(color):
    from clustercam.imaging import check_has_content

    with pytest.raises(ImageError, match="single flat colour"):
        check_has_content(Image.new("RGB", (300, 200), color))
    noisy = np.full((40, 40, 3), 127, dtype=np.uint8)
    noisy[10:20, 10:20] = 200
    assert check_has_content(Image.fromarray(noisy)).size == (40, 40)
