"""RULER (Hsieh et al., 2024, "RULER: What's the Real Context Size of Your Long-Context
Language Models?"): 13 tasks at 4K-32K tokens, scored with ``string_match_all`` (QA tasks:
``string_match_part``).

``ruler`` takes the context length as an option (4096, 8192 or 16384, configs of
``simonjegou/ruler``); ``ruler16k`` and ``ruler32k`` read the ``xAlg-AI/att-hub-ruler-16k|32k``
copies, whose config and split are both the task name.
"""

from __future__ import annotations

from typing import Any, ClassVar

from sah_bench.benchmarks.base import Benchmark, Scorer
from sah_bench.scorers import ruler_scorer

RULER_TASKS: tuple[str, ...] = (
    "niah_single_1",
    "niah_single_2",
    "niah_single_3",
    "niah_multikey_1",
    "niah_multikey_2",
    "niah_multikey_3",
    "niah_multivalue",
    "niah_multiquery",
    "vt",
    "cwe",
    "fwe",
    "qa_1",
    "qa_2",
)

#: Official generation budget per task family (RULER's own values; the hub rows carry them).
RULER_MAX_NEW_TOKENS: dict[str, int] = {"niah": 128, "vt": 30, "cwe": 120, "fwe": 50, "qa": 32}

#: Context lengths of the ``simonjegou/ruler`` copy (one config each, split ``test``, all 13
#: tasks together, told apart by ``task``).
RULER_LENGTHS: tuple[int, ...] = (4096, 8192, 16384)


def ruler_max_new_tokens(task: str) -> int:
    return RULER_MAX_NEW_TOKENS[task.split("_", 1)[0]]


class Ruler(Benchmark):
    """RULER from ``simonjegou/ruler``: config = the context length, split ``test``.

    Rows are in the common schema already (``context`` + ``question`` + ``answer_prefix`` is
    RULER's input exactly) and are passed through.
    """

    name: ClassVar[str] = "ruler"
    hub_id: ClassVar[str] = "simonjegou/ruler"
    all_subsets: ClassVar[tuple[str, ...]] = RULER_TASKS
    default_length: ClassVar[int] = 4096

    def __init__(
        self, data_path: Any = None, data_dir: Any = None, context_length: int | None = None
    ) -> None:
        super().__init__(data_path, data_dir)
        length = int(context_length or self.default_length)
        if length not in RULER_LENGTHS:
            raise ValueError(
                f"ruler: context_length {length} is not available; allowed: "
                f"{list(RULER_LENGTHS)} (32768: use the benchmark 'ruler32k')"
            )
        self.context_length = length

    def hub_location(self, subset: str) -> tuple[str | None, str]:
        return str(self.context_length), "test"

    def select_records(self, subset: str, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [r for r in records if str(r.get("task")) == subset]

    def to_rows(self, subset: str, record: dict[str, Any]) -> list[dict[str, Any]]:
        row = super().to_rows(subset, record)[0]
        row["task"] = subset
        # The hub rows carry RULER's own budgets (not +20): keep them; fill in when absent.
        row.setdefault("max_new_tokens", ruler_max_new_tokens(subset))
        row.pop("context_length", None)  # the original's addition; the length is the subset's
        return [row]

    def scorer(self, subset: str) -> Scorer:
        return ruler_scorer(subset)


class _RulerByTask(Ruler):
    """RULER copies with config = split = task name (no ``test`` split)."""

    def __init__(self, data_path: Any = None, data_dir: Any = None) -> None:
        Benchmark.__init__(self, data_path, data_dir)
        self.context_length = self.default_length

    def hub_location(self, subset: str) -> tuple[str | None, str]:
        return subset, subset

    def select_records(self, subset: str, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return records


class Ruler16K(_RulerByTask):
    name: ClassVar[str] = "ruler16k"
    hub_id: ClassVar[str] = "xAlg-AI/att-hub-ruler-16k"
    default_length: ClassVar[int] = 16384


class Ruler32K(_RulerByTask):
    name: ClassVar[str] = "ruler32k"
    hub_id: ClassVar[str] = "xAlg-AI/att-hub-ruler-32k"
    default_length: ClassVar[int] = 32768
