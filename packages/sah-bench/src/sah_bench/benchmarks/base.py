"""Base class of every benchmark: subsets, loading (hub or local files), scoring, aggregation.

A subclass names its hub id and subsets, converts one raw record into the common row schema
(:mod:`sah_bench.rows`) and picks the official scorer of each subset. Everything else (local
files, schema checks, max rows, the mean score per task) lives here.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar

from sah_bench.local_data import find_subset_file, read_records
from sah_bench.rows import validate_row

logger = logging.getLogger(__name__)

Scorer = Callable[..., float]


class Benchmark:
    """A benchmark: rows in the common schema plus the official scorer of each subset.

    ``data_path``: read local files instead of the hub — either a folder holding
    ``<subset>.jsonl|json|parquet`` or one file whose rows are filtered by
    :attr:`subset_field` when that field is present.
    """

    name: ClassVar[str] = ""
    hub_id: ClassVar[str] = ""
    all_subsets: ClassVar[tuple[str, ...]] = ()
    #: Field of a raw record naming its subset, used to filter a single local file.
    subset_field: ClassVar[str] = "task"

    def __init__(self, data_path: str | Path | None = None) -> None:
        self.data_path = Path(data_path) if data_path is not None else None
        if self.data_path is not None and not self.data_path.exists():
            raise ValueError(f"{self.name}: data_path {str(self.data_path)!r} does not exist")

    # -- subsets -----------------------------------------------------------------------------
    @property
    def subsets(self) -> Sequence[str]:
        return list(self.all_subsets)

    def check_subset(self, subset: str) -> None:
        if subset not in self.subsets:
            raise ValueError(
                f"benchmark {self.name!r}: unknown subset {subset!r}; allowed: {list(self.subsets)}"
            )

    # -- loading -----------------------------------------------------------------------------
    def load_rows(self, subset: str, max_rows: int | None = None) -> list[dict[str, Any]]:
        """Rows of ``subset`` in the common schema (at most ``max_rows``)."""
        self.check_subset(subset)
        raw = self.raw_records(subset)
        rows: list[dict[str, Any]] = []
        for i, record in enumerate(raw):
            converted = self.to_rows(subset, record)
            for row in converted:
                rows.append(validate_row(row, where=f"{self.name}/{subset} record {i}"))
            if max_rows is not None and len(rows) >= max_rows:
                break
        return rows[:max_rows] if max_rows is not None else rows

    def raw_records(self, subset: str) -> list[dict[str, Any]]:
        if self.data_path is not None:
            return self.local_records(subset)
        return self.hub_records(subset)

    def local_records(self, subset: str) -> list[dict[str, Any]]:
        assert self.data_path is not None
        if self.data_path.is_dir():
            path = find_subset_file(self.data_path, subset)
            if path is None:
                raise ValueError(
                    f"{self.name}: no file for subset {subset!r} in {self.data_path} "
                    f"(expected {subset}.jsonl, {subset}.json or {subset}.parquet)"
                )
            return read_records(path)
        records = read_records(self.data_path)
        if records and self.subset_field in records[0]:
            return [r for r in records if self.record_subset(r) == subset]
        return records

    def record_subset(self, record: dict[str, Any]) -> str:
        return str(record.get(self.subset_field))

    def hub_records(self, subset: str) -> list[dict[str, Any]]:
        """Download with ``datasets.load_dataset`` (network; never used by the tests)."""
        from datasets import load_dataset  # lazy: heavy import

        config, split = self.hub_location(subset)
        logger.info("loading %s config=%s split=%s", self.hub_id, config, split)
        dataset = load_dataset(self.hub_id, config, split=split)
        records = [dict(r) for r in dataset]
        if self.hub_filters_by_subset():
            records = [r for r in records if self.record_subset(r) == subset]
        return records

    def hub_location(self, subset: str) -> tuple[str | None, str]:
        """``(config name, split)`` of ``subset`` on the hub."""
        return subset, "test"

    def hub_filters_by_subset(self) -> bool:
        """True when one hub split holds several subsets, told apart by :attr:`subset_field`."""
        return False

    def to_rows(self, subset: str, record: dict[str, Any]) -> list[dict[str, Any]]:
        """Convert one raw record into zero or more common-schema rows (default: as is)."""
        row = dict(record)
        if "answers" not in row and "answer" in row:
            row["answers"] = row.pop("answer")
        row.setdefault("task", subset)
        row.setdefault("answer_prefix", "")
        return [row]

    # -- scoring -----------------------------------------------------------------------------
    def scorer(self, subset: str) -> Scorer:
        raise ValueError(f"benchmark {self.name!r} defines no scorer for subset {subset!r}")

    def postprocess(self, subset: str, prediction: str) -> str:
        """Official prediction clean-up before scoring (default: strip surrounding space)."""
        return prediction.strip()

    def score(self, subset: str, prediction: str, answers: Sequence[str], **extras: Any) -> float:
        """Score one prediction with the subset's official metric."""
        self.check_subset(subset)
        return float(self.scorer(subset)(self.postprocess(subset, prediction), answers, **extras))

    def aggregate(self, subset: str, records: Sequence[dict[str, Any]]) -> dict[str, Any]:
        """Subset metrics from scored records: mean score, overall and per task."""
        scores = [float(r["score"]) for r in records if not math.isnan(float(r["score"]))]
        per_task: dict[str, list[float]] = {}
        for r in records:
            if not math.isnan(float(r["score"])):
                per_task.setdefault(str(r.get("task", subset)), []).append(float(r["score"]))
        return {
            "score": sum(scores) / len(scores) if scores else None,
            "n_questions": len(records),
            "per_task": {t: sum(v) / len(v) for t, v in sorted(per_task.items())},
        }
