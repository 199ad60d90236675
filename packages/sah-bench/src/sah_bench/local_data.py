"""Reading benchmark rows from local files (json, jsonl, parquet) instead of the hub."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

SUPPORTED_SUFFIXES: tuple[str, ...] = (".jsonl", ".json", ".parquet")


def read_records(path: Path) -> list[dict[str, Any]]:
    """All records of one json / jsonl / parquet file as dicts."""
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        with path.open(encoding="utf-8") as fh:
            return [json.loads(line) for line in fh if line.strip()]
    if suffix == ".json":
        data = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(data, dict) and "data" in data:
            data = data["data"]
        if not isinstance(data, list):
            raise ValueError(f"data file {path}: expected a JSON list of rows, got {type(data)}")
        return [dict(r) for r in data]
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        return [dict(r) for r in pq.read_table(path).to_pylist()]
    raise ValueError(
        f"data file {path}: unsupported suffix {suffix!r}; allowed: {list(SUPPORTED_SUFFIXES)}"
    )


def find_subset_file(directory: Path, subset: str) -> Path | None:
    """``<directory>/<subset>.<jsonl|json|parquet>`` if one exists."""
    for suffix in SUPPORTED_SUFFIXES:
        candidate = directory / f"{subset}{suffix}"
        if candidate.is_file():
            return candidate
    return None
