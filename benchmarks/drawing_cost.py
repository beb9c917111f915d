"""What an Explain costs besides the network: the server's drawing, stage by stage, and the encoders.

Explains each example photograph once in this process (the app's own handler, eager, so the
explanation is then cached), then times, over ``--repeats`` runs each, the two messages of
``ExplainTab.explain`` (/explain) served from the cache: the first (what is in view after Explain:
the heatmap over the image, β's note, the class choice, the base and scissors maps) and the
second (the tiles, masked images, chart, table, the β curve (memoised), summary, ``.npy`` and
zip), and a β redraw (``/reweight``). Then the galleries' tile encoders side by side on the same tiles: PNG (compression 1),
JPEG (quality 90) and WebP (quality 85), milliseconds and bytes per tile. Medians; ratios against
PNG.

    python benchmarks/drawing_cost.py --repeats 15
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import sys
import time

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("CLUSTERCAM_COMPILE", "0")

from _common import ROOT

sys.path.insert(0, str(ROOT))  # app.py


def median_ms(samples: list[float]) -> float:
    return 1000 * statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()

    import torch

    import app
    from clustercamapp import drawing
    from clustercamapp.engine import RESULTS
    from clustercamapp.settings import Settings
    from clustercamapp.tabs.explain import EXAMPLES

    tab = app.page.explain
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; {args.repeats} repeats per photograph")
    first, second, redraws, tiles = [], [], [], []
    for name in EXAMPLES.values():
        settings = Settings.parse(image=str(ROOT / "assets" / name))
        *_, last = tab.explain(settings)  # the explanation, now cached
        for _ in range(args.repeats):
            began = time.perf_counter()
            messages = tab.explain(settings)
            next(messages)
            middle = time.perf_counter()
            next(messages)
            first.append(middle - began)
            second.append(time.perf_counter() - middle)
        session = last[tab.session]
        for index in range(args.repeats):  # β on the curve's grid: no forward pass
            began = time.perf_counter()
            session = tab.on_reweight((0.3, 0.5, 0.7)[index % 3], session)[tab.session]
            redraws.append(time.perf_counter() - began)
        entry = RESULTS.get(last[tab.session].key)
        one = entry.explained.result[0]
        tiles += [picture for picture, _ in drawing.masked_tiles(one, entry.thumbnail, entry.explained.baseline_color)]
        tiles += [picture for picture, _ in drawing.cluster_tiles(one, entry.thumbnail.size)]
    print(f"first message (the heatmap in view), from the cache: median {median_ms(first):.1f} ms")
    print(f"second message (everything else), from the cache:   median {median_ms(second):.1f} ms")
    print(f"a β redraw (/reweight, β on the curve's grid):       median {median_ms(redraws):.1f} ms")

    encoders = {"PNG (compression 1)": ("PNG", {"compress_level": 1}), "JPEG (quality 90)": ("JPEG", {"quality": 90}),
                "WebP (quality 85)": ("WEBP", {"quality": 85})}
    figures = {}
    for label, (kind, options) in encoders.items():
        seconds, sizes = [], []
        for picture in tiles:
            buffer = io.BytesIO()
            began = time.perf_counter()
            picture.convert("RGB").save(buffer, format=kind, **options)
            seconds.append(time.perf_counter() - began)
            sizes.append(buffer.tell())
        figures[label] = (median_ms(seconds), statistics.median(sizes))
    png_ms, png_bytes = figures["PNG (compression 1)"]
    print(f"tile encoders over {len(tiles)} tiles ({tiles[0].size[0]}×{tiles[0].size[1]} and similar):")
    for label, (ms, size) in figures.items():
        print(f"  {label:22s} {ms:6.2f} ms/tile (×{ms / png_ms:.2f} of PNG), {size / 1024:6.1f} kB/tile (×{size / png_bytes:.2f})")


if __name__ == "__main__":
    main()
