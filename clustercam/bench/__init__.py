"""``python -m clustercam bench``: every method's faithfulness and cost on labelled photographs.

- :mod:`~clustercam.bench.data`: labelled folders, the tuning/reporting split, images and pairs;
- :mod:`~clustercam.bench.runner`: :func:`~clustercam.bench.runner.run_benchmark`, the run by stages:
  :mod:`~clustercam.bench.settings` (what was asked for), :mod:`~clustercam.bench.plan` (model, methods,
  images, pairs), :mod:`~clustercam.bench.units` (explains and scores the images and pairs, unit by unit),
  :mod:`~clustercam.bench.tally` (one tally per method, the intervals);
- :mod:`~clustercam.bench.records` and :mod:`~clustercam.bench.distributed`: resumable records, torchrun's ranks;
- :mod:`~clustercam.bench.report`: the tables (with paired bootstrap intervals), CSV, JSON, plot.

The command line is in :mod:`clustercam.cli`.
"""
