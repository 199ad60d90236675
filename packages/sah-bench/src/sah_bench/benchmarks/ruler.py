"""RULER (Hsieh et al., 2024, "RULER: What's the Real Context Size of Your Long-Context
Language Models?"): 13 tasks at 4K-32K tokens, scored with ``string_match_all`` (QA tasks:
``string_match_part``).

``ruler`` takes the context length as an option (4096, 8192, 16384 from one hub dataset;
32768 from another); ``ruler16k`` and ``ruler32k`` fix it.
"""

from __future__ import annotations

from typing import Any, ClassVar

from sah_bench.benchmarks.base import Benchmark, Scorer
from sah_bench.scorers import string_match_all, string_match_part

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

#: Where each context length lives on the hub: (dataset id, config).
RULER_SOURCES: dict[int, tuple[str, str | None]] = {
    4096: ("simonjegou/ruler", "4096"),
    8192: ("simonjegou/ruler", "8192"),
    16384: ("xAlg-AI/att-hub-ruler-16k", None),
    32768: ("xAlg-AI/att-hub-ruler-32k", None),
}


class Ruler(Benchmark):
    name: ClassVar[str] = "ruler"
    hub_id: ClassVar[str] = "simonjegou/ruler"
    all_subsets: ClassVar[tuple[str, ...]] = RULER_TASKS
    default_length: ClassVar[int] = 4096

    def __init__(self, data_path: Any = None, context_length: int | None = None) -> None:
        super().__init__(data_path)
        length = int(context_length or self.default_length)
        if length not in RULER_SOURCES:
            raise ValueError(
                f"ruler: context_length {length} is not available; allowed: {sorted(RULER_SOURCES)}"
            )
        self.context_length = length

    def hub_records(self, subset: str) -> list[dict[str, Any]]:
        from datasets import load_dataset

        hub_id, config = RULER_SOURCES[self.context_length]
        dataset = load_dataset(hub_id, config, split="test")
        return [dict(r) for r in dataset if str(r.get("task")) == subset]

    def scorer(self, subset: str) -> Scorer:
        return string_match_part if subset.startswith("qa") else string_match_all


class Ruler16K(Ruler):
    name: ClassVar[str] = "ruler16k"
    default_length: ClassVar[int] = 16384


class Ruler32K(Ruler):
    name: ClassVar[str] = "ruler32k"
    default_length: ClassVar[int] = 32768
