"""LOFT RAG (Lee et al., 2024, "Can Long-Context Language Models Subsume Retrieval, RAG, SQL,
and More?"): answer questions over a long corpus of retrieved passages.

Single-value tasks (nq, hotpotqa, musique) score subspan exact match; multi-value tasks
(qampari, quest) score coverage of the reference answers. Subsets are ``<task>_<length>``;
``split`` picks the mirror's ``dev`` (LOFT's own dev split) or ``test`` split.
"""

from __future__ import annotations

from typing import Any, ClassVar

from sah_bench.benchmarks.base import Benchmark, Scorer
from sah_bench.scorers import coverage_score, subspan_em_score

LOFT_TASKS: tuple[str, ...] = ("nq", "hotpotqa", "musique", "qampari", "quest")
LOFT_LENGTHS: tuple[str, ...] = ("32k", "128k", "1m")
MULTI_VALUE_TASKS: frozenset[str] = frozenset({"qampari", "quest"})


class LoftRag(Benchmark):
    name: ClassVar[str] = "loft_rag"
    hub_id: ClassVar[str] = "f20180301/loft-rag"
    all_subsets: ClassVar[tuple[str, ...]] = tuple(
        f"{t}_{n}" for t in LOFT_TASKS for n in LOFT_LENGTHS
    )

    def __init__(self, data_path: Any = None, split: str = "dev") -> None:
        super().__init__(data_path)
        if split not in ("dev", "test"):
            raise ValueError(f"loft_rag: split {split!r} is not allowed; use 'dev' or 'test'")
        self.split = split

    def hub_records(self, subset: str) -> list[dict[str, Any]]:
        from datasets import load_dataset

        task, length = subset.rsplit("_", 1)
        dataset = load_dataset(f"{self.hub_id}-{task}-{length}", split=self.split)
        return [dict(r) for r in dataset]

    def to_rows(self, subset: str, record: dict[str, Any]) -> list[dict[str, Any]]:
        row = super().to_rows(subset, record)[0]
        row["task"] = subset
        return [row]

    def scorer(self, subset: str) -> Scorer:
        task = subset.rsplit("_", 1)[0]
        return coverage_score if task in MULTI_VALUE_TASKS else subspan_em_score
