"""Base class of every benchmark: subsets, loading (hub, local snapshot or local files),
scoring, aggregation.

A subclass names its hub id and subsets, says where each subset lives on the hub (config,
split), converts one raw record into the common row schema (:mod:`sah_bench.rows`) and picks the
official scorer of each subset. Everything else (snapshots, local files, schema checks, max rows,
the mean score per task) lives here.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from sah_bench.benchmarks.snapshot import (
    is_snapshot,
    snapshot_folder,
    snapshot_records,
)
from sah_bench.local_data import find_subset_file, read_records
from sah_bench.rows import validate_row

logger = logging.getLogger(__name__)

Scorer = Callable[..., float]

#: Columns ``Dataset.from_pandas`` adds for a non-range index; never part of a row.
INDEX_COLUMNS: frozenset[str] = frozenset({"__index_level_0__"})


@dataclass(frozen=True)
class HubSource:
    """Where one subset lives on the hub: repo id, config (None: the repo's only one), split."""

    repo_id: str
    config: str | None
    split: str


class Benchmark:
    """A benchmark: rows in the common schema plus the official scorer of each subset.

    Data comes from, in this order of precedence:

    * ``data_path``: a snapshot folder of the benchmark's hub repo (README ``configs:`` +
      ``<config>/<split>-*.parquet``, read with the same config/split as the hub), or a folder
      holding flat ``<subset>.jsonl|json|parquet`` files, or one such file whose rows are
      filtered by :attr:`subset_field` when that field is present;
    * ``data_dir``: a folder of snapshots, the one of hub repo ``owner/name`` at
      ``data_dir/owner/name`` (what the CLI's ``--data-dir`` passes);
    * otherwise the hub, through ``datasets.load_dataset``.

    Snapshots are read offline (never downloaded); a missing one is reported when the subset is
    loaded, naming the expected folder.
    """

    name: ClassVar[str] = ""
    hub_id: ClassVar[str] = ""
    all_subsets: ClassVar[tuple[str, ...]] = ()
    #: Field of a raw record naming its subset, used to filter a single local file.
    subset_field: ClassVar[str] = "task"

    def __init__(
        self, data_path: str | Path | None = None, data_dir: str | Path | None = None
    ) -> None:
        self.data_path = Path(data_path) if data_path is not None else None
        if self.data_path is not None and not self.data_path.exists():
            raise ValueError(f"{self.name}: data_path {str(self.data_path)!r} does not exist")
        self.data_dir = Path(data_dir) if data_dir is not None else None
        if self.data_dir is not None and not self.data_dir.is_dir():
            raise ValueError(f"{self.name}: data_dir {str(self.data_dir)!r} is not a folder")

    # -- subsets -----------------------------------------------------------------------------
    @property
    def subsets(self) -> Sequence[str]:
        """The subsets a run takes when none are named (those this data source holds)."""
        return list(self.all_subsets)

    def check_subset(self, subset: str) -> None:
        if subset not in self.all_subsets:
            raise ValueError(
                f"benchmark {self.name!r}: unknown subset {subset!r}; "
                f"allowed: {list(self.all_subsets)}"
            )

    # -- loading -----------------------------------------------------------------------------
    def load_rows(self, subset: str, max_rows: int | None = None) -> list[dict[str, Any]]:
        """Rows of ``subset`` in the common schema (at most ``max_rows``)."""
        self.check_subset(subset)
        raw = self.raw_records(subset)
        rows: list[dict[str, Any]] = []
        for i, record in enumerate(raw):
            clean = {k: v for k, v in record.items() if k not in INDEX_COLUMNS}
            for row in self.to_rows(subset, clean):
                rows.append(validate_row(row, where=f"{self.name}/{subset} record {i}"))
            if max_rows is not None and len(rows) >= max_rows:
                break
        return rows[:max_rows] if max_rows is not None else rows

    def raw_records(self, subset: str) -> list[dict[str, Any]]:
        if self.data_path is not None:
            if self.data_path.is_dir() and self._reads_as_snapshot(self.data_path, subset):
                return self.snapshot_subset_records(self.data_path, subset)
            return self.local_records(subset)
        if self.data_dir is not None:
            source = self.hub_source(subset)
            folder = snapshot_folder(self.data_dir, source.repo_id)
            if not folder.is_dir():
                raise ValueError(
                    f"{self.name}/{subset}: no snapshot of hub repo {source.repo_id!r} at "
                    f"{folder} (data_dir {str(self.data_dir)!r}); fetch it with `huggingface-cli "
                    f"download {source.repo_id} --repo-type dataset --local-dir {folder}`"
                )
            return self.snapshot_subset_records(folder, subset)
        return self.hub_records(subset)

    def _reads_as_snapshot(self, folder: Path, subset: str) -> bool:
        # Flat ``<subset>.<ext>`` files win, so folders of existing local files keep working.
        return find_subset_file(folder, subset) is None and is_snapshot(folder)

    def local_records(self, subset: str) -> list[dict[str, Any]]:
        assert self.data_path is not None
        if self.data_path.is_dir():
            path = find_subset_file(self.data_path, subset)
            if path is None:
                raise ValueError(
                    f"{self.name}: no file for subset {subset!r} in {self.data_path} "
                    f"(expected {subset}.jsonl, {subset}.json or {subset}.parquet, or a "
                    "snapshot of the hub repo: README.md with `configs:` + parquet shards)"
                )
            return read_records(path)
        records = read_records(self.data_path)
        if records and self.subset_field in records[0]:
            return [r for r in records if self.record_subset(r) == subset]
        return records

    def record_subset(self, record: dict[str, Any]) -> str:
        return str(record.get(self.subset_field))

    def hub_source(self, subset: str) -> HubSource:
        """Repo, config and split of ``subset`` on the hub (also used for snapshots)."""
        config, split = self.hub_location(subset)
        return HubSource(self.hub_id, config, split)

    def hub_location(self, subset: str) -> tuple[str | None, str]:
        """``(config name, split)`` of ``subset`` on the hub."""
        return subset, "test"

    def check_hub_subset(self, subset: str) -> None:
        """Raise if ``subset`` exists only in local data, not in the hub copy (default: no-op)."""

    def select_records(self, subset: str, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The records of ``subset`` among those of its hub config/split (default: all)."""
        return records

    def hub_records(self, subset: str) -> list[dict[str, Any]]:
        """Download with ``datasets.load_dataset`` (network; never used by the tests)."""
        self.check_hub_subset(subset)
        from datasets import load_dataset  # lazy: heavy import

        source = self.hub_source(subset)
        logger.info("loading %s config=%s split=%s", source.repo_id, source.config, source.split)
        dataset = load_dataset(source.repo_id, source.config, split=source.split)
        return self.select_records(subset, [dict(r) for r in dataset])

    def snapshot_subset_records(self, folder: Path, subset: str) -> list[dict[str, Any]]:
        """The records of ``subset`` from the local snapshot at ``folder`` (offline)."""
        self.check_hub_subset(subset)
        source = self.hub_source(subset)
        records = snapshot_records(folder, source.config, source.split)
        return self.select_records(subset, records)

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
