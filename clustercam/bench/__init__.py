"""``python -m clustercam bench``: every method's faithfulness and cost on labelled photographs.

- :mod:`~clustercam.bench.data`: labelled folders, the tuning/reporting split, images and pairs;
- :mod:`~clustercam.bench.runner`: explains and scores the images, one tally per method;
- :mod:`~clustercam.bench.report`: the tables (with paired bootstrap intervals), CSV, JSON, plot.

The command line is in :mod:`clustercam.cli`.
"""
