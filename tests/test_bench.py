"""The benchmark end to end on real ImageNet photos, and its refusal of bad input folders."""

from __future__ import annotations

import argparse
import csv
import dataclasses
import inspect
import json
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from clustercam import METHODS
from clustercam.bench.data import draw_pairs, read_labels, split_of
from clustercam.bench.distributed import Ranks
from clustercam.bench.plan import make_plan
from clustercam.bench.records import fingerprint
from clustercam.bench.runner import run_benchmark
from clustercam.bench.settings import BenchmarkSettings
from clustercam.cli import add_bench_arguments, parse_option, run_bench_command
from clustercam.zoo import load_model

from .conftest import ASSETS, ROOT

EVAL = Path(__file__).resolve().parents[2] / "shared/eval"
SAMPLES = EVAL / "imagenet-samples"
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
    tmp_path: Path, labelled_photos: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    from clustercam.bench import report as report_module

    writes = []
    write_report = report_module.write_report
    monkeypatch.setattr(report_module, "write_report", lambda *a, **k: writes.append(a) or write_report(*a, **k))
    methods = ["clustercam"] + (["gradcam"] if "gradcam" in METHODS else [])
    out = tmp_path / "out"
    parser = add_bench_arguments(argparse.ArgumentParser())
    args = parser.parse_args([
        str(labelled_photos), "--methods", ",".join(methods), "--limit", "4", "--batch-size", "2", "--pairs", "2",
        "--steps", "8", "--out", str(out), "--no-progress", "--option", "clustercam.q=6", "--device", "cpu",
        "--split", "all", "--allow-tuning", "--resamples", "500",
    ])
    assert run_bench_command(args) == 0
    printed = capsys.readouterr().out
    assert "Table 1" in printed and "Differences to clustercam" in printed
    assert len(writes) == 1  # the tables (and bench.png) drawn once, where the run was told to write them

    for name in ("per_image.csv", "pairs.csv", "intervals.csv", "results.json", "table1.md", "table2.md", "bench.png"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    with Image.open(out / "bench.png") as plot:
        assert plot.format == "PNG" and plot.width > 300

    results = json.loads((out / "results.json").read_text())
    finite_numbers(results)
    settings = results["settings"]
    assert settings["model"] == "efficientnet_lite0" and settings["layer"] == "bn2"
    assert settings["machine"]["device"] == "cpu" and settings["machine"]["torch"]
    assert settings["images"] == 4 and settings["methods"] == methods and settings["split"] == "all"
    assert settings["pairs"] + settings["pairs_same_target"] == 2
    assert settings["method_options"]["clustercam"] == {"q": 6} and settings["reference"] == "clustercam"

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
        assert summary["pairs"] == settings["pairs"]
        assert summary["pair_share"] is None or 0 <= summary["pair_share"] <= 1
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
        assert len(shares) == settings["pairs"] and results["summaries"][method]["pair_share"] == pytest.approx(np.mean(shares))

    # The intervals: each method minus Cluster-CAM, paired over the same images.
    if "gradcam" in methods:
        interval = results["intervals"]["gradcam"]["average_drop"]
        mine = [float(r["average_drop"]) for r in rows if r["method"] == "gradcam"]
        theirs = [float(r["average_drop"]) for r in rows if r["method"] == "clustercam"]
        assert interval["n"] == 4
        assert interval["estimate"] == pytest.approx(np.mean(mine) - np.mean(theirs))
        assert interval["low"] <= interval["estimate"] <= interval["high"]
        assert set(results["intervals"]["gradcam"]) >= {"average_drop", "confidence_drop", "increase", "deletion", "insertion"}
        with (out / "intervals.csv").open() as handle:
            assert {row["metric"] for row in csv.DictReader(handle)} >= {"average_drop", "insertion"}

    table1, table2 = (out / "table1.md").read_text(), (out / "table2.md").read_text()
    for method in methods:
        assert f"| {method} |" in table1 and f"| {method} |" in table2
    assert "Average drop" in table1 and "Pair share" in table1 and "Insertion AUC" in table1
    assert "Seconds per image" in table2 and "Forward passes" in table2 and "Backward passes" in table2

    # ADCC (on by default): per image, its parts and harmonic mean; the coherency's passes counted apart
    assert "ADCC (%)" in table1 and "Coherency (%)" in table1 and "ADCC's forward passes" in table2
    for method in methods:
        mine, summary = [row for row in rows if row["method"] == method], results["summaries"][method]
        for row in mine:
            drop, coherent, complex_ = float(row["average_drop"]) / 100, float(row["coherency"]), float(row["complexity"])
            assert 0 <= coherent <= 1 and 0 <= complex_ <= 1
            assert float(row["adcc"]) == pytest.approx(3 / (1 / coherent + 1 / (1 - complex_) + 1 / (1 - drop)), rel=1e-6)
        assert summary["adcc"] == pytest.approx(100 * np.mean([float(row["adcc"]) for row in mine]), rel=1e-6)
        assert summary["coherency_forward_passes"] == summary["forward_passes"]  # the method once more per image
        assert summary["coherency_backward_passes"] == summary["backward_passes"]
    if "gradcam" in methods:
        assert {"adcc", "coherency", "complexity"} <= set(results["intervals"]["gradcam"])


def write_folder(folder: Path, rows: list[str]) -> Path:
    """Three real photos (colour, grayscale, a small one) and a labels.csv with the given rows."""
    from skimage import data

    folder.mkdir(parents=True, exist_ok=True)
    Image.fromarray(data.chelsea()).save(folder / "cat.jpg")
    Image.fromarray(data.camera()).save(folder / "camera.png")  # grayscale
    Image.fromarray(data.coffee()).resize((90, 60)).save(folder / "small_coffee.png")
    (folder / "labels.csv").write_text("file,class_index,note\n" + "\n".join(rows) + "\n")
    return folder


def run_all(folder: Path, **options):
    """run_benchmark on every image of a small test folder (whatever part each one is in)."""
    return run_benchmark(folder, split="all", allow_tuning=True, progress=False, **options)


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
        run_all(folder, methods=["clustercam"], device="cpu")


def test_bad_folders_methods_and_options(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    folder = write_folder(tmp_path / "data", GOOD_ROWS)
    with pytest.raises(ValueError, match=r"has no labels\.csv"):
        run_all(tmp_path)
    with pytest.raises(ValueError, match="No data folder"):
        run_all(tmp_path / "nowhere")
    with pytest.raises(ValueError, match="Unknown method 'nosuchcam'"):
        run_all(folder, methods=["clustercam", "nosuchcam"])
    with pytest.raises(ValueError, match="Unknown preset 'best'; choose from eq22"):
        run_all(folder, methods=["clustercam:best"])
    with pytest.raises(ValueError, match="look like KEY=VALUE"):
        run_all(folder, methods=["clustercam@beta"])
    with pytest.raises(ValueError, match="Only Cluster-CAM has presets"):
        run_all(folder, methods=["gradcam:paper"])
    with pytest.raises(ValueError, match="Bad options"):
        run_all(folder, methods=["clustercam"], method_options={"clustercam": {"colour": 3}}, device="cpu")
    with pytest.raises(ValueError, match="not benchmarked"):
        run_all(folder, methods=["clustercam"], method_options={"scorecam": {}}, device="cpu")
    with pytest.raises(ValueError, match="reference method 'gradcam' is not among"):
        run_all(folder, methods=["clustercam"], reference="gradcam", device="cpu")
    with pytest.raises(ValueError, match="target must be"):
        run_all(folder, target="random")
    (tmp_path / "cols").mkdir()
    (tmp_path / "cols" / "labels.csv").write_text("image,label\ncat.jpg,1\n")
    with pytest.raises(ValueError, match="lacks the column"):
        read_labels(tmp_path / "cols")
    with pytest.raises(ValueError, match=r"METHOD\.KEY=VALUE"):
        parse_option("q=6")
    assert parse_option("clustercam.beta=0.5") == ("clustercam", "beta", 0.5)
    assert parse_option("clustercam.clustering=spectral") == ("clustercam", "clustering", "spectral")
    assert parse_option("clustercam:faithful.q=6") == ("clustercam:faithful", "q", 6)

    # Through the command: exit status 2 and the message, no traceback.
    (folder / "labels.csv").write_text("file,class_index\ncat.jpg,oops\n")
    args = add_bench_arguments(argparse.ArgumentParser()).parse_args(
        [str(folder), "--no-progress", "--out", str(tmp_path / "o"), "--split", "all", "--allow-tuning"])
    assert run_bench_command(args) == 2
    assert "line 2: class_index 'oops'" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_pairs_are_disjoint_of_different_labels_and_seeded() -> None:
    labels = [i % 7 for i in range(60)]
    pairs = draw_pairs(labels)
    used = [index for pair in pairs for index in pair]
    assert len(used) == len(set(used))  # every image in at most one pair
    assert all(labels[i] != labels[j] for i, j in pairs)
    assert len(pairs) == 30  # every image can be paired here
    assert draw_pairs(labels) == pairs  # same seed, same pairs
    assert draw_pairs(labels, seed=1) != pairs
    assert draw_pairs(labels, 5) == pairs[:5]
    assert sorted(i for pair in pairs for i in pair) == list(range(60))
    assert draw_pairs([7, 7, 7]) == []  # one label: nothing to pair
    assert draw_pairs([1, 1, 2]) in ([(0, 2)], [(1, 2)], [(2, 0)], [(2, 1)])
    with pytest.raises(ValueError, match="not be negative"):
        draw_pairs(labels, -1)


def test_the_split_is_half_and_half_and_depends_on_the_name_only(tmp_path: Path) -> None:
    names = [f"photo_{i:05d}.jpg" for i in range(4000)]
    tuning = sum(split_of(name) == "tuning" for name in names)
    assert 0.47 < tuning / len(names) < 0.53
    assert all(split_of(f"some/folder/{name}") == split_of(name) for name in names[:50])
    folder = write_folder(tmp_path / "data", GOOD_ROWS)
    every = read_labels(folder)
    parts = {part: read_labels(folder, split=part) for part in ("tuning", "reporting") if any(s.split == part for s in every)}
    assert sorted(s.file for part in parts.values() for s in part) == sorted(s.file for s in every)
    for part, samples in parts.items():
        assert all(sample.split == part == split_of(sample.file) for sample in samples)
    with pytest.raises(ValueError, match="split must be one of"):
        read_labels(folder, split="test")


@pytest.mark.skipif(not (EVAL / "ilsvrc-val-650" / "labels.csv").is_file(), reason="the evaluation folders are not here")
def test_the_split_of_the_evaluation_folders_is_the_documented_one() -> None:
    """docs/protocol.md: 273/227 and 335/315 photographs in the tuning/reporting parts."""
    for folder, tuning, reporting in (("imagenet-samples", 273, 227), ("ilsvrc-val-650", 335, 315)):
        assert len(read_labels(EVAL / folder, split="tuning")) == tuning
        assert len(read_labels(EVAL / folder, split="reporting")) == reporting
    both = read_labels([EVAL / "imagenet-samples", EVAL / "ilsvrc-val-650"], split="reporting")
    assert len(both) == 542 and {s.split for s in both} == {"reporting"}


def test_two_folders_and_a_file_listed_twice(tmp_path: Path) -> None:
    first = write_folder(tmp_path / "a", GOOD_ROWS)
    second = write_folder(tmp_path / "b", GOOD_ROWS[:1])
    with pytest.raises(ValueError, match=r"'cat\.jpg' is listed twice"):
        read_labels([first, second])
    (second / "camera.png").rename(second / "camera2.png")
    (second / "labels.csv").write_text("file,class_index\ncamera2.png,759\n")
    assert [s.file for s in read_labels([first, second])] == ["cat.jpg", "camera.png", "small_coffee.png", "camera2.png"]


def test_bench_refuses_the_tuning_part_unless_told(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    folder = write_folder(tmp_path / "data", GOOD_ROWS)
    for split in ("tuning", "all"):
        with pytest.raises(ValueError, match="--allow-tuning"):
            run_benchmark(folder, split=split, progress=False)
        args = add_bench_arguments(argparse.ArgumentParser()).parse_args(
            [str(folder), "--split", split, "--no-progress", "--out", str(tmp_path / "o")])
        assert run_bench_command(args) == 2
        assert "not evidence" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
    # cat.jpg, camera.png and small_coffee.png all hash into the tuning part: nothing to report on.
    assert {s.split for s in read_labels(folder)} == {"tuning"}
    with pytest.raises(ValueError, match="No images in the reporting part"):
        run_benchmark(folder, progress=False)


@pytest.mark.slow
def test_bench_on_own_folder_with_labels_and_no_curves(tmp_path: Path) -> None:
    """Grayscale and tiny images load like uploads; target=label; --steps 0 leaves the curves out."""
    folder = write_folder(tmp_path / "data", GOOD_ROWS)
    report = run_all(folder, methods=["clustercam"], target="label", pairs=1, n_steps=0, batch_size=3, device="cpu", out=tmp_path / "out")
    assert [row["target"] for row in report.rows] == [285, 759, 967]
    assert all(row["deletion"] is None for row in report.rows)
    summary = report.summaries["clustercam"]
    assert summary.images == 3 and summary.deletion is None and summary.pairs == 1
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert results["summaries"]["clustercam"]["deletion"] is None
    assert "—" in (tmp_path / "out" / "table1.md").read_text()
    assert (tmp_path / "out" / "bench.png").is_file()


def test_decoding_in_dataloader_workers_gives_the_same_rows(tmp_path: Path) -> None:
    """Images decoded in two worker processes while the network runs: the same per-image rows as
    decoding in the main process, and a throughput next to Table 2."""
    folder = write_folder(tmp_path / "data", GOOD_ROWS)
    options = {"methods": ["clustercam", "gradcam"], "pairs": 0, "n_steps": 2, "batch_size": 2, "device": "cpu",
               "warmup": False}
    inline = run_all(folder, workers=0, **options)
    workers = run_all(folder, workers=2, out=tmp_path / "out", **options)
    strip = [{k: v for k, v in row.items() if k != "seconds"} for row in inline.rows]
    assert [{k: v for k, v in row.items() if k != "seconds"} for row in workers.rows] == strip
    assert workers.settings["workers"] == 2 and workers.settings["images_per_second"] > 0
    assert "images per second" in (tmp_path / "out" / "table2.md").read_text()
    with pytest.raises(ValueError, match="workers must not be negative"):
        run_all(folder, workers=-1, **options)


def test_run_benchmark_takes_the_settings_with_their_defaults() -> None:
    """run_benchmark's keyword parameters are the settings' fields (and ``ranks``), defaults included."""
    parameters = dict(inspect.signature(run_benchmark).parameters)
    assert parameters.pop("ranks").default is None
    fields = dataclasses.fields(BenchmarkSettings)
    assert list(parameters) == [f.name for f in fields]
    defaults = {f.name: f.default for f in fields if f.default is not dataclasses.MISSING}
    assert {name: p.default for name, p in parameters.items() if p.default is not inspect.Parameter.empty} == defaults


def test_the_report_settings_and_the_fingerprint_come_from_the_one_settings(tmp_path: Path) -> None:
    """Every setting that changes a record's numbers changes the records' key, and no other does;
    without ADCC the key is the one earlier versions wrote records under (so their runs resume); the report
    shows each fingerprinted setting with the value the key was made of."""
    folder = write_folder(tmp_path / "data", GOOD_ROWS)
    spec = load_model("efficientnet_lite0", "cpu")
    base = BenchmarkSettings(folder, split="all", allow_tuning=True, model=spec, methods=("clustercam", "gradcam"),
                             pairs=2, n_steps=4, method_options={"clustercam": {"q": 6}}, adcc=False)

    def key(settings: BenchmarkSettings) -> str:
        return settings.fingerprint(make_plan(settings, Ranks()))

    plan = make_plan(base, Ranks())
    samples = read_labels(folder)
    as_written_before = fingerprint({
        "files": [(str(s.path), s.label) for s in samples], "split": "all", "model": "efficientnet_lite0", "layer": "bn2",
        "methods": ["clustercam", "gradcam"], "options": {"clustercam": {"q": 6}, "gradcam": {}}, "batch_size": 8,
        "forward_batch_size": 64, "target": "predicted", "n_steps": 4, "pairs": 2, "pair_seed": 0, "image_size": 224,
    })
    assert base.fingerprint(plan) == as_written_before

    reported = base.report_settings(plan, rank=0)
    described = base.describe(plan)
    assert [setting.report for setting in described] == list(reported)[:-2]  # then the rank and the machine
    assert all(reported[setting.report] == setting.value for setting in described)

    changing = [
        {"split": "tuning"}, {"limit": 2}, {"layer": "conv_head"}, {"methods": ("clustercam",)},
        {"methods": ("clustercam", "gradcam", "scorecam")}, {"method_options": {"clustercam": {"q": 5}}},
        {"batch_size": 2}, {"forward_batch_size": 16}, {"target": "label"}, {"n_steps": 2}, {"pairs": 1},
        {"pairs": None}, {"pair_seed": 1}, {"adcc": True},  # records with ADCC's fields: a key of their own
    ]
    keys = {key(dataclasses.replace(base, **change)) for change in changing}
    assert as_written_before not in keys and len(keys) == len(changing)
    for same in ({"resamples": 10}, {"workers": 1}, {"warmup": False}, {"progress": False}, {"out": tmp_path},
                 {"reference": "gradcam"}, {"device": "cpu"}):
        assert key(dataclasses.replace(base, **same)) == as_written_before, same


def test_the_readme_and_docs_quote_the_recipro_cam_table_as_measured():
    """The statements of where Cluster-CAM is ahead of Recipro-CAM and behind it follow the
    committed reporting run (its intervals.csv and Table 2): rerun the table, and a stale sentence
    fails here."""
    folder = ROOT / "docs" / "benchmarks" / "reporting" / "lite0-bn2-reciprocam"
    with (folder / "intervals.csv").open() as handle:
        rows = {(row["method"], row["metric"]): row for row in csv.DictReader(handle)}

    def interval(metric: str, digits: int) -> str:
        row = rows[("reciprocam", metric)]
        numbers = [float(row[key]) for key in ("estimate", "low", "high")]
        return "{} [{}, {}]".format(*(f"{value:+.{digits}f}".replace("-", "−") for value in numbers))

    readme, docs = (" ".join((ROOT / name).read_text().split()) for name in ("README.md", "docs/benchmarks.md"))
    assert interval("average_drop", 1) in readme and interval("average_drop", 2) in docs
    assert interval("pair_share", 3) in readme and interval("pair_share", 3) in docs
    assert interval("adcc", 1) in readme and interval("adcc", 2) in docs
    assert interval("coherency", 1) in docs
    seconds = {line.split("|")[1].strip(): float(line.split("|")[2]) for line in (folder / "table2.md").read_text().splitlines()
               if line.startswith("| ") and line.split("|")[2].strip().replace(".", "").isdigit()}
    assert f"{seconds['clustercam']:.3f} s against {seconds['reciprocam']:.3f} s" in readme
    assert f"{seconds['clustercam'] / seconds['reciprocam']:.1f} × faster" in docs
