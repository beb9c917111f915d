"""Writing a benchmark's results: per-image CSV, JSON, the paper's Tables 1–2 in Markdown, a plot.

Files written by :func:`write_report` into the output folder:

- ``per_image.csv``: one row per image × method (Y, O, drops, increase, deletion/insertion AUC,
  seconds and passes per image); ``pairs.csv``: one row per pair × method, when pairs were run;
- ``results.json``: the settings (model, layer, device, torch version, machine), every summary
  figure, the mean deletion/insertion curves and the per-image and per-pair rows;
- ``table1.md``: average drop ↓, confidence drop (eq. 23) ↓, increase ↑, deletion ↓,
  insertion ↑, pair share ↑ per method (cf. the paper's Table 1), then each method's difference
  to the reference method with its paired bootstrap 95 % interval and ``n``;
- ``intervals.csv``: those differences, one row per method × metric;
- ``table2.md``: median seconds per image, forward and backward passes per image (cf. Table 2);
- ``bench.png``: average drop against seconds per image (log scale), one point per method, and
  the mean deletion/insertion curves.
"""

from __future__ import annotations

import csv
import json
import math
import os
import platform
from dataclasses import dataclass, field
from pathlib import Path

import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ..metrics import MethodMetrics
from ..stats import Interval

#: (field, heading, lower is better, number format) of Table 1.
TABLE1 = (
    ("average_drop", "Average drop (%) ↓", True, "{:.2f}"),
    ("confidence_drop", "Confidence drop (%) ↓", True, "{:.2f}"),
    ("increase", "Increase (%) ↑", False, "{:.2f}"),
    ("deletion", "Deletion AUC ↓", True, "{:.4f}"),
    ("insertion", "Insertion AUC ↑", False, "{:.4f}"),
    ("pair_share", "Pair share ↑", False, "{:.3f}"),
    ("adcc", "ADCC (%) ↑", False, "{:.2f}"),
    ("coherency", "Coherency (%) ↑", False, "{:.2f}"),
    ("complexity", "Complexity (%) ↓", True, "{:.2f}"),
)
#: Table 2: cost per image.
TABLE2 = (
    ("seconds_per_image", "Seconds per image ↓", True, "{:.4f}"),
    ("forward_passes", "Forward passes ↓", True, "{:g}"),
    ("backward_passes", "Backward passes ↓", True, "{:g}"),
    ("coherency_forward_passes", "ADCC's forward passes", True, "{:g}"),
    ("coherency_backward_passes", "ADCC's backward passes", True, "{:g}"),
)


def machine_info(device: torch.device) -> dict:
    """What ran the benchmark: platform, CPU threads, torch version, accelerator."""
    info = {
        "device": str(device),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
    }
    if device.type == "cuda":
        info["accelerator"] = torch.cuda.get_device_name(device)
    return info


@dataclass
class BenchmarkReport:
    """Everything a benchmark run measured (:func:`clustercam.bench.run_benchmark`).

    Attributes:
        settings: the run's options and machine.
        rows: one dict per image × method (the per-image CSV).
        pair_rows: one dict per pair × method.
        summaries: method → :class:`~clustercam.metrics.MethodMetrics`.
        curves: method → ``{"fractions", "deletion", "insertion"}`` mean curves.
        intervals: method → metric → :class:`~clustercam.stats.Interval` of the method's
            difference to ``settings["reference"]``.
        written: the files :meth:`write` wrote last, by kind (``table1``, ``results``, …).
    """

    settings: dict
    rows: list[dict] = field(default_factory=list)
    pair_rows: list[dict] = field(default_factory=list)
    summaries: dict[str, MethodMetrics] = field(default_factory=dict)
    curves: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    intervals: dict[str, dict[str, Interval]] = field(default_factory=dict)
    written: dict[str, Path] = field(default_factory=dict, repr=False)

    def write(self, out: str | os.PathLike) -> dict[str, Path]:
        """Write every file into ``out`` (see :func:`write_report`)."""
        self.written = write_report(self, out)
        return self.written


def _clean(value: object) -> object:
    """JSON-safe copy: non-finite floats become ``None``."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: _clean(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(item) for item in value]
    return value


#: The columns a run without ADCC (``adcc=False``) leaves out of its tables.
ADCC_COLUMNS = ("adcc", "coherency", "complexity", "coherency_forward_passes", "coherency_backward_passes")


def markdown_table(report: BenchmarkReport, columns: tuple, title: str) -> str:
    """A Markdown table, one row per method, the best value of each column in bold."""
    if not report.settings.get("adcc"):
        columns = tuple(column for column in columns if column[0] not in ADCC_COLUMNS)
    summaries = report.summaries
    best = {}
    for key, _, lower, _ in columns:
        values = [getattr(s, key) for s in summaries.values() if getattr(s, key) is not None]
        if len(values) > 1:
            best[key] = min(values) if lower else max(values)
    lines = ["| Method | " + " | ".join(heading for _, heading, _, _ in columns) + " |"]
    lines.append("|---|" + "---:|" * len(columns))
    for name, summary in summaries.items():
        cells = []
        for key, _, _, form in columns:
            value = getattr(summary, key)
            text = "—" if value is None else form.format(value)
            cells.append(f"**{text}**" if key in best and value == best[key] else text)
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return f"# {title}\n\n{caption(report)}\n\n" + "\n".join(lines) + "\n"


def caption(report: BenchmarkReport) -> str:
    settings = report.settings
    machine = settings.get("machine", {})
    folders = ", ".join(Path(folder).name for folder in settings.get("data_dirs", ()))
    return (
        f"{settings.get('images')} images ({settings.get('split')} part of {folders}), model {settings.get('model')}, "
        f"layer {settings.get('layer')}, target: {settings.get('target')} class, device {machine.get('device')} "
        f"(torch {machine.get('torch')})."
    )


def differences_table(report: BenchmarkReport) -> str:
    """Each method minus the reference: ``Δ [low, high]`` per metric (paired bootstrap 95 %)."""
    if not report.intervals:
        return ""
    reference = report.settings.get("reference")
    columns = [(key, heading) for key, heading, _, _ in TABLE1 if any(key in row for row in report.intervals.values())]
    lines = ["| Method − " + str(reference) + " | " + " | ".join(heading for _, heading in columns) + " |"]
    lines.append("|---|" + "---:|" * len(columns))
    for name, row in report.intervals.items():
        cells = []
        for key, _ in columns:
            interval = row.get(key)
            if interval is None:
                cells.append("—")
                continue
            digits = 4 if key in ("deletion", "insertion") else 3 if key == "pair_share" else 2  # ADCC's: %
            text = interval.format(digits)
            cells.append(f"**{text}**" if interval.excludes_zero else text)
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    first = next(iter(report.intervals.values()))
    n_images = next((i.n for k, i in first.items() if k != "pair_share"), 0)
    n_pairs = first["pair_share"].n if "pair_share" in first else 0
    resamples = next(iter(first.values())).resamples if first else 0
    note = (
        f"\nDifferences of the means (method − {reference}) with paired bootstrap 95 % intervals "
        f"({resamples} resamples; n = {n_images} images{f', {n_pairs} pairs for the pair share' if n_pairs else ''}); "
        "bold: the interval "
        "excludes zero. Lower is better for the drops, deletion and complexity, higher for increase, insertion, "
        "pair share, ADCC and coherency.\n"
    )
    return f"\n## Differences to {reference}\n\n" + "\n".join(lines) + "\n" + note


def table1(report: BenchmarkReport) -> str:
    """Faithfulness (cf. the paper's Table 1), with deletion/insertion and the pair share added."""
    notes = (
        "\n*Masking:* X∘H multiplies the preprocessed image by the heatmap (0 = the preprocessing's mean "
        "colour), the same for every method. Average drop = mean max(0, Y−O)/Y; confidence drop = "
        "mean (Y−O)/Y (eq. 23, signed); increase = share of images with O > Y; deletion/insertion: "
        f"RISE AUC over {report.settings.get('n_steps')} steps"
        + (f"; pair share over {report.settings['pairs']} two-image pairs (1 = mass on the right object, 0.5 = chance)"
           if report.settings.get("pairs") else "")
        + ("; ADCC (Poppi et al., CVPRW 2021) = 3 / (1/coherency + 1/(1 − complexity) + 1/(1 − average drop)) per "
           "image, coherency = (Pearson ρ of the map and the method's map of the masked image + 1) / 2, complexity = "
           "the map's mean" if report.settings.get("adcc") else "")
        + ".\n"
    )
    return markdown_table(report, TABLE1, "Table 1 — faithfulness") + notes + differences_table(report)


def table2(report: BenchmarkReport) -> str:
    """Cost per image (cf. the paper's Table 2): median over batches of seconds / batch size."""
    note = (
        f"\nSeconds: median over batches of {report.settings.get('batch_size')} images of the method call's "
        "wall time (device synchronised) / batch size, after an untimed warm-up call"
        f"{'' if report.settings.get('warmup', True) else ' (skipped in this run)'}. Passes: images pushed "
        "through the network per image by the method itself (the metrics' own passes are not counted); ADCC's: the "
        "method's own passes again, to explain each image masked by its heatmap (coherency).\n"
    )
    rate = report.settings.get("images_per_second")
    if rate:
        workers = report.settings.get("workers", 0)
        note += (
            f"\nThroughput of the whole run: {rate:.2f} images per second (every method, the metrics and "
            f"their passes; images decoded {f'in {workers} DataLoader workers' if workers else 'in the main process'}).\n"
        )
    return markdown_table(report, TABLE2, "Table 2 — cost per image") + note


def plot(report: BenchmarkReport, path: str | os.PathLike) -> Path:
    """Average drop vs seconds per image (log-x), and the mean deletion/insertion curves."""
    with_curves = bool(report.curves)
    figure = Figure(figsize=(11 if with_curves else 6, 4.5), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(1, 2 if with_curves else 1, squeeze=False)[0]
    trade = axes[0]
    colours = {name: f"C{index % 10}" for index, name in enumerate(report.summaries)}
    for name, summary in report.summaries.items():
        if summary.seconds_per_image:
            trade.scatter(summary.seconds_per_image, summary.average_drop, s=40, color=colours[name])
            trade.annotate(name, (summary.seconds_per_image, summary.average_drop), textcoords="offset points", xytext=(5, 4))
    trade.set_xscale("log")
    trade.set_xlabel("seconds per image (log scale)")
    trade.set_ylabel("average drop (%) — lower is better")
    trade.set_title(f"{report.settings.get('model')} · {report.settings.get('images')} images")
    trade.grid(True, which="both", alpha=0.3)
    if with_curves:
        curves = axes[1]
        for name, curve in report.curves.items():
            colour = colours.get(name, "k")
            curves.plot(curve["fractions"], curve["deletion"], color=colour, label=name)
            curves.plot(curve["fractions"], curve["insertion"], color=colour, linestyle="--")
        curves.set_xlabel("fraction of pixels deleted / inserted")
        curves.set_ylabel("mean target probability")
        curves.set_title("Deletion (solid) and insertion (dashed)")
        curves.legend(fontsize="small", loc="center left", bbox_to_anchor=(1.01, 0.5))
        curves.grid(True, alpha=0.3)
    path = Path(path)
    figure.savefig(path, dpi=120)
    return path


def _write_csv(rows: list[dict], path: Path) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows({key: "" if value is None else value for key, value in row.items()} for row in rows)
    return path


def write_report(report: BenchmarkReport, out: str | os.PathLike) -> dict[str, Path]:
    """Write every file (see the module docstring) into ``out``; returns ``{kind: path}``."""
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    if report.rows:
        paths["csv"] = _write_csv(report.rows, folder / "per_image.csv")
    if report.pair_rows:
        paths["pairs_csv"] = _write_csv(report.pair_rows, folder / "pairs.csv")
    if report.intervals:
        rows = [{"method": name, "reference": report.settings.get("reference"), "metric": metric, **interval.as_dict()}
                for name, row in report.intervals.items() for metric, interval in row.items()]
        paths["intervals_csv"] = _write_csv(rows, folder / "intervals.csv")
    payload = {
        "settings": report.settings,
        "intervals": {name: {metric: i.as_dict() for metric, i in row.items()} for name, row in report.intervals.items()},
        "summaries": {name: summary.as_dict() for name, summary in report.summaries.items()},
        "curves": report.curves,
        "images": report.rows,
        "pairs": report.pair_rows,
    }
    paths["json"] = folder / "results.json"
    paths["json"].write_text(json.dumps(_clean(payload), indent=2, allow_nan=False), encoding="utf-8")
    paths["table1"] = folder / "table1.md"
    paths["table1"].write_text(table1(report), encoding="utf-8")
    paths["table2"] = folder / "table2.md"
    paths["table2"].write_text(table2(report), encoding="utf-8")
    paths["plot"] = plot(report, folder / "bench.png")
    return paths
