"""Resumable benchmark records: one file per unit of work, written atomically.

A unit is a batch of images (or of pairs) exactly as a one-process run forms it
(:mod:`clustercam.bench.distributed`). Its record — every method's per-image figures — is written
to ``<out>/records/<fingerprint>/<kind>-<index>.json`` through a temporary file in the same folder,
flushed to disk and renamed over the final name (``os.replace`` is atomic on POSIX and Windows): a
record is there whole or not at all, and a run killed mid-write leaves only a temporary file,
which is never read. A run started again with the same output folder and the same settings (the
*fingerprint*: data, split, model, layer, methods, options, batch sizes, targets, steps, pairs)
loads the records it finds and computes only the missing units; other settings get another
folder, so a stale record is never mixed in.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from pathlib import Path
from typing import Any


def fingerprint(settings: dict[str, Any]) -> str:
    """A short hash of everything that changes a record's numbers."""
    text = json.dumps(settings, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class RecordStore:
    """Records of one benchmark's units under ``root`` (None: kept in memory only, no resume)."""

    def __init__(self, root: str | os.PathLike | None, key: str):
        self.folder = Path(root) / "records" / key if root is not None else None
        self._memory: dict[tuple[str, int], dict] = {}

    def _path(self, kind: str, index: int) -> Path:
        assert self.folder is not None
        return self.folder / f"{kind}-{index:06d}.json"

    def load(self, kind: str, index: int) -> dict | None:
        """The record of unit ``index`` of ``kind`` ("images" or "pairs"), or None if not done."""
        if self.folder is None:
            return self._memory.get((kind, index))
        path = self._path(kind, index)
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None

    def save(self, kind: str, index: int, record: dict) -> None:
        """Write a unit's record atomically (see the module docstring)."""
        if self.folder is None:
            self._memory[(kind, index)] = record
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        final = self._path(kind, index)
        temporary = final.with_name(f".{final.name}.{os.getpid()}.{uuid.uuid4().hex}.tmp")
        with temporary.open("w", encoding="utf-8") as handle:
            json.dump(record, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, final)

    def done(self, kind: str) -> int:
        """How many units of ``kind`` have a record."""
        if self.folder is None:
            return sum(1 for k, _ in self._memory if k == kind)
        return len(list(self.folder.glob(f"{kind}-*.json"))) if self.folder.is_dir() else 0
