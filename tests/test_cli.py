"""``python -m clustercam explain``: files written, sizes, summary; one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from clustercam.cli import main

from .conftest import ASSETS, ROOT


def test_explain_one_image_writes_every_output(tmp_path, capsys):
    out = tmp_path / "out"
    status = main(["explain", str(ASSETS / "cat_and_coffee.jpg"), "--q", "6", "--beta", "0.5", "--target", "Egyptian cat", "--out", str(out)])
    assert status == 0
    assert {p.name for p in out.iterdir()} == {"overlay.png", "clusters.png", "masked.png", "heatmap.npy", "summary.json"}
    heatmap = np.load(out / "heatmap.npy")
    assert heatmap.dtype == np.float32 and heatmap.shape == (300, 901)  # the image's own size
    assert heatmap.min() >= 0 and heatmap.max() <= 1
    assert heatmap[:, :450].sum() / heatmap.sum() >= 0.8  # the cat is on the left
    summary = json.loads((out / "summary.json").read_text())
    assert summary["target"]["name"] == "Egyptian cat" and summary["target"]["index"] == 285
    assert len(summary["predicted_top5"]) == 5 and len(summary["scores"]) == 6
    assert summary["base_index"] == int(np.argmax(summary["scores"]))
    assert summary["scissors_index"] == int(np.argmin(summary["scores"]))
    assert summary["forward_passes"] == 7 and summary["device"] == "cpu" and summary["seconds"] > 0
    assert summary["formula"] == "β·B − (1 − β)·S (eq. 22)" and summary["in_paper"] is True  # what was computed
    assert Image.open(out / "overlay.png").size == (901, 300)
    assert "Egyptian cat" in capsys.readouterr().out


def test_explain_a_folder_with_spectral_clustering_and_a_broken_file(tmp_path, capsys):
    folder = tmp_path / "images"
    folder.mkdir()
    Image.open(ASSETS / "chelsea.jpg").save(folder / "cat.png")
    Image.open(ASSETS / "coffee.jpg").convert("L").save(folder / "cup.jpg")
    (folder / "broken.jpg").write_bytes(b"not a jpeg")
    out = tmp_path / "out"
    status = main(["explain", str(folder), "--clustering", "spectral", "--q", "4", "--eigenvectors", "3", "--out", str(out), "--no-progress"])
    assert status == 1  # one image failed, the others were explained
    assert sorted(p.name for p in out.iterdir()) == ["cat", "cup"]
    assert json.loads((out / "cup" / "summary.json").read_text())["predicted_top5"][0]["name"] == "espresso"
    assert "skipped broken.jpg" in capsys.readouterr().err


def test_baseline_methods_write_overlay_and_heatmap(tmp_path):
    from clustercam.methods import METHODS

    other = next((name for name in METHODS if name != "clustercam"), None)
    if other is None:
        pytest.skip("no baseline registered")
    out = tmp_path / "out"
    assert main(["explain", str(ASSETS / "chelsea.jpg"), "--method", "gradcam", "--out", str(out)]) == 0
    assert {p.name for p in out.iterdir()} == {"overlay.png", "heatmap.npy", "summary.json"}


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["explain", "missing.jpg"], "No such file or folder"),
        (["explain", "{assets}/chelsea.jpg", "--q", "1"], "Q must be"),
        (["explain", "{assets}/chelsea.jpg", "--beta", "2"], "β must be between 0 and 1"),
        (["explain", "{assets}/chelsea.jpg", "--layer", "nope"], "no layer named 'nope'"),
        (["explain", "{assets}/chelsea.jpg", "--target", "unicorn"], "Unknown class name"),
        (["explain", "{assets}/chelsea.jpg", "--model", "resnet9000"], "Unknown model"),
        (["explain", "{assets}/ATTRIBUTION.md"], "not an image"),
    ],
)
def test_errors_are_one_line_and_a_non_zero_exit(tmp_path, capsys, arguments, message):
    arguments = [a.format(assets=ASSETS) for a in arguments] + ["--out", str(tmp_path)]
    assert main(arguments) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("clustercam: error:") and message in err and "\n" not in err


def test_module_entry_point_lists_models_and_layers():
    models = subprocess.run([sys.executable, "-m", "clustercam", "models"], capture_output=True, text=True, cwd=ROOT, check=True)
    assert models.stdout.splitlines()[0].startswith("efficientnet_lite0")
    layers = subprocess.run([sys.executable, "-m", "clustercam", "layers"], capture_output=True, text=True, cwd=ROOT, check=True)
    assert layers.stdout.strip().splitlines()[-1].startswith("bn2") and "(default)" in layers.stdout


def _bad_inputs(folder):
    """Files a stranger might hand the CLI, each with the message it should get."""
    import io

    bomb = folder / "bomb.png"
    Image.new("1", (20000, 20000)).save(bomb)
    flat = folder / "flat.png"
    Image.new("RGB", (300, 200), (127, 127, 127)).save(flat)
    truncated = folder / "truncated.jpg"
    buffer = io.BytesIO()
    Image.effect_noise((256, 256), 64).convert("RGB").save(buffer, format="JPEG")
    truncated.write_bytes(buffer.getvalue()[:2000])
    empty = folder / "empty.png"
    empty.write_bytes(b"")
    return [(bomb, "megapixels"), (flat, "single flat colour"), (truncated, "truncated or corrupt"), (empty, "not an image")]


def test_bad_files_get_one_line_each_and_a_non_zero_exit(tmp_path, capsys):
    folder = tmp_path / "bad"
    folder.mkdir()
    for path, message in _bad_inputs(folder):
        assert main(["explain", str(path), "--out", str(tmp_path / "out")]) == 1
        err = capsys.readouterr().err.strip()
        assert err.startswith("clustercam: error:") and message in err and "\n" not in err, err


@pytest.mark.parametrize("mode", ["L", "P", "RGBA", "CMYK", "I;16"])
def test_odd_image_modes_are_explained(tmp_path, mode):
    source = Image.open(ASSETS / "chelsea.jpg")
    if mode == "I;16":
        image = Image.fromarray(np.asarray(source.convert("L"), dtype=np.uint16) * 257)
    else:
        image = source.convert(mode)
    path = tmp_path / ("cat.tif" if mode == "CMYK" else "cat.png")
    image.save(path)
    out = tmp_path / "out"
    assert main(["explain", str(path), "--q", "4", "--out", str(out)]) == 0
    assert np.load(out / "heatmap.npy").shape == (300, 451)


def test_presets_and_the_cluster_quality_in_the_summary(tmp_path, capsys):
    from clustercam.methods import PRESETS

    out = tmp_path / "paper"
    assert main(["explain", str(ASSETS / "coffee.jpg"), "--preset", "paper", "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    paper = PRESETS["paper"]
    assert summary["preset"] == "paper"
    assert [summary[key] for key in ("q", "beta", "normalization", "output", "combination")] == [
        paper[key] for key in ("q", "beta", "normalization", "output", "combination")
    ]
    quality = summary["cluster_quality"]
    assert summary["formula"] == "β·B − (1 − β)·S (eq. 22)" and summary["in_paper"] is True  # paper: eq. 22
    assert sorted(int(q) for q in quality) == list(range(2, 9))
    assert all(-1 <= values["silhouette"] <= 1 and values["calinski_harabasz"] > 0 for values in quality.values())
    best = max(quality, key=lambda q: quality[q]["silhouette"])
    assert f"highest at Q = {best}" in capsys.readouterr().out
    # explicit options override the preset; --no-quality leaves the scores out
    out = tmp_path / "override"
    assert main(["explain", str(ASSETS / "coffee.jpg"), "--preset", "paper", "--q", "4", "--no-quality", "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["q"] == 4 and summary["normalization"] == paper["normalization"] and "cluster_quality" not in summary


def test_spectral_similarity_from_the_command_line(tmp_path):
    out = tmp_path / "out"
    status = main(["explain", str(ASSETS / "cat_and_coffee.jpg"), "--clustering", "spectral", "--similarity", "ssim",
                   "--q", "3", "--target", "Egyptian cat", "--no-quality", "--out", str(out)])
    assert status == 0
    heatmap = np.load(out / "heatmap.npy")
    assert heatmap[:, :450].sum() / heatmap.sum() >= 0.7  # shape-based similarity: the cat, on the left
