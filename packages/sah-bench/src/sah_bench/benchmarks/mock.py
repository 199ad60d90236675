"""An offline benchmark with a few short passages, for smoke tests and examples.

Three contexts, each asked two or three questions (so requests are multi-question); scored with
``string_match_part`` (the reference occurs in the prediction, case-insensitive).
"""

from __future__ import annotations

from typing import Any, ClassVar

from sah_bench.benchmarks.base import Benchmark, Scorer
from sah_bench.scorers import string_match_part

_PASSAGES: dict[str, list[tuple[str, str, list[str]]]] = {
    "The lighthouse on Corran Point was built in 1874 from grey granite quarried on the island. "
    "Its lamp was first lit by a keeper named Ada Fennick, who kept it for thirty-one years. "
    "The tower is 38 metres tall and its light can be seen 22 nautical miles out to sea.": [
        ("In which year was the lighthouse built?", "Answer:", ["1874"]),
        ("Who first lit the lamp?", "Answer:", ["Ada Fennick"]),
        ("How tall is the tower in metres?", "Answer:", ["38"]),
    ],
    "Marta grows three crops in her garden: tomatoes along the south wall, beans on a trellis "
    "by the shed, and pumpkins in the far corner. She waters the beans every morning and the "
    "pumpkins only on Sundays. Her neighbour Tomas borrows her wheelbarrow each autumn.": [
        ("What grows on the trellis?", "Answer:", ["beans"]),
        ("On which day are the pumpkins watered?", "Answer:", ["Sunday"]),
        ("Who borrows the wheelbarrow?", "Answer:", ["Tomas"]),
    ],
    "The train from Halden to Morrow leaves at 07:15 and stops at Vell and Strand. The trip "
    "takes two hours and forty minutes. Bicycles travel free in the last carriage.": [
        ("At what time does the train leave Halden?", "Answer:", ["07:15"]),
        ("Where can bicycles travel?", "Answer:", ["last carriage"]),
    ],
}

MOCK_MAX_NEW_TOKENS = 16

_CONTEXT = "Read the passage and answer the questions briefly.\n\nPassage: {passage}\n\n"


class MockBenchmark(Benchmark):
    name: ClassVar[str] = "mock"
    all_subsets: ClassVar[tuple[str, ...]] = ("reading_comprehension",)

    def __init__(self, data_path: Any = None, data_dir: Any = None) -> None:
        super().__init__(data_path)  # data_dir: accepted for the CLI's --data-dir, unused

    def raw_records(self, subset: str) -> list[dict[str, Any]]:
        if self.data_path is not None:
            return self.local_records(subset)
        return [
            {
                "context": _CONTEXT.format(passage=passage),
                "question": question,
                "answer_prefix": prefix,
                "answers": answers,
                "task": subset,
                "max_new_tokens": MOCK_MAX_NEW_TOKENS,
            }
            for passage, items in _PASSAGES.items()
            for question, prefix, answers in items
        ]

    def to_rows(self, subset: str, record: dict[str, Any]) -> list[dict[str, Any]]:
        # The original mock rows (context, question, answers, task, sample_id) have neither an
        # answer prefix nor a budget: give them "" and the built-in rows' 16 tokens.
        row = super().to_rows(subset, record)[0]
        row.setdefault("max_new_tokens", MOCK_MAX_NEW_TOKENS)
        return [row]

    def scorer(self, subset: str) -> Scorer:
        return string_match_part
