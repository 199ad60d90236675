"""LOFT RAG (Lee et al., 2024, "Can Long-Context Language Models Subsume Retrieval, RAG, SQL,
and More?"): answer questions over a long corpus of retrieved passages.

One hub repo per task and length, ``f20180301/loft-rag-<task>-<length>``, default config,
splits ``dev`` and ``test`` (``qampari`` at 1m has no ``dev``). Rows are in the common schema
(``context`` + ``question`` is LOFT's prompt; ``answer_prefix`` "Final Answer: ") and are passed
through. Single-value tasks (nq, hotpotqa, musique) score LOFT's subspan exact match, the
multi-value tasks (qampari, quest) its multi-value subspan EM (``LOFT_RAG_SCORERS``). Subsets
are ``<task>_<length>``; the option ``split`` picks ``dev`` or ``test``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from sah_bench.benchmarks.base import Benchmark, HubSource, Scorer
from sah_bench.scorers import LOFT_RAG_SCORERS

LOFT_TASKS: tuple[str, ...] = ("nq", "hotpotqa", "musique", "qampari", "quest")
LOFT_LENGTHS: tuple[str, ...] = ("32k", "128k", "1m")
LOFT_SPLITS: tuple[str, ...] = ("dev", "test")
#: (subset, split) pairs absent from the hub.
MISSING_SPLITS: frozenset[tuple[str, str]] = frozenset({("qampari_1m", "dev")})
#: The copy's generation budget.
LOFT_MAX_NEW_TOKENS = 256


class LoftRag(Benchmark):
    name: ClassVar[str] = "loft_rag"
    hub_id: ClassVar[str] = "f20180301/loft-rag"
    all_subsets: ClassVar[tuple[str, ...]] = tuple(
        f"{t}_{n}" for t in LOFT_TASKS for n in LOFT_LENGTHS
    )

    def __init__(self, data_path: Any = None, data_dir: Any = None, split: str = "dev") -> None:
        super().__init__(data_path, data_dir)
        if split not in LOFT_SPLITS:
            raise ValueError(f"loft_rag: split {split!r} is not allowed; use one of {LOFT_SPLITS}")
        self.split = split

    @property
    def subsets(self) -> Sequence[str]:
        return [s for s in self.all_subsets if (s, self.split) not in MISSING_SPLITS]

    def hub_source(self, subset: str) -> HubSource:
        task, length = subset.rsplit("_", 1)
        return HubSource(f"{self.hub_id}-{task}-{length}", None, self.split)

    def check_hub_subset(self, subset: str) -> None:
        if (subset, self.split) in MISSING_SPLITS:
            raise ValueError(
                f"loft_rag: subset {subset!r} has no {self.split!r} split on the hub; "
                "use split='test'"
            )

    def to_rows(self, subset: str, record: dict[str, Any]) -> list[dict[str, Any]]:
        row = super().to_rows(subset, record)[0]
        row["task"] = subset
        row.setdefault("max_new_tokens", LOFT_MAX_NEW_TOKENS)
        return [row]

    def scorer(self, subset: str) -> Scorer:
        return LOFT_RAG_SCORERS[subset.rsplit("_", 1)[0]]
