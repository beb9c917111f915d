"""``bench`` past one process: torchrun ranks give the one-process rows, a killed run resumes to the
same tables, bad data fails before any table, and the ILSVRC-2012 validation layout is read."""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from clustercam.bench.data import read_labels, synset_indices
from clustercam.bench.distributed import Ranks
from clustercam.bench.records import RecordStore

from .conftest import ASSETS, ROOT
from .test_bench import ASSET_LABELS

pytestmark = pytest.mark.slow

LABELS = {**ASSET_LABELS, "astronaut.jpg": 834, "cat_and_coffee.jpg": 968}
#: 6 photos in batches of 2 (3 units: ranks 0 and 1 of 2 take units 0, 2 and 1), 2 pairs.
ARGUMENTS = ["--split", "all", "--allow-tuning", "--methods", "clustercam,gradcam", "--batch-size", "2",
             "--steps", "4", "--pairs", "2", "--resamples", "200", "--workers", "0", "--no-progress"]
TIMING = {"seconds"}


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("photos")
    for name in LABELS:
        shutil.copy(ASSETS / name, folder / name)
    (folder / "labels.csv").write_text("file,class_index\n" + "".join(f"{n},{i}\n" for n, i in LABELS.items()))
    return folder


def environment() -> dict[str, str]:
    # one thread per process, as torchrun gives each rank: the same arithmetic in both runs
    # gloo on the loopback interface: a CI container's host name need not resolve
    return {"GLOO_SOCKET_IFNAME": "lo", **os.environ, "OMP_NUM_THREADS": "1", "CLUSTERCAM_COMPILE": "0",
            "PYTHONPATH": str(ROOT)}


def bench_command(data: Path, out: Path, ranks: int = 1) -> list[str]:
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={ranks}"] if ranks > 1 else [sys.executable]
    return [*launcher, "-m", "clustercam", "bench", str(data), *ARGUMENTS, "--out", str(out)]


def run(data: Path, out: Path, ranks: int = 1) -> subprocess.CompletedProcess:
    return subprocess.run(bench_command(data, out, ranks), cwd=ROOT, env=environment(), capture_output=True, text=True, timeout=600)


def rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return [{k: v for k, v in row.items() if k not in TIMING} for row in csv.DictReader(handle)]


@pytest.fixture(scope="module")
def one_process(photos: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("one")
    finished = run(photos, out)
    assert finished.returncode == 0, finished.stderr[-3000:]
    return out


def test_two_torchrun_ranks_give_exactly_the_one_process_rows_and_tables(photos, one_process, tmp_path):
    out = tmp_path / "two"
    finished = run(photos, out, ranks=2)
    assert finished.returncode == 0, finished.stderr[-3000:]
    assert rows(out / "per_image.csv") == rows(one_process / "per_image.csv")
    assert len(rows(out / "per_image.csv")) == 2 * len(LABELS)
    assert rows(out / "pairs.csv") == rows(one_process / "pairs.csv") != []
    assert (out / "table1.md").read_text() == (one_process / "table1.md").read_text()
    assert (out / "intervals.csv").read_text() == (one_process / "intervals.csv").read_text()
    assert finished.stdout.count("Wrote ") == 1  # rank 0 alone writes the tables


def test_a_run_killed_halfway_resumes_to_the_same_tables(photos, one_process, tmp_path):
    out = tmp_path / "resumed"
    process = subprocess.Popen(bench_command(photos, out), cwd=ROOT, env=environment(),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    records = out / "records"
    deadline = time.monotonic() + 300
    while not list(records.glob("*/images-*.json")) and time.monotonic() < deadline:
        assert process.poll() is None, "the run ended before a unit was recorded"
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)  # no chance to tidy up
    process.wait(30)
    done = len(list(records.glob("*/images-*.json")))
    assert 1 <= done < 3 and not (out / "table1.md").exists()
    finished = run(photos, out)
    assert finished.returncode == 0, finished.stderr[-3000:]
    assert rows(out / "per_image.csv") == rows(one_process / "per_image.csv")
    assert rows(out / "pairs.csv") == rows(one_process / "pairs.csv")
    assert (out / "table1.md").read_text() == (one_process / "table1.md").read_text()
    settings = json.loads((out / "results.json").read_text())["settings"]
    assert settings["images_computed"] == len(LABELS) - 2 * done  # only the missing units were computed


def test_a_half_written_record_is_never_read(tmp_path):
    store = RecordStore(tmp_path, "key")
    store.save("images", 0, {"files": ["a.jpg"]})
    (store.folder / ".images-000001.json.123.abc.tmp").write_text('{"files": ["b.j')  # a write cut short
    assert store.load("images", 0) == {"files": ["a.jpg"]}
    assert store.load("images", 1) is None and store.done("images") == 1


@pytest.mark.parametrize("problem", ["malformed", "missing"])
def test_bad_labels_fail_clearly_with_no_tables(photos, tmp_path, problem):
    data = tmp_path / "data"
    shutil.copytree(photos, data)
    if problem == "malformed":
        (data / "labels.csv").write_text("file,class_index\nchelsea.jpg,cat\n")
        expected = "class_index 'cat' is not a whole number"
    else:
        (data / "coffee.jpg").unlink()
        expected = "no image file 'coffee.jpg'"
    out = tmp_path / "out"
    finished = run(data, out)
    assert finished.returncode == 2 and expected in finished.stderr
    assert not (out / "table1.md").exists() and not (out / "per_image.csv").exists()
    if problem == "malformed":  # under torchrun too: every rank stops, none writes a table
        two = run(data, tmp_path / "out2", ranks=2)
        assert two.returncode != 0 and expected in two.stderr + two.stdout
        assert not (tmp_path / "out2" / "table1.md").exists()


def test_shards_take_every_unit_once():
    units = list(range(7))
    taken = [index for rank in range(3) for index, _ in Ranks(rank, 3).mine(units)]
    assert sorted(taken) == units


def ilsvrc_folder(root: Path) -> Path:
    folder = root / "val"
    folder.mkdir()
    for number, name in enumerate(["chelsea.jpg", "coffee.jpg"], start=1):
        shutil.copy(ASSETS / name, folder / f"ILSVRC2012_val_{number:08d}.JPEG")
    return folder


def test_the_ilsvrc_layout_with_loc_val_solution(tmp_path):
    folder = ilsvrc_folder(tmp_path)
    (tmp_path / "LOC_val_solution.csv").write_text(
        "ImageId,PredictionString\nILSVRC2012_val_00000002,n07920052 1 2 3 4\nILSVRC2012_val_00000001,n02124075 5 6 7 8 n02124075 1 1 2 2\n"
    )
    assert [(s.file, s.label) for s in read_labels(folder)] == [
        ("ILSVRC2012_val_00000001.JPEG", 285), ("ILSVRC2012_val_00000002.JPEG", 967)]
    (tmp_path / "LOC_val_solution.csv").write_text("ImageId,PredictionString\nILSVRC2012_val_00000001,n99999999 1 2 3 4\n")
    with pytest.raises(ValueError, match="line 2: 'n99999999' is not one of the 1000"):
        read_labels(folder)


def test_the_ilsvrc_layout_with_the_devkit(tmp_path):
    import scipy.io

    folder = ilsvrc_folder(tmp_path)
    data = tmp_path / "ILSVRC2012_devkit_t12" / "data"
    data.mkdir(parents=True)
    fields = np.dtype([("ILSVRC2012_ID", "O"), ("WNID", "O"), ("words", "O"), ("gloss", "O"), ("num_children", "O")])
    synsets = np.array([(7, "n02124075", "Egyptian cat", "", 0), (3, "n07920052", "espresso", "", 0),
                        (1001, "n00001740", "entity", "", 5)], dtype=fields)
    scipy.io.savemat(data / "meta.mat", {"synsets": synsets})
    (data / "ILSVRC2012_validation_ground_truth.txt").write_text("7\n3\n")
    indices = synset_indices()
    assert [s.label for s in read_labels(folder)] == [indices["n02124075"], indices["n07920052"]] == [285, 967]
    (data / "ILSVRC2012_validation_ground_truth.txt").write_text("7\n")
    with pytest.raises(ValueError, match=r"no label for ILSVRC2012_val_00000002\.JPEG"):
        read_labels(folder)


def test_an_ilsvrc_folder_without_ground_truth_says_what_to_add(tmp_path):
    with pytest.raises(ValueError, match=r"LOC_val_solution\.csv or the devkit"):
        read_labels(ilsvrc_folder(tmp_path))
