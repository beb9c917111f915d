"""Helpers shared by the benchmark scripts (run them from the repository root)."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def asset_path(name: str) -> Path:
    """An example image from ``assets/``."""
    return ROOT / "assets" / name
