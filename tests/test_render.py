"""Pictures: overlays, frames in the paper's colours, tile sheets, score plots."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import clustercam
from clustercam import render


@pytest.fixture(scope="module")
def explained(spec, cat_and_coffee):
    x = spec.preprocess(cat_and_coffee)
    result = clustercam.ClusterCAM(spec, q=4, beta=0.5)(x, spec.class_index("Egyptian cat"))
    return spec.prepare(cat_and_coffee), result[0]


def test_overlay_keeps_the_image_size_and_colours_the_hot_region(cat_and_coffee):
    heatmap = np.zeros((10, 30), dtype=np.float32)
    heatmap[:, :15] = 1.0  # the left half is hot
    picture = np.asarray(render.overlay(cat_and_coffee, heatmap, cmap="jet", alpha=1.0), dtype=int)
    assert picture.shape == (300, 901, 3)
    assert picture[150, 100, 0] > 100 and picture[150, 100, 2] < 50  # jet's red
    assert picture[150, 800, 2] > 100 and picture[150, 800, 0] < 50  # jet's dark blue
    with pytest.raises(ValueError, match="alpha"):
        render.overlay(cat_and_coffee, heatmap, alpha=1.5)


def test_resize_heatmap_is_float32_clipped_to_the_unit_interval():
    resized = render.resize_heatmap(torch.tensor([[0.0, 2.0], [-1.0, float("nan")]]), (8, 6))
    assert resized.shape == (6, 8) and resized.dtype == np.float32
    assert resized.min() >= 0 and resized.max() <= 1


def test_base_is_framed_solid_and_scissors_dashed(explained):
    """Told apart by more than colour: the base frame is solid, the scissors frame dashed."""
    prepared, one = explained
    tiles = render.cluster_tiles(one, prepared.size)
    assert len(tiles) == 4
    assert tiles[one.base_index].getpixel((1, 1)) == render.BASE_COLOR
    assert tiles[one.scissors_index].getpixel((1, 1)) == render.SCISSORS_COLOR
    base_edge = np.asarray(tiles[one.base_index])[1]
    scissors_edge = np.asarray(tiles[one.scissors_index])[1]
    assert (base_edge == render.BASE_COLOR).all(axis=1).all()  # solid along the whole top edge
    framed = (scissors_edge == render.SCISSORS_COLOR).all(axis=1)
    assert 0.3 < framed.mean() < 0.7  # dashes and gaps
    assert np.count_nonzero(np.diff(framed.astype(int))) >= 6
    others = [i for i in range(4) if i not in (one.base_index, one.scissors_index)]
    assert all(tiles[i].getpixel((1, 1)) not in (render.BASE_COLOR, render.SCISSORS_COLOR) for i in others)
    captions = render.cluster_captions(one)
    assert "· BASE" in captions[one.base_index] and "· SCISSORS" in captions[one.scissors_index]
    assert f"{one.cluster_sizes[0]} maps" in captions[0]


def test_masked_image_shows_the_baseline_colour_where_the_mask_is_zero():
    image = Image.new("RGB", (4, 2), (200, 10, 10))
    mask = np.array([[1.0, 1.0, 0.0, 0.0], [1.0, 1.0, 0.0, 0.0]], dtype=np.float32)
    shown = np.asarray(render.masked_image(image, mask, (127, 127, 127)))
    assert shown[0, 0].tolist() == [200, 10, 10] and shown[0, 3].tolist() == [127, 127, 127]


def test_sheets_and_plot(explained):
    prepared, one = explained
    clusters = render.cluster_sheet(one, prepared, title="clusters")
    masked = render.masked_sheet(one, prepared, (127, 127, 127))
    assert clusters.width > 4 * 200 and masked.width == clusters.width
    plot = render.scores_plot(one, class_name="Egyptian cat")
    assert plot.mode == "RGB" and plot.size == (640, 300)
    with pytest.raises(ValueError, match="captions"):
        render.tile_sheet([prepared], [])


def test_the_scores_chart_shows_every_bar_and_marks_base_and_scissors_without_colour():
    from types import SimpleNamespace

    scores = torch.tensor([0.3, 0.0004, 0.9, 0.2])  # a typical scissors score: almost zero
    chart = np.asarray(render.scores_plot(SimpleNamespace(scores=scores, base_index=2, scissors_index=1)))
    slot = (640 - 12 - 16) / 4

    def column(q: int) -> np.ndarray:
        return chart[:, round(16 + (q + 0.5) * slot)]

    base_rows = np.flatnonzero((column(2) == render.BASE_COLOR).all(axis=1))
    scissors_rows = np.flatnonzero((column(1) == render.SCISSORS_COLOR).all(axis=1))
    grey_rows = np.flatnonzero((column(0) == (150, 160, 170)).all(axis=1))
    assert len(scissors_rows) >= 2  # still visible
    assert len(base_rows) > 2.5 * len(grey_rows) > 0  # 0.9 against 0.3: heights in proportion


@pytest.mark.parametrize("cmap", render.CMAPS)
def test_the_colormap_lookup_table_gives_matplotlibs_colours(cmap):
    from matplotlib import colormaps

    values = np.linspace(0, 1, 20001, dtype=np.float32).reshape(1, -1)  # 0, 1 and every bin edge region
    expected = (colormaps[cmap](values)[..., :3] * 255).round().astype(np.uint8)
    assert np.array_equal(np.asarray(render.colorize(values, cmap)), expected)
