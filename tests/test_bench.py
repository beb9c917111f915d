"""The benchmark end to end on real ImageNet photos, and its refusal of bad input folders."""

from __future__ import annotations

import argparse
import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from clustercam import METHODS
from clustercam.bench import (
    add_bench_arguments,
    choose_pairs,
    parse_option,
    read_labels,
    run_bench_command,
    run_benchmark,
)

from .conftest import ASSETS

SAMPLES = Path(__file__).resolve().parents[2] / "shared/eval/imagenet-samples"
TABLE1_COLUMNS = ("average_drop", "confidence_drop", "increase", "deletion", "insertion", "pair_share")


def finite_numbers(value: object) -> list[float]:
    """Every number in a JSON value (fails on NaN/inf, which JSON would not hold anyway)."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return []
    if isinstance(value, (int, float)):
        assert math.isfinite(value)
        return [float(value)]
    items = value.values() if isinstance(value, dict) else value
    return [number for item in items for number in finite_numbers(item)]


#: The example photographs with their ImageNet classes: the benchmark's data where the shared
#: ImageNet samples are not next to the repository.
ASSET_LABELS = {"chelsea.jpg": 285, "coffee.jpg": 967, "grace_hopper.jpg": 652, "rocket.jpg": 812}


@pytest.fixture
def labelled_photos(tmp_path: Path) -> Path:
    """The shared ImageNet samples where present, else a labelled folder of the example photos."""
    if (SAMPLES / "labels.csv").is_file():
        return SAMPLES
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in ASSET_LABELS:
        (folder / name).write_bytes((ASSETS / name).read_bytes())
    rows = [f"{name},{index}" for name, index in ASSET_LABELS.items()]
    (folder / "labels.csv").write_text("file,class_index\n" + "\n".join(rows) + "\n")
    return folder


@pytest.mark.slow
def test_bench_end_to_end_on_real_photographs(
    tmp_path: Path, labelled_photos: Path, capsys: pytest.CaptureFixture
) -> None:
    methods = ["clustercam"] + (["gradcam"] if "gradcam" in METHODS else [])
    out = tmp_path / "out"
    parser = add_bench_arguments(argparse.ArgumentParser())
    args = parser.parse_args([
        str(labelled_photos), "--methods", ",".join(methods), "--limit", "4", "--batch-size", "2", "--pairs", "2",
        "--steps", "8", "--out", str(out), "--no-progress", "--option", "clustercam.q=6", "--device", "cpu",
    ])
    assert run_bench_command(args) == 0
    printed = capsys.readouterr().out
    assert "Table 1" in printed

    for name in ("per_image.csv", "pairs.csv", "results.json", "table1.md", "table2.md", "bench.png"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    with Image.open(out / "bench.png") as plot:
        assert plot.format == "PNG" and plot.width > 300

    results = json.loads((out / "results.json").read_text())
    finite_numbers(results)
    settings = results["settings"]
    assert settings["model"] == "efficientnet_lite0" and settings["layer"] == "bn2"
    assert settings["machine"]["device"] == "cpu" and settings["machine"]["torch"]
    assert settings["images"] == 4 and settings["pairs"] == 2 and settings["methods"] == methods
    assert settings["method_options"]["clustercam"] == {"q": 6}

    with (out / "per_image.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 4 * len(methods)
    labels = {row["file"]: int(row["class_index"]) for row in csv.DictReader((labelled_photos / "labels.csv").open())}
    for method in methods:
        mine = [row for row in rows if row["method"] == method]
        summary = results["summaries"][method]
        assert [row["file"] for row in mine] == list(labels)[:4]
        assert all(int(row["label"]) == labels[row["file"]] for row in mine)
        assert all(row["target"] == row["predicted"] for row in mine)  # --target predicted
        for column in ("average_drop", "confidence_drop", "deletion", "insertion"):
            mean = np.mean([float(row[column]) for row in mine])
            assert summary[column] == pytest.approx(mean, rel=1e-6, abs=1e-9), (method, column)
        assert summary["increase"] == pytest.approx(100 * np.mean([int(row["increase"]) for row in mine]))
        for row in mine:
            y, o = float(row["y"]), float(row["o"])
            assert 0 < y <= 1 and 0 <= o <= 1
            assert float(row["confidence_drop"]) == pytest.approx(100 * (y - o) / y, rel=1e-5, abs=1e-6)
            assert float(row["average_drop"]) == pytest.approx(max(0.0, 100 * (y - o) / y), rel=1e-5, abs=1e-6)
            assert 0 <= float(row["deletion"]) <= 1 and 0 <= float(row["insertion"]) <= 1
        assert 0 <= summary["pair_share"] <= 1 and summary["pairs"] == 2
        assert summary["seconds_per_image"] > 0
        assert len(results["curves"][method]["fractions"]) == 9
    assert results["summaries"]["clustercam"]["forward_passes"] == 7  # 1 + Q (Table 2: Q = 6)
    assert results["summaries"]["clustercam"]["backward_passes"] == 0
    if "gradcam" in methods:
        assert results["summaries"]["gradcam"]["backward_passes"] >= 1

    with (out / "pairs.csv").open() as handle:
        pair_rows = list(csv.DictReader(handle))
    for method in methods:
        shares = [float(row["share"]) for row in pair_rows if row["method"] == method]
        assert len(shares) == 2 and results["summaries"][method]["pair_share"] == pytest.approx(np.mean(shares))

    table1, table2 = (out / "table1.md").read_text(), (out / "table2.md").read_text()
    for method in methods:
        assert f"| {method} |" in table1 and f"| {method} |" in table2
    assert "Average drop" in table1 and "Pair share" in table1 and "Insertion AUC" in table1
    assert "Seconds per image" in table2 and "Forward passes" in table2 and "Backward passes" in table2


def write_folder(folder: Path, rows: list[str]) -> Path:
    """Three real photos (colour, grayscale, a small one) and a labels.csv with the given rows."""
    from skimage import data

    folder.mkdir(parents=True, exist_ok=True)
    Image.fromarray(data.chelsea()).save(folder / "cat.jpg")
    Image.fromarray(data.camera()).save(folder / "camera.png")  # grayscale
    Image.fromarray(data.coffee()).resize((90, 60)).save(folder / "small_coffee.png")
    (folder / "labels.csv").write_text("file,class_index,note\n" + "\n".join(rows) + "\n")
    return folder


GOOD_ROWS = ["cat.jpg,285,Egyptian cat", "camera.png,759,reflex camera", "small_coffee.png,967,espresso"]


@pytest.mark.parametrize(
    ("bad_row", "message"),
    [
        ("camera.png,seven,x", r"line 3: class_index 'seven' is not a whole number"),
        ("missing.jpg,1,x", r"line 3: no image file 'missing.jpg'"),
        ("camera.png,1000,x", r"line 3: class_index 1000 is out of range"),
        ("camera.png,-1,x", r"line 3: class_index -1 is out of range"),
        (",5,x", r"line 3: the file name is empty"),
        ("../cat.jpg,5,x", r"line 3: '\.\./cat\.jpg' is not inside"),
    ],
)
def test_a_bad_row_is_a_clear_error(tmp_path: Path, bad_row: str, message: str) -> None:
    folder = write_folder(tmp_path / "data", [GOOD_ROWS[0], bad_row, GOOD_ROWS[2]])
    with pytest.raises(ValueError, match=message):
        run_benchmark(folder, methods=["clustercam"], device="cpu", progress=False)


def test_bad_folders_methods_and_options(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    folder = write_folder(tmp_path / "data", GOOD_ROWS)
    with pytest.raises(ValueError, match=r"has no labels\.csv"):
        run_benchmark(tmp_path, progress=False)
    with pytest.raises(ValueError, match="No data folder"):
        run_benchmark(tmp_path / "nowhere", progress=False)
    with pytest.raises(ValueError, match="Unknown method 'nosuchcam'"):
        run_benchmark(folder, methods=["clustercam", "nosuchcam"], progress=False)
    with pytest.raises(ValueError, match="Bad options"):
        run_benchmark(folder, methods=["clustercam"], method_options={"clustercam": {"colour": 3}}, device="cpu", progress=False)
    with pytest.raises(ValueError, match="not benchmarked"):
        run_benchmark(folder, methods=["clustercam"], method_options={"scorecam": {}}, device="cpu", progress=False)
    with pytest.raises(ValueError, match="target must be"):
        run_benchmark(folder, target="random", progress=False)
    (tmp_path / "cols").mkdir()
    (tmp_path / "cols" / "labels.csv").write_text("image,label\ncat.jpg,1\n")
    with pytest.raises(ValueError, match="lacks the column"):
        read_labels(tmp_path / "cols")
    with pytest.raises(ValueError, match=r"METHOD\.KEY=VALUE"):
        parse_option("q=6")
    assert parse_option("clustercam.beta=0.5") == ("clustercam", "beta", 0.5)
    assert parse_option("clustercam.clustering=spectral") == ("clustercam", "clustering", "spectral")

    # Through the command: exit status 2 and the message, no traceback.
    (folder / "labels.csv").write_text("file,class_index\ncat.jpg,oops\n")
    args = add_bench_arguments(argparse.ArgumentParser()).parse_args([str(folder), "--no-progress", "--out", str(tmp_path / "o")])
    assert run_bench_command(args) == 2
    assert "line 2: class_index 'oops'" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_choose_pairs_skips_same_class_neighbours() -> None:
    assert choose_pairs([1, 2, 3, 4, 5], 5) == [(0, 1), (2, 3)]
    assert choose_pairs([1, 1, 2, 3, 3], 5) == [(1, 2)]
    assert choose_pairs([1, 2, 3, 4], 1) == [(0, 1)]
    assert choose_pairs([7, 7, 7], 3) == []


@pytest.mark.slow
def test_bench_on_own_folder_with_labels_and_no_curves(tmp_path: Path) -> None:
    """Grayscale and tiny images load like uploads; target=label; --steps 0 leaves the curves out."""
    folder = write_folder(tmp_path / "data", GOOD_ROWS)
    report = run_benchmark(
        folder, methods=["clustercam"], target="label", pairs=1, n_steps=0, batch_size=3,
        device="cpu", progress=False, out=tmp_path / "out",
    )
    assert [row["target"] for row in report.rows] == [285, 759, 967]
    assert all(row["deletion"] is None for row in report.rows)
    summary = report.summaries["clustercam"]
    assert summary.images == 3 and summary.deletion is None and summary.pairs == 1
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert results["summaries"]["clustercam"]["deletion"] is None
    assert "—" in (tmp_path / "out" / "table1.md").read_text()
    assert (tmp_path / "out" / "bench.png").is_file()
